"""What a checkpoint of a render in progress costs (issue 20), and how soon a
redelivered job is rendering again. On one GPU, at the default video's size,
with RANDOM full-size weights unless --tiny (real FLOPs, noise pictures).

The runner's own pieces: its two-device engine with both "devices" on this one
GPU (as bench/cuda_graphs.py), its checkpoint code (mochi_runner.checkpoints:
the side-stream host copy, the checksum, the upload to the JetStream object
store bucket of a local nats-server), its verification and resume.

  plain      guided steps with no checkpoint: the step time to compare with
  saved      the same steps with a checkpoint offered after every step (the
             hook a runner runs, one upload in flight, a busy one skipped):
             the effect on the step time, the time the step hook spends
             starting the copy (what the render thread pays), the copy's own
             time until the latents are on the host, the bytes stored, the
             upload time, how many were skipped as busy
  resume     from the stored checkpoint as a redelivery does it: read it from
             the bucket, verify it, and denoise from its step until the first
             resumed step ends (T5 and the latent set-up included): the time
             from a redelivery (its lanes granted) to its first step

    bash bench/run.sh checkpoints                                        # a GPU machine; one GPU
    BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh checkpoints    # CPU dry run, tiny model
or directly, with bench/run.sh's PYTHONPATH and nats-server on PATH:
    python bench/checkpoint_cost.py --out var/bench [--tiny --width 512 --height 320 --frames 13]
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import torch

from common import DEFAULT, PROMPT, StopSteps, bench_model_dir, bench_parser, median, open_report


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--steps", type=int, default=6, help="steps per variant (the first untimed)")
    parser.add_argument("--compile", action="store_true", help="compiled blocks, as the h200x2 runner runs")
    args = parser.parse_args()
    asyncio.run(run(args))


async def run(args) -> None:  # type: ignore[no-untyped-def]
    from mochi_cli.processes import free_port, start_nats
    from mochi_runner.engine import EngineConfig, MochiEngine

    report = open_report(args.out, "checkpoint_cost", args.tiny)
    report.add("size", dict(width=args.width, height=args.height, num_frames=args.frames))
    device = torch.device("cpu" if args.tiny else "cuda:0")
    root = Path(tempfile.mkdtemp(prefix="checkpoint-bench-"))
    port = free_port()
    nats = start_nats(root / "nats", port, root / "logs")
    started = time.perf_counter()
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), devices=(str(device), str(device)),
                                      random_weights=not args.tiny, compile_blocks=args.compile,
                                      warmup_size=(args.width, args.height, args.frames)))
    report.add("build_seconds", time.perf_counter() - started)
    try:
        report.add("warm_up_seconds", engine.warm_up())
        await measure(engine, report, args, f"nats://127.0.0.1:{port}")
    finally:
        engine.close()
        nats.stop()
    report.add("total_seconds", report.elapsed())


async def measure(engine, report, args, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    import nats

    from mochi_contracts.jobs import JobRequest
    from mochi_contracts.streams import JetStreamSettings
    from mochi_runner import checkpoints
    from mochi_runner.resume_schedule import Resume

    req = JobRequest(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                     num_inference_steps=DEFAULT["num_inference_steps"], guidance_scale=4.5, seed=1)
    job_id = "0" * 31 + "1"
    nc = await nats.connect(nats_url)
    store = checkpoints.CheckpointStore(nc.jetstream(), JetStreamSettings())
    assert await store.open(), "the checkpoint bucket could not be created"
    loop = asyncio.get_running_loop()

    async def steps(saver: checkpoints.JobCheckpoints | None) -> tuple[list[float], list[float]]:
        """`args.steps` guided steps; per step, its time and the time its hook spent offering."""
        times: list[float] = []
        hook: list[float] = []
        latest: list[torch.Tensor] = []
        last = [time.perf_counter()]

        def on_step(step: int, total: int) -> None:
            if saver is not None:
                began = time.perf_counter()
                saver.offer(step, latest[0], must=False)
                hook.append(time.perf_counter() - began)
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now
            if step == args.steps:
                raise StopSteps

        def render() -> None:
            last[0] = time.perf_counter()
            try:
                engine.denoise(req, on_step, on_latents=lambda step, latents: latest.__setitem__(slice(None),
                                                                                                 [latents]))
            except StopSteps:
                pass

        await asyncio.to_thread(render)
        return times, hook

    plain, _ = await steps(None)
    report.add("plain_step_s", median(plain[1:]), f"median of {len(plain) - 1} guided steps after the first")

    saver = checkpoints.JobCheckpoints(store, loop, job_id=job_id, req=req, model_digest=engine.model_digest(),
                                       config=engine.render_config(None), runner="bench", attempt=1)
    before = {o: checkpoints.metrics.CHECKPOINTS.labels(outcome=o)._value.get()
              for o in ("saved", "skipped_busy", "failed")}
    saved, hook = await steps(saver)
    await saver.settle(60.0)
    report.add("saved_step_s", median(saved[1:]), "the same steps, a checkpoint offered after each")
    report.add("step_cost_s", median(saved[1:]) - median(plain[1:]),
               "saved minus plain: on a 2-core CPU dry run the upload competes with the render for the cores")
    report.add("hook_offer_s", median(hook), "the render thread's time in offer(): starting the copy")
    after = {o: checkpoints.metrics.CHECKPOINTS.labels(outcome=o)._value.get() - before[o] for o in before}
    report.add("checkpoints", after, "saved, skipped while the last still uploaded, failed")
    upload = checkpoints.metrics.CHECKPOINT_UPLOAD_SECONDS.collect()[0].samples
    count = next(s.value for s in upload if s.name.endswith("_count"))
    total = next(s.value for s in upload if s.name.endswith("_sum"))
    report.add("upload_mean_s", total / count if count else float("nan"),
               "offer to stored: host copy, checksum, upload (local one-node bucket)")

    # The copy alone, on its own: what the side stream takes for this size.
    latents = torch.randn(engine.latent_shape(req), generator=torch.Generator().manual_seed(0)).to(engine.device,
                                                                                                   engine.dtype)
    copies = []
    for _ in range(5):
        began = time.perf_counter()
        checkpoints.HostCopy(latents).wait()
        copies.append(time.perf_counter() - began)
    report.add("host_copy_s", median(copies), "device to pinned host memory, side stream, median of 5")

    blob = await store.load(job_id)
    assert blob is not None
    header = checkpoints._header(blob)[0]
    report.add("checkpoint_bytes", len(blob), f"latents {header.dtype} {header.shape} with the header")
    report.add("checkpoint_step", header.step)

    # A redelivery: read, verify, resume until its first step ends.
    first: list[float] = []
    began = time.perf_counter()
    blob = await store.load(job_id)
    loaded = time.perf_counter()
    header, saved_latents = checkpoints.verify(blob, job_id=job_id, req=req, model_digest=engine.model_digest(),
                                               shape=engine.latent_shape(req))
    verified = time.perf_counter()

    def first_step(step: int, total: int) -> None:
        first.append(time.perf_counter())
        raise StopSteps

    def resume() -> None:
        try:
            engine.denoise(req, first_step, resume=Resume(step=header.step, latents=saved_latents))
        except StopSteps:
            pass

    await asyncio.to_thread(resume)
    report.add("resume_load_s", loaded - began, "the checkpoint read from the bucket")
    report.add("resume_verify_s", verified - loaded, "digests, shape, SHA-256")
    report.add("resume_first_step_s", first[0] - verified, "T5, latent set-up and the first resumed step")
    report.add("redelivery_to_first_step_s", first[0] - began, "a redelivery's lanes granted to its first step")
    await store.delete(job_id)
    await nc.close()


if __name__ == "__main__":
    main()
