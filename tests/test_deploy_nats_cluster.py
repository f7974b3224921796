"""The StatefulSet's nats.conf, as rendered, on three local servers: it must
parse, form a JetStream cluster, take the services' streams with
MOCHI_JETSTREAM_REPLICAS replicas, and answer the probes' health URLs."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from mochi_cli.processes import nats_server_binary
from mochi_common.nats_conn import publish_event
from mochi_contracts.events import JobSubmitted
from mochi_contracts.jobs import JobRequest
from mochi_contracts.streams import (
    DEAD_LETTER_STREAM, JOBS_STREAM, RUNNERS_CONSUMER, JetStreamSettings)
from mochi_common.jetstream_setup import ensure_runner_topology
from test_deploy_support import nats_cluster, nats_config, nats_passwords, one, service_containers

pytestmark = pytest.mark.timeout(120)
SERVERS = 3


def test_config_is_valid(tmp_path: Path) -> None:
    (tmp_path / "accounts.conf").write_text(nats_config("h100x8", "accounts.conf"))
    (tmp_path / "nats.conf").write_text(nats_config("h100x8", "nats.conf"))
    env = {"SERVER_NAME": "nats-0", **nats_passwords("h100x8")}
    done = subprocess.run([nats_server_binary(), "-c", str(tmp_path / "nats.conf"), "-t"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, int]]]:
    with nats_cluster(tmp_path_factory.mktemp("nats-cluster")) as ports:
        assert len(ports) == SERVERS
        yield ports


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def _probe_paths() -> set[str]:
    c = one("h100x8", "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]
    return {c[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}


async def test_cluster_forms_and_answers_its_probes(cluster: list[dict[str, int]]) -> None:
    async def all_healthy() -> bool:
        return all(_status(f"http://127.0.0.1:{p['http']}{path}") == 200
                   for p in cluster for path in _probe_paths())

    deadline = asyncio.get_running_loop().time() + 60
    while not await all_healthy():
        assert asyncio.get_running_loop().time() < deadline, "servers never became healthy"
        await asyncio.sleep(0.5)


async def test_replicated_streams_as_the_services_create_them(cluster: list[dict[str, int]]) -> None:
    replicas = {int(next(e["value"] for e in c["env"] if e["name"] == "MOCHI_JETSTREAM_REPLICAS"))
                for _, _, c in service_containers("h100x8")}
    assert replicas == {SERVERS}
    runner = await nats.connect(f"nats://runner:pw-runner_password@127.0.0.1:{cluster[0]['client']}")
    api = await nats.connect(f"nats://api:pw-api_password@127.0.0.1:{cluster[1]['client']}")
    try:
        js = runner.jetstream(timeout=5)
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # JetStream answers once the three servers elected a meta leader
            try:
                await ensure_runner_topology(js, JetStreamSettings(replicas=SERVERS))
                break
            except Exception:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.5)
        for stream in (JOBS_STREAM, DEAD_LETTER_STREAM):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == SERVERS
            assert info.cluster is not None and len(info.cluster.replicas or []) == SERVERS - 1
        consumer = await js.consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
        assert consumer.config.num_replicas == SERVERS
        job = JobSubmitted(job_id="f" * 32, owner="o", request=JobRequest(prompt="a cat"))
        assert await publish_event(api.jetstream(timeout=5), job) >= 1
    finally:
        await runner.close()
        await api.close()
