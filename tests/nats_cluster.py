"""A three-node JetStream cluster on loopback, each node killable and
restartable from its own store, as production runs NATS."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats

from mochi_cli.processes import Proc, free_port, start_nats


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    store: Path
    proc: Proc | None = None


@dataclass
class NatsCluster:
    root: Path
    size: int = 3
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = [Node(f"nats-{i}", free_port(), free_port(), self.root / f"nats-{i}")
                      for i in range(self.size)]

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    def _args(self, node: Node) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node)
        return ["-n", node.name, "--cluster_name", "mochi", "-cluster", f"nats://127.0.0.1:{node.cluster_port}",
                "-routes", routes]

    def start(self, node: Node, logs: Path) -> None:
        node.proc = start_nats(node.store, node.port, logs, extra=self._args(node))

    def start_all(self, logs: Path) -> None:
        for node in self.nodes:
            self.start(node, logs)
        self.wait_ready()

    def kill(self, node: Node) -> None:
        assert node.proc is not None
        node.proc.kill()

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.stop()

    def node_named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream answers through the cluster (a meta leader exists)."""
        async def probe() -> bool:
            try:
                nc = await nats.connect(self.url.split(","), connect_timeout=1, max_reconnect_attempts=0)
            except Exception:  # not up yet: the answer is "not ready"
                return False
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:  # no meta leader yet
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if asyncio.run(probe()):
                return
            time.sleep(0.3)
        raise TimeoutError("the NATS cluster has no JetStream meta leader")

    def stream_leader(self, stream: str) -> str:
        async def ask() -> str:
            nc = await nats.connect(self.url.split(","))
            try:
                info = await nc.jetstream().stream_info(stream)
                return info.cluster.leader  # type: ignore[union-attr]
            finally:
                await nc.close()

        return asyncio.run(ask())
