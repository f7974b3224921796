"""The whole service on one GPU machine: nats-server, catalog, API and N
two-GPU runners, default jobs submitted over HTTP at once.

  python bench/system_run.py --runners 1 --jobs 4     # nvidia-h200-x2 (issue 9)
  python bench/system_run.py --runners 2 --jobs 6 --hand-over  # a four-GPU machine (issue 10)
  python bench/system_run.py --runners 4 --jobs 8     # the eight-GPU reference node
  python bench/system_run.py --tiny --jobs 4          # CPU dry run, tiny model

On GPUs the runners build full-size Mochi with RANDOM weights (benchmark only:
real FLOPs, noise pictures). Videos go to the local file store. Reports each
job's submit-to-stored time (from the job's own events), jobs per hour, GPU
utilisation sampled by NVML, the GPU idle time between jobs on each runner
(the runner's own measurement and NVML's), how the jobs spread over the
runners and that none ran twice. With --stock-steps, stock diffusers on one
GPU is then timed in the same run for the speed-up. With --hand-over, a
runner is then stopped mid-job, by SIGTERM and then SIGKILL, and its job is
shown to finish once on another runner (bench/runner_handover.py)."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import httpx

from common import DEFAULT, PROMPT, Report, bench_parser
from job_stream import job_events
from runner_handover import RunnerProcess, hand_over

BENCH_ONLY = "RANDOM full-size weights, for benchmarks only: real FLOPs, noise pictures"


def start_stack(root: Path, runners: int, tiny: bool, size: tuple[int, int, int], compile_blocks: bool,
                gpus_per_runner: int = 2, devices: str = "", attention_kernel: str = "sdpa"):
    from mochi_cli.processes import Stack, free_port, spawn_service, start_nats, wait_for_http

    stack = Stack()
    logs = root / "logs"
    nats_port, api_port = free_port(), free_port()
    env = {"MOCHI_NATS_URL": f"nats://127.0.0.1:{nats_port}", "MOCHI_STORE_URL": f"file://{root / 'videos'}",
           # Jobs run for minutes: the ack wait is the runner's heartbeat scale, not the job's.
           "MOCHI_ACK_WAIT_S": "60"}
    stack.add(start_nats(root / "nats", nats_port, logs))
    stack.add(spawn_service("catalog", {**env, "MOCHI_DB_PATH": str(root / "catalog.db")}, logs))
    specs: list[RunnerProcess] = []
    for i in range(runners):
        port = free_port()
        runner_env = {**env, "MOCHI_RUNNER_ID": f"runner-{i}", "MOCHI_HEALTH_PORT": str(port),
                      "MOCHI_WARMUP_WIDTH": str(size[0]), "MOCHI_WARMUP_HEIGHT": str(size[1]),
                      "MOCHI_WARMUP_FRAMES": str(size[2])}
        if tiny:
            runner_env.update(MOCHI_MODEL_DIR=str(root / "tiny-mochi"), MOCHI_BUILD_TINY_MODEL="true",
                              MOCHI_DEVICES="cpu,cpu" if i == 0 else "")
        else:
            first = gpus_per_runner * i
            gpus = devices.split(",") if devices else [f"cuda:{first + k}" for k in range(gpus_per_runner)]
            # One GPU: the single-device engine (stock pipeline); two or more: guidance-parallel.
            runner_env.update(MOCHI_DEVICES=",".join(gpus) if len(gpus) > 1 else "", MOCHI_DEVICE=gpus[0],
                              MOCHI_RANDOM_WEIGHTS_FOR_BENCHMARKS="true", MOCHI_ATTENTION_KERNEL=attention_kernel,
                              MOCHI_COMPILE_BLOCKS="true" if compile_blocks else "false")
        stack.add(spawn_service("runner", runner_env, logs, name=f"runner-{i}"))
        specs.append(RunnerProcess(i, runner_env, f"http://127.0.0.1:{port}/readyz"))
    api = stack.add(spawn_service("api", {
        **env, "MOCHI_PORT": str(api_port), "MOCHI_ALLOW_ANONYMOUS": "true",
        "MOCHI_SUBMITS_PER_MINUTE": "100000", "MOCHI_MAX_QUEUED_PER_OWNER": "0"}, logs))
    url = f"http://127.0.0.1:{api_port}"
    wait_for_http(f"{url}/readyz", timeout=120, proc=api.popen)
    return stack, url, specs, env["MOCHI_NATS_URL"]


def log_lines(path: Path, event: str) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def idle_spans(samples: list[tuple[float, list[int]]], gpu: int, start: float, end: float,
               period: float) -> list[float]:
    """Lengths of the runs of samples with 0% utilisation on `gpu` inside [start, end]."""
    spans, run = [], 0
    for t, util in samples:
        if not start <= t <= end:
            continue
        if util[gpu] == 0:
            run += 1
        elif run:
            spans.append(run * period)
            run = 0
    if run:
        spans.append(run * period)
    return spans


def measure_stock(report: Report, args, encode_and_store_s: float, first_job_s: float) -> None:
    """Stock diffusers MochiPipeline on GPU 0 (RANDOM weights): a few steps of
    the same schedule and its tiled VAE decode; the default video extrapolated."""
    import torch
    from diffusers import MochiPipeline

    from common import sync
    from end_to_end import StopBench
    from mochi_runner.random_full_model import build_random_pipeline

    device = torch.device("cuda:0")
    pipe: MochiPipeline = build_random_pipeline(device, torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    pipe.vae.enable_tiling()
    times: list[float] = []
    last = [0.0]
    kept: dict[str, object] = {}
    n = args.stock_steps + 1

    def step_end(p, index, timestep, tensors):
        sync([device])
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        if index + 1 == n:
            kept["latents"] = tensors["latents"]
            raise StopBench
        return {}

    last[0] = time.perf_counter()
    try:
        with torch.inference_mode():
            pipe(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                 num_inference_steps=args.steps, guidance_scale=DEFAULT["guidance_scale"],
                 generator=torch.Generator().manual_seed(42), output_type="latent",
                 callback_on_step_end=step_end, callback_on_step_end_tensor_inputs=["latents"])
    except StopBench:
        pass
    step = statistics.median(times[1:])
    report.add("stock_1gpu.step_s", step, f"median of {len(times) - 1} timed steps, first {times[0]:.2f} s")
    latents = kept["latents"]
    with torch.inference_mode():
        sync([device])
        t0 = time.perf_counter()
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)
        sync([device])
        decode = time.perf_counter() - t0
    report.add("stock_1gpu.vae_decode_tiled_s", decode)
    total = args.steps * step + decode + encode_and_store_s
    report.add("EXTRAPOLATED.stock_1gpu_default_video_s", total,
               f"{args.steps} x stock step + 1-GPU tiled decode + the runner's MP4 encode and store")
    report.add("speedup.first_job_vs_extrapolated_stock", total / first_job_s,
               "first job's submit-to-stored over HTTP against stock on one GPU, same run")


def main() -> None:
    parser = bench_parser()
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=DEFAULT["num_inference_steps"])
    parser.add_argument("--stock-steps", type=int, default=0,
                        help="after the run, time this many stock one-GPU steps (one more untimed)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--gpus-per-runner", type=int, default=2, choices=(1, 2),
                        help="1: the single-device engine, for a machine with one GPU")
    parser.add_argument("--devices", default="",
                        help='one runner\'s devices, e.g. "cuda:0,cuda:0": the two-GPU code path on one GPU')
    parser.add_argument("--attention-kernel", default="sdpa", choices=("sdpa", "fa4"),
                        help="the runners' MOCHI_ATTENTION_KERNEL (fa4: FlashAttention-4, see bench/fa4_wheels.sh)")
    parser.add_argument("--guidance-free-jobs", type=int, default=0,
                        help="also submit this many jobs with guidance 1 (one lane each on a two-GPU runner)")
    parser.add_argument("--hand-over", action="store_true",
                        help="then stop a runner mid-job, SIGTERM and then SIGKILL (bench/runner_handover.py)")
    parser.add_argument("--hand-over-steps", type=int, default=0, help="steps of the hand-over jobs (default: --steps)")
    parser.add_argument("--hand-over-after-step", type=int, default=2, help="signal the runner once past this step")
    args = parser.parse_args()

    from end_to_end import UtilSampler

    report = Report(args.out, f"system_{args.runners}x{args.gpus_per_runner}gpu")
    report.add("weights", "tiny random model (CPU dry run)" if args.tiny else BENCH_ONLY)
    report.add("setup", f"{args.runners} runner(s) x {args.gpus_per_runner} GPU(s), {args.jobs} jobs of "
                        f"{args.width}x{args.height}x{args.frames}, {args.steps} steps, "
                        f"guidance {DEFAULT['guidance_scale']}, over HTTP, attention {args.attention_kernel}")
    root = Path(tempfile.mkdtemp(prefix="mochi-system-"))
    t_start = time.perf_counter()
    stack, url, specs, nats_url = start_stack(root, args.runners, args.tiny,
                                               (args.width, args.height, args.frames), not args.no_compile,
                                               args.gpus_per_runner, args.devices, args.attention_kernel)
    # NVML counts physical GPUs: "cuda:0,cuda:0" is one.
    physical = {d.split(":")[1] for d in args.devices.split(",")} if args.devices and not args.tiny else None
    gpus = 0 if args.tiny else len(physical) if physical else args.gpus_per_runner * args.runners
    period = 0.1
    sampler = UtilSampler(gpus, period_s=period)
    try:
        from mochi_cli.processes import wait_for_http

        for spec in specs:
            wait_for_http(spec.ready_url, timeout=900, proc=stack.procs[2 + spec.index].popen)
        for i in range(args.runners):
            line = log_lines(root / "logs" / f"runner-{i}.log", "runner.ready")[0]
            report.add(f"runner-{i}.startup_s", line["startup_seconds"],
                       "load + compile + warm-up at the job size, then NATS; ready to pull")
        report.add("stack_ready_s", time.perf_counter() - t_start)

        body = dict(prompt=PROMPT, width=args.width, height=args.height, num_frames=args.frames,
                    num_inference_steps=args.steps, guidance_scale=DEFAULT["guidance_scale"])
        total = args.jobs + args.guidance_free_jobs
        ids: list[str] = [""] * total
        with httpx.Client(base_url=url, timeout=30) as http:
            def submit(i: int) -> None:
                extra = {"guidance_scale": 1.0} if i >= args.jobs else {}
                resp = http.post("/v1/jobs", json={**body, "seed": i, **extra})
                resp.raise_for_status()
                ids[i] = resp.json()["id"]

            # The guided jobs at once, then the guidance-free ones at once (queued
            # after them, so two of them can pair up on the two lanes).
            for batch in (range(args.jobs), range(args.jobs, total)):
                threads = [threading.Thread(target=submit, args=(i,)) for i in batch]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            report.add("submitted", len([i for i in ids if i]), "at once, one thread per job")
            pending = set(ids)
            while pending:
                for job_id in list(pending):
                    job = http.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] not in ("queued", "running"):
                        pending.discard(job_id)
                        if job["status"] != "completed":
                            raise SystemExit(f"job {job_id} ended {job['status']}: {job.get('error')}")
                        print(f"  {job_id} completed on {job['runner']}", flush=True)
                if stack.dead():
                    raise SystemExit(f"a process died: {[p.name for p in stack.dead()]}")
                time.sleep(1.0)
        sampler.stop()
        results(report, root, args, ids, nats_url, sampler.samples, period, gpus)
        if args.hand_over:
            if args.runners < 2:
                raise SystemExit("--hand-over needs --runners 2 or more: the job must finish on another runner")
            hand_over(report, stack, root, url, nats_url, specs,
                      {**body, "num_inference_steps": args.hand_over_steps or args.steps},
                      after_step=args.hand_over_after_step, start_timeout=900)
    finally:
        sampler.stop()
        stack.stop()
    if args.stock_steps and not args.tiny:
        first = report.figures["first_job.submit_to_stored_s"]
        measure_stock(report, args, report.figures["encode_and_store_s.median"], first)
    report.add("bench_seconds", report.elapsed())
    print(f"logs: {root / 'logs'}")


def results(report: Report, root: Path, args, ids: list[str], nats_url: str,
            samples: list[tuple[float, list[int]]], period: float, gpus: int) -> None:
    from mochi_contracts.event_codec import decode_event

    if gpus and not samples:
        raise SystemExit("NVML gave no utilisation samples: the GPU figures would be made up")

    by_job: dict[str, list] = defaultdict(list)
    for seq, subject, headers, data in asyncio.run(job_events(nats_url)):
        event = decode_event(data, headers, subject)
        by_job[event.job_id].append((seq, headers.get("Mochi-Event-Type", ""), event))
    lanes = {e["job_id"]: e.get("lanes") for i in range(args.runners)
             for e in log_lines(root / "logs" / f"runner-{i}.log", "job.started")}
    per_job, spread, twice = [], defaultdict(int), []
    for job_id in ids:
        kinds = [k for _, k, _ in by_job[job_id]]
        if kinds.count("started") != 1 or kinds.count("completed") != 1:
            twice.append(job_id)
        events = {k: e for _, k, e in by_job[job_id]}
        submitted, started, done = events["submitted"].time, events["started"].time, events["completed"].time
        spread[events["completed"].runner] += 1
        per_job.append(dict(job=job_id, runner=events["completed"].runner,
                            guidance=events["submitted"].request.guidance_scale, lanes=lanes.get(job_id),
                            queued_s=round((started - submitted).total_seconds(), 2),
                            submit_to_stored_s=round((done - submitted).total_seconds(), 2)))
    per_job.sort(key=lambda j: j["submit_to_stored_s"])
    report.add("jobs", per_job)
    guided = [j for j in per_job if j["guidance"] > 1.0] or per_job
    report.add("first_job.submit_to_stored_s", guided[0]["submit_to_stored_s"],
               "a warm runner with nothing queued before it")
    first_submit = min(e.time for job in ids for _, k, e in by_job[job] if k == "submitted")
    last_done = max(e.time for job in ids for _, k, e in by_job[job] if k == "completed")
    span = (last_done - first_submit).total_seconds()
    report.add("jobs_per_hour", 3600 * len(ids) / span, f"{len(ids)} jobs in {span:.1f} s, first submit to last stored")
    report.add("jobs_per_runner", dict(spread))
    report.add("started_or_completed_more_than_once", twice)

    render_s, encode_store, gaps = [], [], defaultdict(list)
    for i in range(args.runners):
        path = root / "logs" / f"runner-{i}.log"
        rendered = {e["job_id"]: e for e in log_lines(path, "job.rendered")}
        completed = {e["job_id"]: e for e in log_lines(path, "job.completed")}
        for job_id, e in completed.items():
            if job_id in rendered:
                render_s.append(rendered[job_id]["seconds"])
                encode_store.append(e["seconds"] - rendered[job_id]["seconds"])
        for e in log_lines(path, "job.gpu_idle_before"):
            gaps[f"runner-{i}"].append(e["seconds"])
        starts = [ts(e["timestamp"]) for e in log_lines(path, "job.started")]
        ends = [ts(e["timestamp"]) for e in rendered.values()]
        if gpus and starts and ends:
            # NVML's clock is time.perf_counter; the logs' is wall time.
            offset = time.time() - time.perf_counter()
            per = args.gpus_per_runner
            physical = sorted({int(d.split(":")[1]) for d in args.devices.split(",")}) if args.devices else None
            for g in physical if physical else range(per * i, per * (i + 1)):
                spans = idle_spans(samples, g, min(starts) - offset, max(ends) - offset, period)
                window = [u[g] for t, u in samples if min(starts) - offset <= t <= max(ends) - offset]
                if not window:
                    raise SystemExit(f"no NVML samples for GPU {g}: the utilisation figures would be made up")
                report.add(f"gpu{g}.util_mean_pct_while_runner_busy",
                           round(sum(window) / len(window), 1),
                           f"NVML every {period} s from runner-{i}'s first start to its last render end")
                report.add(f"gpu{g}.zero_util_s", {"total": round(sum(spans), 1),
                                                   "longest": round(max(spans, default=0.0), 1)})
    report.add("render_s", render_s, "denoise + VAE decode, per job")
    report.add("encode_and_store_s.median", statistics.median(encode_store) if encode_store else 0.0,
               "MP4 encode + store, off the GPUs (overlaps the next job's denoise)")
    report.add("gpu_idle_between_jobs_s", dict(gaps),
               "runner's measure: previous render end on the lanes to this render's start")
    if gpus:
        overall = [round(sum(u[g] for _, u in samples) / max(len(samples), 1), 1) for g in range(gpus)]
        report.add("gpu_util_mean_pct_whole_run", overall, "from the stack's start, start-up included")


if __name__ == "__main__":
    main()
