"""What a live preview costs a render (issue 24): its GPU part per step and
that part's share of a denoising step. On the device given (cuda:0 when there
is one), at the default video's size (848x480x163: latents 12x28x60x106),
with RANDOM full-size weights unless --tiny (real FLOPs, noise pictures).

The runner's own code (mochi_runner.previews):
  slice        what every step pays: the preview's 4 latent frames kept for
               the next step's velocity (an index_select), CUDA events
  project      what a step with a preview due adds: the clean estimate from
               two steps' frames, the 12->3 projection and the 2x upsample,
               CUDA events over many reps
  copy, encode the host copy (a side stream, in the preview's thread) and the
               WebP + PNG encode, wall clock: off the denoising loop
  step         the step to compare with: --step-s, or measured here with the
               runner's engine (one device), first without previews, then
               with JobPreviews (MOCHI_PREVIEW_EVERY_S=0 here: a preview due
               after every step, the worst case; the runner's default 3 s
               makes at most one per step on a GPU), stored in the previews
               bucket of a local nats-server as the runner does
  share        (slice + project) / the step without previews, in percent: the
               issue's target is < 1%

    bash bench/run.sh preview                                        # a GPU machine; one GPU
    BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh preview    # CPU dry run, tiny model
or directly, with bench/run.sh's PYTHONPATH (and nats-server on PATH unless --step-s):
    python bench/preview_cost.py --out var/bench [--tiny --width 128 --height 96 --frames 25] [--step-s 5.76]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import torch

from common import DEFAULT, PROMPT, bench_model_dir, cuda_seconds, median, open_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--tiny", action="store_true", help="CPU dry run with the tiny model")
    parser.add_argument("--width", type=int, default=DEFAULT["width"])
    parser.add_argument("--height", type=int, default=DEFAULT["height"])
    parser.add_argument("--frames", type=int, default=DEFAULT["num_frames"])
    parser.add_argument("--reps", type=int, default=200, help="reps of each GPU part")
    parser.add_argument("--steps", type=int, default=4, help="steps per variant when measuring (the first untimed)")
    parser.add_argument("--step-s", type=float, default=None,
                        help="a step's seconds to compare with, instead of measuring it with the engine")
    args = parser.parse_args()
    asyncio.run(run(args))


def _timed(fn, device: torch.device, reps: int) -> float:
    """Seconds per call: CUDA events on a GPU, the wall clock's median on the CPU."""
    if device.type == "cuda":
        return cuda_seconds(fn, device, reps)
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return median(times)


