"""Benchmark part 1: each change on its own, in one process, at the default
video's size (848x480, 163 frames = 28 latent frames, guidance 4.5).

Stages, all on the same modules (RANDOM WEIGHTS unless --tiny):
  stock diffusers MochiPipeline on one GPU (batch 2, stock processor)
  guidance-parallel over the devices, eager, stock processor
  + the sync-free exact processor
  + torch.compile per transformer block
  exactness: each device's branch vs that branch alone on the other device,
             latents after the same steps vs the stock pipeline
  VAE: tiled decode on one device vs the tiles split over the devices
  T5 encode time; MP4 encode time of the decoded frames
Each denoising variant runs a few steps of the 64-step schedule (the first
untimed: it holds compilation and cuDNN set-up); every step ends in a sync.

--tiny runs the same code on the CPU with the tiny model (a dry run)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from common import (DEFAULT, PROMPT, bench_model_dir, bench_parser, matmul_peak_tflops, median, open_report,
                    peaks_gib, reset_peaks, sync)
from flops import forward_flops, latent_shape


class StopBench(Exception):
    pass


def run_steps(pipe, devices, total_steps: int, n_steps: int, size: dict, seed: int, capture_at: int = 0):
    """n_steps of a total_steps schedule; per-step seconds and the latents after
    step `capture_at` (default: the last)."""
    capture_at = capture_at or n_steps
    times: list[float] = []
    captured: dict[str, torch.Tensor] = {}
    last = [0.0]

    def step_end(p, index, timestep, tensors):
        sync(devices)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        if index + 1 == capture_at:
            captured["latents"] = tensors["latents"].detach().float().cpu()
        if index + 1 == n_steps:
            raise StopBench
        return {}

    reset_peaks(devices)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    sync(devices)
    last[0] = time.perf_counter()
    try:
        with torch.inference_mode():
            pipe(prompt=PROMPT, negative_prompt=None, width=size["width"], height=size["height"],
                 num_frames=size["num_frames"], num_inference_steps=total_steps,
                 guidance_scale=DEFAULT["guidance_scale"], generator=generator, output_type="latent",
                 callback_on_step_end=step_end)
    except StopBench:
        pass
    return times, captured["latents"], peaks_gib(devices)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.double(), b.double()
    return {"max_abs_diff": (a - b).abs().max().item(),
            "rel_l2": ((a - b).norm() / b.norm()).item(),
            "finite": bool(torch.isfinite(a).all() and torch.isfinite(b).all())}


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--devices", default="cuda:0,cuda:1")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (one more untimed)")
    parser.add_argument("--stock-steps", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline
    from diffusers.models.attention_processor import MochiAttnProcessor2_0

    from mochi_runner.engine import EngineConfig, MochiEngine, compile_blocks
    from mochi_runner.parallel.device_worker import on_device
    from mochi_runner.parallel.prefix_attention import length_carrier, prefix_forward, use_prefix_attention
    from mochi_runner.video_encode import encode_mp4

    report = open_report(args.out, "components", args.tiny)
    size = dict(width=args.width, height=args.height, num_frames=args.frames)
    report.add("size", size)
    devices_spec = ("cpu", "cpu") if args.tiny else tuple(args.devices.split(","))

    if not args.tiny:
        for d in devices_spec:
            report.add(f"bf16_matmul_peak_tflops[{d}]", matmul_peak_tflops(torch.device(d)))

    started = time.perf_counter()
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), devices=devices_spec,
                                      random_weights=not args.tiny, prefix_attention=False, compile_blocks=False))
    devices = engine.devices
    report.add("build_seconds", time.perf_counter() - started,
               "random weights made on the GPUs" if not args.tiny else "")
    parallel = engine.parallel
    replicas = parallel.replicas
    pipe = engine.pipe

    # T5 on the first GPU: encode both prompts, the pipeline's way.
    t5_times = []
    with torch.inference_mode():
        for _ in range(5):
            sync(devices)
            t0 = time.perf_counter()
            embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(
                prompt=PROMPT, negative_prompt=None, do_classifier_free_guidance=True, device=devices[0])
            sync(devices)
            t5_times.append(time.perf_counter() - t0)
    text_tokens = int(mask.sum())
    report.add("prompt_tokens", text_tokens)
    report.add("t5_encode_both_prompts_ms", median(t5_times[1:]) * 1e3, f"on {devices[0]}")

    flops_cond = forward_flops(args.width, args.height, args.frames, text_tokens)
    flops_uncond = forward_flops(args.width, args.height, args.frames, int(neg_mask.sum()))
    report.add("flops_per_forward_cond_PF", flops_cond["total"] / 1e15)
    report.add("attention_share_of_flops", flops_cond["attention"] / flops_cond["total"])
    step_flops = flops_cond["total"] + flops_uncond["total"]

    def record(label: str, times: list[float], peaks: dict, gpus: int) -> float:
        step = median(times[1:])
        report.add(f"{label}.first_step_s", times[0])
        report.add(f"{label}.step_s", step, f"median of {len(times) - 1} timed steps")
        if not args.tiny:
            report.add(f"{label}.tflops_per_gpu", step_flops / gpus / step / 1e12,
                       f"{step_flops / 1e15:.3f} PF per guidance step over {gpus} GPU(s)")
        report.add(f"{label}.peak_mem_gib", peaks)
        return step

    total_steps = DEFAULT["num_inference_steps"]
    seed = 1234
    # 1. Stock diffusers on one device: the replica on the first device, batch 2.
    stock = MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config),
                          vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                          transformer=replicas[0])
    stock.set_progress_bar_config(disable=True)
    times, stock_latents, peaks = run_steps(stock, devices, total_steps, args.stock_steps + 1, size, seed)
    stock_step = record("stock_1gpu", times, peaks, 1)
    n_stock = args.stock_steps + 1

    def variant(label: str) -> tuple[float, torch.Tensor]:
        # Same seed and schedule as the stock run, as many steps as it ran, then more for timing.
        times, latents_n, peaks = run_steps(pipe, devices, total_steps, max(args.steps + 1, n_stock), size, seed,
                                            capture_at=n_stock)
        step = record(label, times, peaks, len(devices))
        return step, latents_n

    # 2. Guidance-parallel, eager, diffusers' processor.
    eager_stock_step, lat = variant("parallel_eager_stockproc")
    report.add("parallel_eager_stockproc.vs_stock_latents", compare(lat, stock_latents),
               f"after {n_stock} steps, same seed")
    # 3. + the sync-free processor.
    parallel.prefix_attention = True
    for r in replicas:
        use_prefix_attention(r)
    eager_prefix_step, lat_eager = variant("parallel_eager_prefix")

    # Exactness of the branches, eager, on real inputs of this size.
    with torch.inference_mode():
        gen = torch.Generator().manual_seed(7)
        latent = torch.randn(latent_shape(args.width, args.height, args.frames),
                             generator=gen).to(devices[0], engine.dtype)
        hidden = torch.cat([latent, latent])
        text = torch.cat([neg_embeds, embeds])
        masks = torch.cat([neg_mask, mask])
        timestep = torch.full((2,), 500.0, device=devices[0], dtype=engine.dtype)

        def branches() -> torch.Tensor:
            return parallel(hidden_states=hidden, encoder_hidden_states=text, timestep=timestep,
                            encoder_attention_mask=masks, return_dict=False)[0]

        def alone(i: int, replica) -> torch.Tensor:
            dev = next(replica.parameters()).device
            with on_device(dev):
                sl = slice(i, i + 1)
                return prefix_forward(replica, hidden[sl].to(dev), text[sl].to(dev), timestep[sl].to(dev),
                                      masks[sl].to(dev), length_carrier(masks[sl], dev))

        both = branches()
        # Branch 1 ran on the second device; compute it alone on the first, and branch 0 alone on the second.
        cond_alone = alone(1, replicas[0]).to(devices[0])
        uncond_alone = alone(0, replicas[-1]).to(devices[0])
        report.add("exact.eager.cond_branch_bitwise_vs_alone_on_other_device", bool(torch.equal(both[1:], cond_alone)))
        report.add("exact.eager.uncond_branch_bitwise_vs_alone_on_other_device",
                   bool(torch.equal(both[:1], uncond_alone)))
        for r in replicas[:1]:
            for block in r.transformer_blocks:
                block.attn1.processor = MochiAttnProcessor2_0()
        stock_proc = replicas[0](hidden_states=hidden[1:], encoder_hidden_states=text[1:], timestep=timestep[1:],
                                 encoder_attention_mask=masks[1:], return_dict=False)[0]
        use_prefix_attention(replicas[0])
        report.add("exact.eager.prefix_processor_bitwise_vs_stock_processor", bool(torch.equal(stock_proc, cond_alone)))
        eager_out = both.float().cpu()

        # Host enqueue time of one forward pair against its device time: with no
        # sync inside, the host runs ahead and launch gaps are hidden (the case
        # for CUDA graphs).
        sync(devices)
        t0 = time.perf_counter()
        branches()
        enqueue = time.perf_counter() - t0
        sync(devices)
        report.add("eager_prefix.host_enqueue_s_per_step", enqueue, f"device time {time.perf_counter() - t0:.3f} s")

    # 4. + torch.compile per block.
    compiled = not args.no_compile
    if compiled:
        for r in replicas:
            compile_blocks(r)
        try:
            compiled_step, lat_compiled = variant("parallel_compiled")
        except Exception as err:  # keep the other figures of this run
            report.add("parallel_compiled.error", repr(err)[:2000])
            torch._dynamo.reset()
            for r in replicas:
                for block in r.transformer_blocks:
                    block._compiled_call_impl = None
            compiled = False
    if compiled:
        report.add("parallel_compiled.vs_stock_latents", compare(lat_compiled, stock_latents),
                   f"after {n_stock} steps, same seed")
        with torch.inference_mode():
            both_c = branches()
            cond_alone_c = alone(1, replicas[0]).to(devices[0])
            uncond_alone_c = alone(0, replicas[-1]).to(devices[0])
            report.add("exact.compiled.cond_branch_bitwise_vs_alone_on_other_device",
                       bool(torch.equal(both_c[1:], cond_alone_c)))
            report.add("exact.compiled.uncond_branch_bitwise_vs_alone_on_other_device",
                       bool(torch.equal(both_c[:1], uncond_alone_c)))
            report.add("exact.compiled_vs_eager_noise_prediction", compare(both_c.float().cpu(), eager_out))
            sync(devices)
            t0 = time.perf_counter()
            branches()
            enqueue = time.perf_counter() - t0
            sync(devices)
            report.add("compiled.host_enqueue_s_per_step", enqueue, f"device time {time.perf_counter() - t0:.3f} s")
    else:
        compiled_step, lat_compiled = eager_prefix_step, lat_eager
    report.add("parallel_eager_prefix.vs_stock_latents", compare(lat_eager, stock_latents),
               f"after {n_stock} steps, same seed")

    # 5. VAE decode: one device (diffusers' tiled decode) vs tiles split over the devices.
    final = lat_compiled.to(devices[0], engine.dtype)
    def timed_decode(one_device: bool):
        vaes = engine.vaes
        if one_device:
            engine.vaes = vaes[:1]  # diffusers' own tiled decode on the first device
        reset_peaks(devices)
        sync(devices)
        t0 = time.perf_counter()
        try:
            frames = engine.decode(final)
            sync(devices)
        finally:
            engine.vaes = vaes
        return frames, time.perf_counter() - t0, peaks_gib(devices)

    split_frames, split_first, _ = timed_decode(False)  # also sets up cuDNN for the tile shapes
    single_frames, single_s, single_peaks = timed_decode(True)
    split_frames, split_s, split_peaks = timed_decode(False)
    single_times, split_times = [single_s], [split_s]
    report.add("vae_decode_1gpu_s", single_times[0], f"peak {single_peaks}")
    report.add("vae_decode_split_s", split_s, f"peak {split_peaks}; first run {split_first:.2f} s")
    report.add("exact.vae_split_bitwise_vs_1gpu", bool((split_frames == single_frames).all()))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        size_bytes = encode_mp4(split_frames, 30, Path(tmp) / "v.mp4")
        report.add("mp4_encode_s", time.perf_counter() - t0, f"{size_bytes} bytes, libx264 preset medium")

    # 6. The default video, extrapolated from these per-step figures (labelled as such).
    t5 = median(t5_times[1:])
    enc = report.figures["mp4_encode_s"]
    stock_total = total_steps * stock_step + single_times[0] + t5 + enc
    ours_total = total_steps * compiled_step + min(split_times) + t5 + enc
    report.add("EXTRAPOLATED.stock_1gpu_default_video_s", stock_total, "64 x step + 1-GPU decode + T5 + MP4")
    report.add("EXTRAPOLATED.parallel_default_video_s", ours_total, "64 x step + split decode + T5 + MP4")
    report.add("EXTRAPOLATED.speedup", stock_total / ours_total)
    report.add("bench_seconds", report.elapsed())
    engine.close()


if __name__ == "__main__":
    main()
