"""Benchmark part 3: jobs without guidance (guidance <= 1) on a two-GPU engine.

A guidance-free step is one batch-1 forward: run as a guided engine would run
it, it occupies GPU 0 and leaves GPU 1 idle. The engine's lanes instead run two
such jobs at once, one per GPU. Measured here at the job size (RANDOM weights
unless --tiny): one job alone on lane 0, then two jobs at once on lanes 0 and 1.
The guided path is also run for 2 steps, to check it after the lanes were added."""

from __future__ import annotations

import threading
import time


from common import DEFAULT, PROMPT, bench_model_dir, bench_parser, median, open_report, peaks_gib, reset_peaks, sync


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--devices", default="cuda:0,cuda:1")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (one more untimed)")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    from mochi_contracts.jobs import JobRequest
    from mochi_runner.engine import EngineConfig, MochiEngine

    report = open_report(args.out, "guidance_free", args.tiny)
    devices_spec = ("cpu", "cpu") if args.tiny else tuple(args.devices.split(","))
    engine = MochiEngine(EngineConfig(model_dir=bench_model_dir(args.tiny), devices=devices_spec,
                                      random_weights=not args.tiny, compile_blocks=not args.no_compile,
                                      warmup_size=(args.width, args.height, args.frames)))
    devices = engine.devices
    size = dict(width=args.width, height=args.height, num_frames=args.frames)
    free = [JobRequest(prompt=PROMPT, guidance_scale=1.0, num_inference_steps=DEFAULT["num_inference_steps"],
                       seed=s, **size) for s in (11, 12)]

    class Enough(Exception):
        pass

    def hook(times: list[float], n: int):
        last = [time.perf_counter()]

        def on_step(step: int, total: int) -> None:  # the engine syncs the lane's device first
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now
            if step == n:
                raise Enough
        return on_step

    def run(lane: int, n: int, times: list[float]) -> None:
        try:
            engine.denoise(free[lane], hook(times, n), lane=lane)
        except Enough:
            pass

    # Warm each lane (compiles its graphs; the compile gate keeps them apart).
    t0 = time.perf_counter()
    for lane in range(len(devices)):
        run(lane, 2, [])
    report.add("lanes_warm_s", time.perf_counter() - t0, "compilation included")

    n = args.steps + 1
    alone: list[float] = []
    reset_peaks(devices)
    run(0, n, alone)
    report.add("one_job_lane0_alone.step_s", median(alone[1:]), "GPU 1 idle meanwhile")
    report.add("one_job_lane0_alone.peak_mem_gib", peaks_gib(devices))

    per_lane: list[list[float]] = [[] for _ in devices]
    threads = [threading.Thread(target=run, args=(lane, n, per_lane[lane])) for lane in range(len(devices))]
    reset_peaks(devices)
    sync(devices)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for lane, times in enumerate(per_lane):
        report.add(f"two_jobs_at_once.lane{lane}.step_s", median(times[1:]))
    report.add("two_jobs_at_once.peak_mem_gib", peaks_gib(devices))
    both = median([median(t[1:]) for t in per_lane])
    report.add("guidance_free_throughput_gain", 2 * median(alone[1:]) / both,
               "steps per second, two lanes vs one job alone")
    report.add("two_jobs_at_once.wall_s", wall, f"{n} steps each")

    # The guided path after the lanes were added: 2 steps at the job size.
    t0 = time.perf_counter()
    engine.warm_up()
    report.add("guided_2_step_render_s", time.perf_counter() - t0, "compilation of the guided graphs included")
    guided: list[float] = []
    try:
        engine.denoise(JobRequest(prompt=PROMPT, seed=5, **size), hook(guided, 3))
    except Enough:
        pass
    report.add("guided.step_s", median(guided[1:]))
    report.add("bench_seconds", report.elapsed())
    engine.close()


if __name__ == "__main__":
    main()
