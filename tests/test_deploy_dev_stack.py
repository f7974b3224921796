"""The dev overlay's services as local processes, with exactly the environment
the manifests give them, against the rendered NATS cluster config and its
per-service users: a job submitted through the API completes on a runner
and its video downloads.

What is mapped, and nothing else: the `nats` Service name becomes one
server's loopback port, each volume's mount path becomes a local directory
(hostPath volumes shared between pods stay shared), each container port
becomes a free port, Secrets become the test passwords, and the pod name
becomes "<deployment>-0". Readiness is awaited through each container's own
readinessProbe path."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mochi_cli.client import MochiClient
from mochi_cli.processes import Proc, free_port, spawn_service
from test_deploy_support import nats_cluster, nats_passwords, one, service_containers

pytestmark = pytest.mark.timeout(300)
OVERLAY = "dev"
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _secret(name: str, key: str) -> str:
    # The server reads the same Secret key into the variable that accounts.conf uses.
    server = one(OVERLAY, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"][0]
    for e in server["env"]:
        if e.get("valueFrom", {}).get("secretKeyRef") == {"name": name, "key": key}:
            return nats_passwords(OVERLAY)[e["name"]]
    raise AssertionError(f"no NATS server variable reads {name}/{key}")


def _local_path(value: str, paths: dict[str, str]) -> str:
    # The longest mount path that holds the value wins; replaced once only.
    for mount, local in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        for prefix in ("", "file://"):
            if value == prefix + mount or value.startswith(prefix + mount + "/"):
                return prefix + local + value[len(prefix + mount):]
    return value


def pod_env(obj: dict, container: dict, root: Path, nats_port: int) -> tuple[dict[str, str], dict[str, int]]:
    spec = obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    paths = {}
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        local = (root / "node" / vol["hostPath"]["path"].lstrip("/") if "hostPath" in vol
                 else root / obj["metadata"]["name"] / m["name"])
        local.mkdir(parents=True, exist_ok=True)
        paths[m["mountPath"]] = str(local)
    ports = {p["name"]: free_port() for p in container.get("ports", [])}
    by_number = {str(p["containerPort"]): str(ports[p["name"]]) for p in container.get("ports", [])}
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            value = _REF.sub(lambda m: env[m.group(1)], e["value"])
        elif "secretKeyRef" in e["valueFrom"]:
            value = _secret(**e["valueFrom"]["secretKeyRef"])
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            value = f"{obj['metadata']['name']}-0"
        if e["name"] in ("MOCHI_PORT", "MOCHI_HEALTH_PORT"):
            value = by_number[value]
        value = _local_path(value, paths)
        env[e["name"]] = value
    url = env["MOCHI_NATS_URL"]
    assert "@nats:4222" in url
    env["MOCHI_NATS_URL"] = url.replace("@nats:4222", f"@127.0.0.1:{nats_port}")
    return env, ports


def _wait_ready(proc: Proc, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), f"{proc.name} exited:\n{proc.log()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{proc.name} never ready at {url}:\n{proc.log()[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("dev-stack")
    procs: list[Proc] = []
    with nats_cluster(root / "nats", OVERLAY) as servers:
        try:
            api_url = ""
            # The order the services need each other in: catalog, runner, API.
            found = {service: (obj, c) for service, obj, c in service_containers(OVERLAY)}
            for i, service in enumerate(("catalog", "runner", "api")):
                obj, container = found[service]
                env, ports = pod_env(obj, container, root, servers[i % len(servers)]["client"])
                proc = spawn_service(service, env, root / "logs", name=service)
                procs.append(proc)
                probe = container["readinessProbe"]["httpGet"]
                _wait_ready(proc, f"http://127.0.0.1:{ports[probe['port']]}{probe['path']}",
                            timeout=240 if service == "runner" else 60)
                if service == "api":
                    api_url = f"http://127.0.0.1:{ports['http']}"
            yield api_url
        finally:
            for proc in reversed(procs):
                proc.stop()


def test_a_job_completes_on_the_dev_stack(stack: str, tmp_path: Path) -> None:
    with MochiClient(stack) as client:
        job = client.submit("a red ball bouncing", width=64, height=64, num_frames=7,
                            num_inference_steps=2, seed=1)
        done = client.wait(job["id"], timeout=180)
        assert done["status"] == "completed", done
        video = client.download(job["id"], tmp_path / "video.mp4")
        assert video.stat().st_size > 0
        assert [j["id"] for j in client.list(limit=5)["jobs"]] == [job["id"]]
