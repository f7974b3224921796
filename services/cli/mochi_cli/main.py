"""The `mochi` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


# How `mochi submit --wait` says each phase (mochi_contracts.phases).
PHASE_WORDS = {"queued": "queued", "encoding_prompt": "encoding the prompt", "denoising": "denoising",
               "decoding": "decoding", "encoding_video": "encoding the video", "storing": "storing",
               "finished": "finished"}


def _submit(args: argparse.Namespace) -> int:
    from mochi_cli.client import ApiError, MochiClient
    from mochi_contracts.resources import Job

    params = {k: v for k, v in {
        "negative_prompt": args.negative_prompt, "width": args.width, "height": args.height,
        "num_frames": args.frames, "num_inference_steps": args.steps,
        "guidance_scale": args.guidance, "seed": args.seed, "fps": args.fps}.items() if v is not None}
    with MochiClient(args.api, api_key=args.api_key) as client:
        try:
            job = client.submit(args.prompt, webhook_url=args.webhook_url,
                                webhook_events=args.webhook_events.split(",") if args.webhook_events else None,
                                cancel_after=args.cancel_after, **params)
        except ApiError as err:
            for e in err.problem.get("errors", []):
                print(f"  {e['field']}: {e['message']}", file=sys.stderr)
            print(f"refused: {err}", file=sys.stderr)
            return 2
        print(f"job {job.id} queued")
        if not (args.wait or args.out):
            return 0

        def show(j: Job) -> None:
            p = j.progress
            width = 30
            done = int(width * p.fraction)
            where = f"queue position {j.queue_position}" if j.status == "queued" and j.queue_position else ""
            doing = PHASE_WORDS.get(p.phase, p.phase)
            print(f"\r{j.status:<10} [{'#' * done}{'.' * (width - done)}] "
                  f"step {p.step}/{p.total_steps} {doing:<19} {where:<20}", end="", flush=True)

        job = client.wait(job.id, on_update=show)
        print()
        if job.status != "completed":
            print(f"job {job.id} {job.status}: {job.error}", file=sys.stderr)
            return 1
        if args.out:
            client.download(job.id, Path(args.out))
            print(f"saved {args.out}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from mochi_cli.client import ApiError, MochiClient
    from mochi_contracts.events import FINAL_TYPES

    with MochiClient(args.api, api_key=args.api_key) as client:
        try:
            if args.follow:
                for event in client.events(args.job_id):
                    if event.type == "log":
                        print(f"{event.data['time']} {event.data['level']:<7} {event.data['message']}", flush=True)
                    elif event.type in FINAL_TYPES:
                        print(f"{event.data['time']} {event.type}", flush=True)
            else:
                for line in client.logs(args.job_id):
                    print(f"{line.time.isoformat()} {line.level:<7} {line.message}")
        except ApiError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


def _model_check(model_dir: Path) -> int:
    from mochi_runner.model_check import check_model

    report = check_model(model_dir)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.problems:
        return 1
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mochi", description="Mochi Serve: text to video with Mochi-1")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="run the HTTP API (settings from MOCHI_* variables)")
    sub.add_parser("catalog", help="run the catalog projection and query service")
    sub.add_parser("runner", help="run a GPU runner")
    sub.add_parser("webhooks", help="run the webhook dispatcher (webhooks and deadlines)")
    sub.add_parser("scheduler", help="run the fair-share scheduler (runners with MOCHI_SCHEDULING=fair)")
    up = sub.add_parser("up", help="run the whole system here on an embedded default")
    up.add_argument("--data", type=Path, default=Path("var"), help="working folder (default ./var)")
    up.add_argument("--port", type=int, default=8000, help="API port")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--runners", type=int, default=1)
    up.add_argument("--scheduling", choices=["fifo", "fair"], default=None,
                    help="fair: start the fair-share scheduler too (default: MOCHI_SCHEDULING, else fifo)")
    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new_key = keys_sub.add_parser("new", help="make a key: prints the key once, and the line for the keys file")
    new_key.add_argument("owner")
    new_key.add_argument("--admin", action="store_true", help="sees and manages every owner's jobs")
    model = sub.add_parser("model", help="model directories")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    check = model_sub.add_parser("check", help="check a model directory's components, shards and headers "
                                              "(no weights are read): problems one per line, exit 1")
    check.add_argument("dir", type=Path)
    tiny = sub.add_parser("build-tiny-model", help="save a tiny random Mochi for tests")
    tiny.add_argument("dest", type=Path)
    s = sub.add_parser("submit", help="submit a job, optionally wait and download")
    s.add_argument("prompt")
    s.add_argument("--api", default="http://127.0.0.1:8000")
    s.add_argument("--api-key", default=None)
    s.add_argument("--negative-prompt")
    s.add_argument("--width", type=int)
    s.add_argument("--height", type=int)
    s.add_argument("--frames", type=int)
    s.add_argument("--steps", type=int)
    s.add_argument("--guidance", type=float)
    s.add_argument("--seed", type=int)
    s.add_argument("--fps", type=int)
    s.add_argument("--webhook-url", help="told of the job's events (Standard Webhooks signed)")
    s.add_argument("--webhook-events", help="comma-separated: started,progress,completed,failed,cancelled,expired")
    s.add_argument("--cancel-after", help="expire the job if it has not started within this (90s, 5m, 1h)")
    s.add_argument("--wait", action="store_true", help="wait with a progress bar")
    s.add_argument("--out", help="download the MP4 here (implies --wait)")
    lg = sub.add_parser("logs", help="a job's log lines")
    lg.add_argument("job_id")
    lg.add_argument("--api", default="http://127.0.0.1:8000")
    lg.add_argument("--api-key", default=None)
    lg.add_argument("--follow", "-f", action="store_true", help="follow the job's events until it ends")
    args = parser.parse_args(argv)

    if args.command == "api":
        from mochi_api.app import main as run
        run()
    elif args.command == "catalog":
        from mochi_catalog.service import main as run
        run()
    elif args.command == "runner":
        from mochi_runner.service import main as run
        run()
    elif args.command == "webhooks":
        from mochi_webhooks.service import main as run
        run()
    elif args.command == "scheduler":
        from mochi_scheduler.service import main as run
        run()
    elif args.command == "up":
        from mochi_cli.up import run_up, up_settings
        sys.exit(run_up(args.data, args.port, args.nats_port, args.runners,
                        args.scheduling or up_settings().scheduling))
    elif args.command == "keys":
        from mochi_api.api_keys import new_key as make_key

        token, line = make_key(args.owner, args.admin)
        print(f"key (give it to {args.owner}; it is not stored anywhere): {token}")
        print(f"line for MOCHI_API_KEYS_FILE: {line}")
    elif args.command == "model":
        sys.exit(_model_check(args.dir))
    elif args.command == "build-tiny-model":
        from mochi_runner.tiny_model import save_tiny_model
        print(save_tiny_model(args.dest))
    elif args.command == "submit":
        sys.exit(_submit(args))
    elif args.command == "logs":
        sys.exit(_logs(args))


if __name__ == "__main__":
    main()
