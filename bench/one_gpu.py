"""A one-GPU runner against the kernel floor and against stock diffusers (issue 22).

One run, one GPU, RANDOM full-size weights (real FLOPs, noise pictures) unless
--tiny. Everything below goes through one engine, the runner's own
(MochiEngine with one device: the guidance-parallel wrapper over its one
transformer, the sync-free processor, compiled blocks):

  forward      the compiled batch-1 forward of that transformer, one branch,
               synced (the floor a guided step is held to: two of them)
  guided step  a real guided step through MochiEngine.denoise, as a job runs
               it: both branches one after the other, guidance, scheduler,
               the per-step sync; median of the steps after the first
  ratio        guided step / forward (target <= 2.05)
  free step    a guidance-free step through the same path (target: the forward)
  stock        diffusers' MochiPipeline on the same weights (its own processor,
               no compile, one batch-2 forward per step) on the same GPU; the
               speed-up of the runner's step over it (target >= 1.45) and the
               largest latent difference after 2 steps of the same request
  batch 2      for "one after the other or one batch of 2": the compiled
               prefix forward at batch 2 (both prompts of one length, since a
               length carrier holds one), against two batch-1 forwards

    bash bench/run.sh onegpu                                       # one GPU
    BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh onegpu  # CPU dry run, tiny model
"""

from __future__ import annotations

import time

import torch

from common import DEFAULT, PROMPT, StopSteps, bench_model_dir, bench_parser, median, open_report, wall_seconds
from flops import branch_inputs, forward_flops


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--steps", type=int, default=6, help="guided steps of the runner (the first compiles)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-batch2", action="store_true", help="skip the batch-2 forward (it compiles anew)")
    parser.add_argument("--attention-kernel", default="sdpa", choices=("sdpa", "fa4"),
                        help="the runner's MOCHI_ATTENTION_KERNEL (fa4: FlashAttention-4, bench/fa4_wheels.sh)")
    args = parser.parse_args()

    from mochi_runner.engine import EngineConfig, MochiEngine

    report = open_report(args.out, "one_gpu", args.tiny)
    size = dict(width=args.width, height=args.height, num_frames=args.frames)
    report.add("size", size)
    report.add("attention_kernel", args.attention_kernel)
    device = torch.device("cpu" if args.tiny else "cuda:0")
    started = time.perf_counter()
    # What a one-GPU runner gets from its settings (MOCHI_COMPILE_BLOCKS=true, no MOCHI_DEVICES).
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), device=str(device),
                                      random_weights=not args.tiny, compile_blocks=True,
                                      attention_kernel=args.attention_kernel,
                                      warmup_size=(args.width, args.height, args.frames)))
    report.add("build_seconds", time.perf_counter() - started)
    report.add("render_config", engine.render_config(None))
    try:
        measure(engine, report, args, device)
    finally:
        engine.close()


def steps_of(engine, req, stop_after: int, keep_step: int | None = None):
    """Per-step wall times of a real denoise stopped after `stop_after` steps,
    and the latents after `keep_step`."""
    times: list[float] = []
    kept: dict[int, torch.Tensor] = {}
    last = [time.perf_counter()]

    def on_step(done: int, total: int) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        if done == stop_after:
            raise StopSteps

    def on_latents(done: int, latents: torch.Tensor) -> None:
        if done == keep_step:
            kept[done] = latents.detach().float().clone()

    try:
        engine.denoise(req, on_step, on_latents=on_latents)
    except StopSteps:
        pass
    return times, kept.get(keep_step) if keep_step is not None else None