async def run(args) -> None:  # type: ignore[no-untyped-def]
    from diffusers import FlowMatchEulerDiscreteScheduler

    from mochi_runner import previews

    report = open_report(args.out, "preview_cost", args.tiny)
    device = torch.device("cuda:0" if torch.cuda.is_available() and not args.tiny else "cpu")
    shape = (1, 12, (args.frames - 1) // 6 + 1, args.height // 8, args.width // 8)
    report.add("size", dict(width=args.width, height=args.height, num_frames=args.frames, latents=list(shape[1:]),
                            device=str(device)))
    steps = DEFAULT["num_inference_steps"]
    # genmo's scheduler configuration (sigmas rising to 1 at the clean end).
    sigmas = previews.schedule(FlowMatchEulerDiscreteScheduler(invert_sigmas=True).config, steps)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=gen).to(device)  # the pipeline's latents are float32
    index = torch.tensor(previews.frame_indices(shape[2]), device=device)
    before = latents.index_select(2, index)
    now = (latents + 0.01 * torch.randn(shape, generator=gen).to(device)).index_select(2, index)
    factors = previews._factors(device)

    slice_s = _timed(lambda: latents.index_select(2, index).float(), device, args.reps)
    report.add("slice_s", slice_s, "every step: the preview's latent frames kept for the next step")
    project_s = _timed(lambda: previews.project(previews.clean_estimate(now, before, sigmas, 10), factors),
                       device, args.reps)
    report.add("project_s", project_s, "a step with a preview due: clean estimate, 12->3 projection, 2x upsample")
    rgb = previews.project(previews.clean_estimate(now, before, sigmas, 10), factors)
    report.add("preview_size", list(rgb.shape), "frames, height, width, RGB")

    def copy() -> object:
        if device.type != "cuda":
            return rgb.numpy()
        side = torch.cuda.Stream(device)
        with torch.cuda.stream(side):
            host = rgb.to("cpu")
        side.synchronize()
        return host.numpy()

    frames = copy()
    copy_times, encode_times, sizes = [], [], []
    for _ in range(20):
        began = time.perf_counter()
        frames = copy()
        copy_times.append(time.perf_counter() - began)
        began = time.perf_counter()
        webp = previews.encode_webp(frames)  # type: ignore[arg-type]
        previews.encode_png(frames[len(frames) // 2])  # type: ignore[index]
        encode_times.append(time.perf_counter() - began)
        sizes.append(len(webp))
    report.add("copy_s", median(copy_times), "host copy on a side stream (the preview's thread)")
    report.add("encode_s", median(encode_times), "WebP + PNG (the preview's thread)")
    report.add("webp_bytes", int(median(sizes)))

    if args.step_s is not None:
        step_s, source = args.step_s, "--step-s"
    else:
        step_s = await measure_steps(args, device, report)
        source = "measured: the step without previews"
    per_step = slice_s + project_s
    report.add("step_s", step_s, source)
    report.add("gpu_per_step_s", per_step, "slice + project: the worst case, a preview due every step")
    report.add("share_percent", 100.0 * per_step / step_s, "target < 1")
    report.add("total_seconds", report.elapsed())
    print(json.dumps(report.figures, default=str))


async def measure_steps(args, device: torch.device, report) -> float:  # type: ignore[no-untyped-def]
    """Steps of the runner's engine without, then with, JobPreviews; the step
    time without (what the share is of)."""
    import nats

    from mochi_cli.processes import free_port, start_nats
    from mochi_contracts.jobs import JobRequest
    from mochi_contracts.streams import JetStreamSettings
    from mochi_runner import previews
    from mochi_runner.engine import EngineConfig, MochiEngine

    class Enough(Exception):
        pass

    root = Path(tempfile.mkdtemp(prefix="preview-bench-"))
    port = free_port()
    server = start_nats(root / "nats", port, root / "logs")
    began = time.perf_counter()
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), device=str(device),
                                      random_weights=not args.tiny))
    report.add("build_seconds", time.perf_counter() - began)
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        report.add("warm_up_seconds", engine.warm_up())
        req = JobRequest(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                         num_inference_steps=DEFAULT["num_inference_steps"], guidance_scale=4.5, seed=1)
        store = previews.PreviewStore(nc.jetstream(), JetStreamSettings())
        loop = asyncio.get_running_loop()
        told: list[int] = []

        async def published(step: int, size: int) -> None:
            told.append(size)

        async def steps(job: previews.JobPreviews | None) -> list[float]:
            times: list[float] = []
            last = [time.perf_counter()]

            def on_latents(step: int, latents: torch.Tensor) -> None:
                if job is not None:
                    job.on_latents(step, latents)

            def on_step(step: int, total: int) -> None:
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now
                if step == args.steps:
                    raise Enough

            def render() -> None:
                last[0] = time.perf_counter()
                try:
                    engine.denoise(req, on_step, on_latents=on_latents)
                except Enough:
                    pass

            await asyncio.to_thread(render)
            return times

        plain = await steps(None)
        report.add("plain_step_s", median(plain[1:]), f"median of {len(plain) - 1} guided steps after the first")
        job = previews.JobPreviews(store, loop, job_id="0" * 31 + "2", latent_frames=engine.latent_shape(req)[2],
                                   sigmas=previews.schedule(engine.pipe.scheduler.config, req.num_inference_steps),
                                   every_s=0.0, published=published)
        with_previews = await steps(job)
        await job.settle(60.0)
        report.add("preview_step_s", median(with_previews[1:]), "the same steps, a preview due after each")
        report.add("previews_stored", len(told), "one in flight at a time: a due one is skipped while busy")
        report.add("step_difference_s", median(with_previews[1:]) - median(plain[1:]),
                   "with minus without: on a 2-core CPU the encode competes with the render for the cores")
        await store.delete(job.job_id)
        return median(plain[1:])
    finally:
        await nc.close()
        engine.close()
        server.stop()


if __name__ == "__main__":
    main()
