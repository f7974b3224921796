"""The sync-free processor lets a transformer block compile as one graph;
diffusers' stock processor breaks the graph in every layer."""

from __future__ import annotations

import torch

from mochi_runner.parallel.prefix_attention import length_carrier, use_prefix_attention
from mochi_runner.parallel.replicate import replicate
from mochi_runner.tiny_model import build_tiny_pipeline


def _block_inputs(transformer):
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(1, 60, 16, generator=gen)  # (batch, visual tokens, inner dim)
    text = torch.randn(1, 256, 16, generator=gen)
    temb = torch.randn(1, 16, generator=gen)
    mask = torch.zeros(1, 256, dtype=torch.long)
    mask[0, :6] = 1
    rope = transformer.rope(transformer.pos_frequencies, 3, 4, 5, device=torch.device("cpu"),
                            dtype=torch.float32)
    return hidden, text, temb, mask, rope


def test_block_compiles_without_graph_breaks_and_matches_eager():
    transformer = build_tiny_pipeline().transformer.eval().requires_grad_(False)
    fast = replicate(transformer, torch.device("cpu"))
    use_prefix_attention(fast)
    hidden, text, temb, mask, rope = _block_inputs(transformer)
    block = fast.transformer_blocks[0]
    carrier = length_carrier(mask)
    with torch.inference_mode():
        eager = block(hidden, text, temb, carrier, rope)
        compiled = torch.compile(block, fullgraph=True, backend="eager")(hidden, text, temb, carrier, rope)
        stock = transformer.transformer_blocks[0](hidden, text, temb, mask, rope)
        for a, b, c in zip(eager, compiled, stock, strict=True):
            assert torch.equal(a, c), (a - c).abs().max()
            assert torch.equal(a, b), (a - b).abs().max()
        ours = torch._dynamo.explain(block)(hidden, text, temb, carrier, rope)
        theirs = torch._dynamo.explain(transformer.transformer_blocks[0])(hidden, text, temb, mask, rope)
    assert ours.graph_break_count == 0
    # aten.nonzero: its output shape depends on the data, so dynamo splits the block.
    assert theirs.graph_break_count > 0


def test_compile_gate_keeps_a_first_call_apart_from_other_calls():
    import threading
    import time

    from mochi_runner.parallel.compile_gate import CompileGate

    gate = CompileGate()
    events: list[str] = []

    def call(key: str, name: str, hold: float) -> None:
        with gate.call(key):
            events.append(f"{name}+")
            time.sleep(hold)
            events.append(f"{name}-")

    call("seen", "warm", 0.0)  # "seen" is now known: later calls with it are shared
    threads = [threading.Thread(target=call, args=("seen", "a", 0.2)),
               threading.Thread(target=call, args=("seen", "b", 0.2))]
    for t in threads:
        t.start()
    time.sleep(0.05)
    first = threading.Thread(target=call, args=("new", "compile", 0.1))
    first.start()
    for t in [*threads, first]:
        t.join()
    # a and b overlapped; the first call of "new" ran alone, after both.
    assert events.index("b+") < events.index("a-") or events.index("a+") < events.index("b-")
    assert events.index("compile+") > max(events.index("a-"), events.index("b-"))
    assert events[-1] == "compile-"