def measure(engine, report, args, device: torch.device) -> None:
    from mochi_contracts.jobs import JobRequest
    from mochi_runner.parallel.device_worker import on_device
    from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward

    guided = JobRequest(prompt=PROMPT, negative_prompt="", width=args.width, height=args.height,
                        num_frames=args.frames, num_inference_steps=DEFAULT["num_inference_steps"],
                        guidance_scale=DEFAULT["guidance_scale"], seed=1)
    # 1. The runner's guided step (the first step compiles both prompt-length graphs).
    times, ours_at_2 = steps_of(engine, guided, max(args.steps, 3), keep_step=2)
    report.add("first_guided_step_s", times[0], "compiles every block (both graphs)")
    step = median(times[1:])
    report.add("guided_step_s", step, f"median of {len(times) - 1} steps after the first, MochiEngine.denoise")

    free = JobRequest(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                      num_inference_steps=DEFAULT["num_inference_steps"], guidance_scale=1.0, seed=1)
    free_times, _ = steps_of(engine, free, 3)
    free_step = median(free_times[1:])
    report.add("guidance_free_step_s", free_step, f"median of {len(free_times) - 1} steps after the first")

    # 2. The bare compiled batch-1 forward of the same transformer.
    replica = engine.parallel.replicas[0]
    text_tokens = len(engine.pipe.tokenizer(PROMPT).input_ids)
    report.add("prompt_tokens", text_tokens)
    hidden, text, timestep, mask = branch_inputs(args.width, args.height, args.frames, text_tokens, device,
                                                 engine.dtype, text_dim=replica.config.text_embed_dim)
    carrier = length_carrier(mask)

    def forward() -> torch.Tensor:
        return prefix_forward(replica, hidden, text, timestep, mask, carrier)

    flops = forward_flops(args.width, args.height, args.frames, text_tokens)["total"]
    with torch.inference_mode(), on_device(device):
        single = forward()
        fwd = median(wall_seconds(forward, device, args.reps))
    report.add("forward_s", fwd, f"compiled batch-1 forward, synced, median of {args.reps}")
    report.add("forward_tflops", flops / fwd / 1e12)
    ratio = step / fwd
    report.add("guided_step_over_forward", ratio, f"target <= 2.05: {'MET' if ratio <= 2.05 else 'MISSED'}")
    report.add("guidance_free_step_over_forward", free_step / fwd)

    # 3. Stock diffusers on the same weights and GPU.
    stock_step, stock_at_2 = stock_steps(engine, replica, guided, device)
    report.add("stock_guided_step_s", stock_step, "diffusers MochiPipeline, median of steps 2 and 3")
    speedup = stock_step / step
    report.add("speedup_over_stock", speedup, f"target >= 1.45: {'MET' if speedup >= 1.45 else 'MISSED'}")
    diff = (ours_at_2 - stock_at_2).abs().max().item()
    report.add("max_latent_diff_after_2_steps", diff,
               f"latents |max| {stock_at_2.abs().max().item():.3g}, dtype {engine.dtype}")
    report.add("mean_latent_diff_after_2_steps", (ours_at_2 - stock_at_2).abs().mean().item())

    # 4. One batch of 2 instead of two batches of 1.
    if args.no_batch2:
        return
    pair = [torch.cat([t, t]) for t in (hidden, text, timestep, mask)]
    pair_carrier = length_carrier(pair[3])
    started = time.perf_counter()
    try:
        with torch.inference_mode(), on_device(device):
            both = prefix_forward(replica, *pair, pair_carrier)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            report.add("batch2_compile_s", time.perf_counter() - started, "a new graph (batch 2)")
            report.add("batch2_forward_s", median(wall_seconds(lambda: prefix_forward(replica, *pair, pair_carrier),
                                                                device, args.reps)),
                       f"synced, median of {args.reps}; two batch-1 forwards: {2 * fwd:.3f} s")
            report.add("batch2_vs_batch1_max_diff", (both[:1] - single).abs().max().item())
    except torch.OutOfMemoryError as err:  # the measurement's answer; printed, not swallowed
        report.add("batch2", f"out of memory: {err}")


def stock_steps(engine, replica, req, device: torch.device) -> tuple[float, torch.Tensor]:
    """Three steps of diffusers' own MochiPipeline over the engine's weights:
    its processor back in every block and the blocks uncompiled for the call."""
    from diffusers import MochiPipeline
    from diffusers.models.attention_processor import MochiAttnProcessor2_0

    saved = [(b, b.attn1.processor, b._compiled_call_impl) for b in replica.transformer_blocks]
    for block, _, _ in saved:
        block.attn1.processor = MochiAttnProcessor2_0()
        block._compiled_call_impl = None
    pipe = MochiPipeline(scheduler=type(engine.pipe.scheduler).from_config(engine.pipe.scheduler.config),
                         vae=engine.pipe.vae, text_encoder=engine.pipe.text_encoder,
                         tokenizer=engine.pipe.tokenizer, transformer=replica)
    pipe.set_progress_bar_config(disable=True)
    times: list[float] = []
    kept: dict[int, torch.Tensor] = {}
    last = [time.perf_counter()]

    def on_step_end(pipe, index, timestep, tensors):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        if index + 1 == 2:
            kept[2] = tensors["latents"].detach().float().clone()
        if index + 1 == 3:
            raise StopSteps
        return {}

    try:
        with torch.inference_mode():
            pipe(prompt=req.prompt, negative_prompt=req.negative_prompt or None, width=req.width,
                 height=req.height, num_frames=req.num_frames, num_inference_steps=req.num_inference_steps,
                 guidance_scale=req.guidance_scale, generator=torch.Generator("cpu").manual_seed(req.seed),
                 output_type="latent", callback_on_step_end=on_step_end)
    except StopSteps:
        pass
    finally:
        for block, processor, compiled in saved:
            block.attn1.processor = processor
            block._compiled_call_impl = compiled
    return median(times[1:]), kept[2]


if __name__ == "__main__":
    main()
