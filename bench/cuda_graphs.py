"""Would CUDA graphs make a Mochi step cheaper? Measured, on one GPU.

Issue 9 asks for CUDA graphs "where shapes allow". The argument against them
so far was indirect (the host has queued a whole step's work half-way through
it, NVML reads the GPU busy 99.7% of the time). This script measures what a graph
could win instead, at the default video's size, on the same compiled batch-1
forward that each GPU runs in a guidance-parallel step (RANDOM full-size
weights unless --tiny):

  queued   back-to-back forwards, timed by CUDA events: the GPU's own time,
           launch gaps between kernels included
  synced   one forward, then a sync, wall clock: what a step pays, since the
           engine syncs once per step for progress and cancel
  graph    the same forward captured once as a CUDA graph and replayed (queued
           and synced), its output compared bitwise with the compiled forward's
  outside  the eager rest of the forward (embeddings, RoPE, output layer),
           which compiling the whole model could cover beyond the blocks
  step     a real guidance-free step of the runner's own lane pipeline
           (MochiEngine.denoise, lane 0): the forward plus everything the
           pipeline does around it (scheduler, sync, callback), which is the
           most a whole-step graph could remove on top of the forward's

    bash bench/run.sh graphs                                     # a GPU machine; one GPU is enough
    BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh graphs  # CPU dry run; no graphs there
"""

from __future__ import annotations

import time

import torch

from common import (DEFAULT, PROMPT, StopSteps, bench_model_dir, bench_parser, cuda_seconds, matmul_peak_tflops,
                    median, open_report, wall_seconds)
from flops import branch_inputs, forward_flops


def capture(fn, device: torch.device) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """`fn` captured as a CUDA graph, after the side-stream warm-up that capture needs."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn()
    return graph, static_out


def main() -> None:
    parser = bench_parser("CPU dry run with the tiny model (no graphs)")
    parser.add_argument("--steps", type=int, default=6, help="lane steps (the first untimed)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    from mochi_runner.engine import EngineConfig, MochiEngine

    report = open_report(args.out, "cuda_graphs", args.tiny)
    size = dict(width=args.width, height=args.height, num_frames=args.frames)
    report.add("size", size)
    device = torch.device("cpu" if args.tiny else "cuda:0")
    if device.type == "cuda":
        report.add("bf16_matmul_peak_tflops", matmul_peak_tflops(device))

    # The runner's own two-device engine with both "devices" on this one GPU
    # (as bench run 7): compiled blocks, the sync-free processor, lanes.
    started = time.perf_counter()
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), devices=(str(device), str(device)),
                                      random_weights=not args.tiny, compile_blocks=True,
                                      warmup_size=(args.width, args.height, args.frames)))
    report.add("build_seconds", time.perf_counter() - started)
    try:
        measure(engine, report, args, device)
    finally:
        engine.close()


def measure(engine, report, args, device: torch.device) -> None:
    from mochi_contracts.jobs import JobRequest
    from mochi_runner.parallel.device_worker import on_device
    from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward

    report.add("warm_up_seconds", engine.warm_up(), "compiles every block at this size")

    # 1. A real guidance-free step on lane 0, through the pipeline.
    step_times: list[float] = []
    last = [0.0]

    def on_step(done: int, total: int) -> None:
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        if done == args.steps:
            raise StopSteps

    req = JobRequest(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                     num_inference_steps=64, guidance_scale=1.0, seed=1)
    last[0] = time.perf_counter()
    try:
        engine.denoise(req, on_step, lane=0)
    except StopSteps:
        pass
    step = median(step_times[1:])
    report.add("lane_step_s", step, f"median of {len(step_times) - 1} steps after the first; each ends in a sync")
    text_tokens = len(engine.pipe.tokenizer(PROMPT).input_ids)
    report.add("prompt_tokens", text_tokens)

    # 2. The bare compiled forward of that lane's replica, on the same kind of inputs.
    replica = engine.parallel.replicas[0]
    hidden, text, timestep, mask = branch_inputs(args.width, args.height, args.frames, text_tokens, device,
                                                 engine.dtype, text_dim=replica.config.text_embed_dim)
    carrier = length_carrier(mask)

    def forward() -> torch.Tensor:
        return prefix_forward(replica, hidden, text, timestep, mask, carrier)

    # Counted outside inference mode: FlopCounterMode's module hooks need autograd.
    flops = forward_flops(args.width, args.height, args.frames, text_tokens)["total"]
    with torch.inference_mode(), on_device(device):
        reference = forward()
        synced = median(wall_seconds(forward, device, args.reps))
        report.add("forward_synced_s", synced, f"median of {args.reps}")
        report.add("step_minus_forward_ms", (step - synced) * 1e3,
                   "the pipeline's own work around the forward, per step: a whole-step graph's most")
        # The part of a forward outside the 48 blocks (time and patch embedding,
        # RoPE, the output layer) runs eager: what compiling the whole model
        # could add to the blocks' compile.
        blocks = replica.transformer_blocks
        replica.transformer_blocks = torch.nn.ModuleList()
        try:
            report.add("outside_blocks_ms", median(wall_seconds(forward, device, args.reps)) * 1e3,
                       "eager, synced, median")
        finally:
            replica.transformer_blocks = blocks
        if device.type != "cuda":
            report.add("graph", "skipped: CUDA graphs need a GPU")
            return
        queued = cuda_seconds(forward, device, args.reps)
        report.add("forward_queued_s", queued, f"CUDA events, mean of {args.reps} back to back")
        report.add("forward_tflops", flops / queued / 1e12)

        # 3. The same forward as a CUDA graph.
        before = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
        started = time.perf_counter()
        try:
            graph, graph_out = capture(forward, device)
        except Exception as err:  # noqa: BLE001 - the failure is the measurement; printed, not swallowed
            report.add("graph", f"capture failed: {type(err).__name__}: {err}")
            return
        torch.cuda.synchronize(device)
        report.add("graph_capture_s", time.perf_counter() - started, "side-stream warm-up (2 forwards) + capture")
        report.add("graph_pool_gib", (torch.cuda.memory_allocated(device) - before[0]) / 2**30,
                   "allocated memory the capture left held: its static output and what it keeps alive")
        report.add("graph_reserved_growth_gib", (torch.cuda.memory_reserved(device) - before[1]) / 2**30,
                   "memory the allocator reserved for the capture, its private pool included")
        graph.replay()
        torch.cuda.synchronize(device)
        report.add("graph_equals_compiled_forward", bool(torch.equal(graph_out, reference)), "bitwise")
        graph_queued = cuda_seconds(graph.replay, device, args.reps)
        report.add("graph_queued_s", graph_queued, f"CUDA events, mean of {args.reps} back to back")
        graph_synced = median(wall_seconds(graph.replay, device, args.reps))
        report.add("graph_synced_s", graph_synced, f"median of {args.reps}")
        report.add("graph_saves_per_step_ms", (synced - graph_synced) * 1e3, "synced forward minus synced replay")
        steps = DEFAULT["num_inference_steps"]
        report.add("graph_saves_per_video_s", steps * (synced - graph_synced), f"{steps} steps, one branch per GPU")


if __name__ == "__main__":
    main()
