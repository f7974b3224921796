"""`mochi up`: the whole system on this machine, on an embedded default.

nats-server (JetStream, data under ./var/nats), the catalog, one runner on
the CPU with the tiny random model (built on first use) and the API. With
MOCHI_SCHEDULING=fair (or `--scheduling fair`) the runners take the fair-share
scheduler's releases, the API shows its queue order, and the scheduler starts
too (docs/scheduling.md). Ctrl-C stops everything, runner first so a running
job is handed back."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import time
from pathlib import Path

import msgspec

from mochi_cli.processes import Stack, spawn_service, start_nats, wait_for_http
from mochi_common.settings import load_settings
from mochi_contracts.scheduling import Scheduling


class UpSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What `mochi up` reads from the environment (flags override it)."""

    # `fair`: runners, API and a scheduler in fair-share mode (docs/scheduling.md).
    scheduling: Scheduling = "fifo"


def up_settings() -> UpSettings:
    return load_settings(UpSettings)


def webhook_secret(data_dir: Path) -> str:
    """The embedded default's Standard Webhooks secret, made once and kept."""
    path = data_dir / "webhook-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path.read_text().strip()


def run_up(data_dir: Path, api_port: int, nats_port: int, runners: int = 1, scheduling: Scheduling = "fifo") -> int:
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    nats_url = f"nats://127.0.0.1:{nats_port}"
    # Every service reads the same mode: the runners' source of work, the API's queue positions.
    common = {"MOCHI_NATS_URL": nats_url, "MOCHI_STORE_URL": f"file://{data_dir / 'videos'}",
              "MOCHI_SCHEDULING": scheduling}
    stack = Stack()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print(f"starting nats-server on {nats_url} (data in {data_dir / 'nats'})", flush=True)
        stack.add(start_nats(data_dir / "nats", nats_port, logs))
        stack.add(spawn_service("catalog", {**common, "MOCHI_DB_PATH": str(data_dir / "catalog.db")}, logs))
        if scheduling == "fair":
            # One replica: on one machine a second adds no availability (see
            # docs/scheduling.md for replicas); without keys every owner weighs 1.
            stack.add(spawn_service("scheduler", {**common, "MOCHI_SCHEDULER_ID": "local-scheduler"}, logs))
        for i in range(runners):
            stack.add(spawn_service("runner", {
                **common, "MOCHI_MODEL_DIR": str(data_dir / "models" / "tiny-mochi"),
                "MOCHI_BUILD_TINY_MODEL": "true", "MOCHI_RUNNER_ID": f"local-runner-{i + 1}"},
                logs, name=f"runner-{i + 1}"))
        # Webhooks to this machine are allowed here (a receiver on localhost while developing).
        stack.add(spawn_service("webhooks", {**common, "MOCHI_WEBHOOK_SECRET": webhook_secret(data_dir),
                                             "MOCHI_WEBHOOK_ALLOW_LOOPBACK": "true"}, logs))
        # Without keys: the embedded default is one person's machine.
        api = stack.add(spawn_service("api", {**common, "MOCHI_PORT": str(api_port),
                                              "MOCHI_ALLOW_ANONYMOUS": "true",
                                              "MOCHI_WEBHOOK_ALLOW_LOOPBACK": "true"}, logs))
        url = f"http://127.0.0.1:{api_port}"
        wait_for_http(f"{url}/readyz", timeout=120, proc=api.popen)
        print(f"\nMochi Serve is up: {url} (scheduling: {scheduling})\n  API docs: {url}/schema\n  logs:     {logs}\n"
              "  submit:   mochi submit 'a cat walks on the grass' --width 256 --height 144 "
              "--frames 13 --steps 8 --out cat.mp4\n"
              f"  webhook signing secret: {data_dir / 'webhook-secret'}\nCtrl-C stops everything.", flush=True)
        while not stopping:
            dead = stack.dead()
            if dead:
                for proc in dead:
                    print(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log_path}", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping...", flush=True)
        stack.stop()
