"""Fixtures that start the real parts: nats-server on a free loopback port,
the services as separate processes, and the tiny random Mochi."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mochi_cli.client import MochiClient
from mochi_cli.processes import Proc, free_port, spawn_service, start_nats, wait_for_http
from nats_cluster import NatsCluster
from stream_reader import read_events

# Small renders keep the suite fast on two cores; one test uses the default size.
SMALL = {"width": 64, "height": 64, "num_frames": 7, "num_inference_steps": 4}
# The webhook dispatcher's Standard Webhooks secret in tests.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mochi_runner.tiny_model import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-mochi")


@dataclass
class System:
    """One deployment on loopback; every process is stopped at teardown."""

    root: Path
    model_dir: Path
    nats_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    nats: Proc | None = None
    api_url: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    cluster: NatsCluster | None = None

    @property
    def nats_url(self) -> str:
        return self.cluster.url if self.cluster else f"nats://127.0.0.1:{self.nats_port}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def env(self, **extra: str) -> dict[str, str]:
        return {"MOCHI_NATS_URL": self.nats_url, "MOCHI_STORE_URL": f"file://{self.root / 'videos'}",
                "MOCHI_LOG_FORMAT": "json", **self.settings, **extra}

    def start_nats(self) -> Proc:
        self.nats = start_nats(self.root / "nats", self.nats_port, self.logs)
        return self.nats

    def start_nats_cluster(self, size: int = 3) -> NatsCluster:
        """Streams and consumers then keep `size` replicas."""
        self.cluster = NatsCluster(self.root / "cluster", size)
        self.cluster.start_all(self.logs)
        self.settings["MOCHI_JETSTREAM_REPLICAS"] = str(size)
        return self.cluster

    def start_catalog(self, name: str = "catalog", wait: bool = True, **extra: str) -> Proc:
        port = free_port()
        env = self.env(MOCHI_DB_PATH=str(self.root / f"{name}.db"), MOCHI_HEALTH_PORT=str(port), **extra)
        proc = self._add(spawn_service("catalog", env, self.logs, name=name))
        proc.health_url = f"http://127.0.0.1:{port}"
        if wait:
            wait_for_http(f"{proc.health_url}/readyz", timeout=60, proc=proc.popen)
        return proc

    def start_runner(self, name: str = "runner", wait: bool = False, **extra: str) -> Proc:
        port = free_port()
        env = self.env(MOCHI_MODEL_DIR=str(self.model_dir), MOCHI_RUNNER_ID=name,
                       MOCHI_HEALTH_PORT=str(port), **extra)
        proc = self._add(spawn_service("runner", env, self.logs, name=name))
        proc.health_url = f"http://127.0.0.1:{port}"
        if wait:
            wait_for_http(f"{proc.health_url}/readyz", timeout=120, proc=proc.popen)
        return proc

    def start_api(self, name: str = "api", **extra: str) -> Proc:
        port = free_port()
        env = self.env(MOCHI_PORT=str(port), **{"MOCHI_ALLOW_ANONYMOUS": "true",
                                                "MOCHI_WEBHOOK_ALLOW_LOOPBACK": "true", **extra})
        proc = self._add(spawn_service("api", env, self.logs, name=name))
        self.api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{self.api_url}/readyz", timeout=60, proc=proc.popen)
        return proc

    def start_webhooks(self, name: str = "webhooks", wait: bool = True, **extra: str) -> Proc:
        """The webhook dispatcher (webhooks and deadlines); loopback receivers allowed."""
        port = free_port()
        env = self.env(MOCHI_HEALTH_PORT=str(port), **{
            "MOCHI_WEBHOOK_SECRET": WEBHOOK_SECRET, "MOCHI_WEBHOOK_ALLOW_LOOPBACK": "true", **extra})
        proc = self._add(spawn_service("webhooks", env, self.logs, name=name))
        proc.health_url = f"http://127.0.0.1:{port}"
        if wait:
            wait_for_http(f"{proc.health_url}/readyz", timeout=60, proc=proc.popen)
        return proc

    def _add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def client(self) -> MochiClient:
        return MochiClient(self.api_url)

    def events(self, subject: str = "mochi.jobs.>") -> list:
        return asyncio.run(read_events(self.nats_url, subject))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.nats:
            self.nats.stop()
        if self.cluster:
            self.cluster.stop_all()

    def dump_logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log()[-4000:]}" for p in self.procs)


@pytest.fixture
def system(tmp_path: Path, tiny_model: Path, request: pytest.FixtureRequest) -> Iterator[System]:
    sys_ = System(root=tmp_path, model_dir=tiny_model)
    sys_.start_nats()
    yield sys_
    sys_.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(sys_.dump_logs())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def stack(system: System) -> System:
    """nats-server, catalog, one runner and the API, all running."""
    system.start_catalog()
    system.start_runner()
    system.start_api()
    return system
