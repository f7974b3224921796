"""Benchmark part 2: what a two-GPU runner does, timed, in a fresh process.

1. Start-up: build the engine (RANDOM full-size weights unless --tiny), compile
   every transformer block, warm up with a 2-step render at the job size:
   the runner's readiness time.
2. The default video (848x480, 163 frames, 64 steps, guidance 4.5): request
   to stored MP4 through MochiEngine.denoise -> decode -> encode_mp4 -> the
   local video store (no NATS/API in this measurement).
3. In the same process, stock diffusers MochiPipeline on one GPU for a few
   steps of the same schedule, and diffusers' tiled decode on one GPU; the
   stock default video is extrapolated from those (labelled so).
GPU utilisation is sampled through NVML every 0.2 s where it is available."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import torch

from common import (DEFAULT, PROMPT, bench_model_dir, bench_parser, matmul_peak_tflops, median, open_report,
                    peaks_gib, reset_peaks, sync)
from flops import forward_flops


class UtilSampler:
    """Mean GPU utilisation (NVML's percent of time a kernel ran) per device, over windows."""

    def __init__(self, count: int, period_s: float = 0.2):
        self.samples: list[tuple[float, list[int]]] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
        except Exception:  # no NVML here (the CPU dry run)
            self._handles = []
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while self._handles and not self._stop.wait(period_s):
            util = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
            self.samples.append((time.perf_counter(), util))

    def mean(self, start: float, end: float) -> list[float]:
        window = [u for t, u in self.samples if start <= t <= end]
        if not window:
            return []
        return [round(sum(col) / len(col), 1) for col in zip(*window, strict=True)]

    def stop(self) -> None:
        self._stop.set()


class StopBench(Exception):
    pass


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--devices", default="cuda:0,cuda:1")
    parser.add_argument("--steps", type=int, default=DEFAULT["num_inference_steps"])
    parser.add_argument("--stock-steps", type=int, default=2, help="timed stock steps (one more untimed)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    from diffusers import FlowMatchEulerDiscreteScheduler, MochiPipeline

    from mochi_common.storage.local import LocalVideoStore
    from mochi_contracts.jobs import JobRequest
    from mochi_contracts.storage import VIDEO_CONTENT_TYPE, video_key
    from mochi_runner.engine import EngineConfig, MochiEngine
    from mochi_runner.video_encode import encode_mp4

    report = open_report(args.out, "end_to_end", args.tiny)
    devices_spec = ("cpu", "cpu") if args.tiny else tuple(args.devices.split(","))
    if not args.tiny:
        for d in devices_spec:
            report.add(f"bf16_matmul_peak_tflops[{d}]", matmul_peak_tflops(torch.device(d)))
    sampler = UtilSampler(0 if args.tiny else torch.cuda.device_count())

    model_dir = bench_model_dir(args.tiny)
    # 1. Start-up, as the runner does it before it pulls any job.
    t0 = time.perf_counter()
    engine = MochiEngine(EngineConfig(
        model_dir=model_dir, devices=devices_spec, random_weights=not args.tiny, prefix_attention=True,
        compile_blocks=not args.no_compile, warmup_size=(args.width, args.height, args.frames)))
    warm = engine.warm_up()
    report.add("startup.load_s", engine.load_seconds)
    report.add("startup.compile_and_warm_s", warm, "2-step render at the job size, compilation included")
    report.add("startup.total_s", time.perf_counter() - t0)
    devices = engine.devices

    # 2. The default video, request to stored MP4.
    req = JobRequest(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                     num_inference_steps=args.steps, guidance_scale=DEFAULT["guidance_scale"], seed=42)
    store = LocalVideoStore(Path(tempfile.mkdtemp(prefix="videos-")))
    step_times: list[float] = []
    last = [0.0]

    def on_step(step: int, total: int) -> None:  # the engine syncs before calling this
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now

    reset_peaks(devices)
    sync(devices)
    t_submit = last[0] = time.perf_counter()
    latents = engine.denoise(req, on_step)
    t_denoised = time.perf_counter()
    frames = engine.decode(latents)
    t_decoded = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        size_bytes = encode_mp4(frames, req.fps, path)
        t_encoded = time.perf_counter()
        store.put_new(video_key("bench-default-video"), path, VIDEO_CONTENT_TYPE)
        t_stored = time.perf_counter()
    e2e = t_stored - t_submit
    ours_step = median(step_times[1:])
    report.add("e2e.submit_to_stored_mp4_s", e2e, "MEASURED, the whole default video")
    report.add("e2e.denoise_s", t_denoised - t_submit, "T5 + all steps")
    report.add("e2e.step_s", {"median": ours_step, "min": min(step_times), "max": max(step_times),
                              "first": step_times[0]})
    report.add("e2e.decode_split_s", t_decoded - t_denoised)
    report.add("e2e.mp4_encode_s", t_encoded - t_decoded, f"{size_bytes} bytes")
    report.add("e2e.store_s", t_stored - t_encoded)
    report.add("e2e.peak_mem_gib", peaks_gib(devices))
    report.add("e2e.latents_finite", bool(torch.isfinite(latents).all()))
    report.add("e2e.gpu_util_mean_pct.denoise", sampler.mean(t_submit, t_denoised))
    report.add("e2e.gpu_util_mean_pct.decode_encode_store", sampler.mean(t_denoised, t_stored))
    if not args.tiny:
        with torch.inference_mode():
            _, mask, _, neg_mask = engine.pipe.encode_prompt(
                prompt=PROMPT, negative_prompt=None, do_classifier_free_guidance=True, device=devices[0])
        cond = forward_flops(args.width, args.height, args.frames, int(mask.sum()))["total"]
        uncond = forward_flops(args.width, args.height, args.frames, int(neg_mask.sum()))["total"]
        report.add("e2e.tflops_per_gpu", (cond + uncond) / len(devices) / ours_step / 1e12,
                   f"{(cond + uncond) / 1e15:.3f} PF per step over {len(devices)} GPUs")

    # 3. Stock diffusers on one GPU, same process: a few steps of the same schedule.
    if args.tiny:
        from diffusers import MochiTransformer3DModel

        stock_transformer = MochiTransformer3DModel.from_pretrained(str(model_dir / "transformer"))
    else:
        from mochi_runner.random_full_model import random_transformer

        stock_transformer = random_transformer(devices[0])
    stock = MochiPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(engine.pipe.scheduler.config),
                          vae=engine.pipe.vae, text_encoder=engine.pipe.text_encoder,
                          tokenizer=engine.pipe.tokenizer, transformer=stock_transformer)
    stock.set_progress_bar_config(disable=True)
    stock_times: list[float] = []
    n_stock = args.stock_steps + 1

    def stock_step_end(p, index, timestep, tensors):
        sync(devices)
        now = time.perf_counter()
        stock_times.append(now - last[0])
        last[0] = now
        if index + 1 == n_stock:
            raise StopBench
        return {}

    reset_peaks(devices)
    sync(devices)
    t_stock = last[0] = time.perf_counter()
    try:
        with torch.inference_mode():
            stock(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                  num_inference_steps=args.steps, guidance_scale=DEFAULT["guidance_scale"],
                  generator=torch.Generator().manual_seed(42), output_type="latent",
                  callback_on_step_end=stock_step_end)
    except StopBench:
        pass
    stock_step = median(stock_times[1:])
    report.add("stock_1gpu.step_s", stock_step,
               f"median of {len(stock_times) - 1} timed steps; first {stock_times[0]:.2f} s")
    report.add("stock_1gpu.peak_mem_gib", peaks_gib(devices))
    report.add("stock_1gpu.gpu_util_mean_pct", sampler.mean(t_stock, time.perf_counter()))
    del stock, stock_transformer
    vaes = engine.vaes
    engine.vaes = vaes[:1]  # diffusers' tiled decode on one GPU
    sync(devices)
    t0 = time.perf_counter()
    engine.decode(latents)
    sync(devices)
    decode_1gpu = time.perf_counter() - t0
    engine.vaes = vaes
    report.add("stock_1gpu.vae_decode_s", decode_1gpu)
    t5_and_rest = (t_denoised - t_submit) - sum(step_times)  # T5 and set-up inside denoise
    stock_total = args.steps * stock_step + t5_and_rest + decode_1gpu + (t_stored - t_decoded)
    report.add("EXTRAPOLATED.stock_1gpu_default_video_s", stock_total,
               f"{args.steps} x stock step + T5 + 1-GPU decode + the same MP4 encode and store")
    report.add("speedup_measured_parallel_vs_extrapolated_stock", stock_total / e2e)
    report.add("bench_seconds", report.elapsed())
    sampler.stop()
    engine.close()


if __name__ == "__main__":
    main()
