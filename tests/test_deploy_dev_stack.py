"""The dev overlay's services as local processes, with exactly the environment
the manifests give them, against the rendered NATS cluster config and its
per-service users: a job submitted through the API completes on a runner
and its video downloads.

What is mapped, and nothing else: the `nats` Service name becomes one
server's loopback port; MinIO (its Service and the public download address)
becomes a local S3 server (moto); each volume's mount path becomes a local
directory (hostPath volumes shared between pods stay shared); each container
port becomes a free port; Secrets become test passwords; the pod name becomes
"<deployment>-0". Readiness is awaited through each container's own
readinessProbe path."""

from __future__ import annotations

import base64
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mochi_api.api_keys import hash_token
from mochi_cli.client import ApiError, MochiClient
from mochi_cli.processes import Proc, free_port, spawn, spawn_service, wait_for_port
from test_deploy_support import REPO, nats_cluster, nats_passwords, one, service_containers

pytestmark = pytest.mark.timeout(300)
OVERLAY = "dev"
DEV_API_KEY = "msk_dev_laptop_only"  # documented in overlays/dev/kustomization.yaml
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _secret(name: str, key: str) -> str:
    if name == "mochi-minio":
        return f"test-{key}"  # the local S3 server takes any keys
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


def _image_paths() -> dict[str, str]:
    """Paths the API image fills (its Dockerfile's COPY lines) -> this checkout's files."""
    dockerfile = (REPO / "deploy" / "docker" / "api.Dockerfile").read_text()
    return {dest: str(REPO / src) for src, dest in re.findall(r"^COPY (web) (\S+)$", dockerfile, re.M)}


def pod_env(obj: dict, container: dict, root: Path, nats_port: int,
            urls: dict[str, str]) -> tuple[dict[str, str], dict[str, int]]:
    spec = obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    paths = dict(_image_paths())
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        local = (root / "node" / vol["hostPath"]["path"].lstrip("/") if "hostPath" in vol
                 else root / obj["metadata"]["name"] / m["name"])
        local.mkdir(parents=True, exist_ok=True)
        if "secret" in vol:  # the Secret's keys become files, as the kubelet does
            secret = one(OVERLAY, "Secret", vol["secret"]["secretName"])
            for key, data in secret["data"].items():
                (local / key).write_bytes(base64.b64decode(data))
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
        for url, local_url in urls.items():
            if value == url:
                value = local_url
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


def _minio_urls() -> list[str]:
    """The MinIO addresses the services are given: in-cluster and public."""
    found = set()
    for _, _, c in service_containers(OVERLAY):
        for e in c["env"]:
            if e["name"] in ("MOCHI_S3_ENDPOINT", "MOCHI_S3_PUBLIC_ENDPOINT"):
                found.add(e["value"])
    assert "http://minio:9000" in found
    return sorted(found)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("moto.server", reason="the local S3 server: pip install 'moto[server]'")
    root = tmp_path_factory.mktemp("dev-stack")
    s3_port = free_port()
    procs: list[Proc] = [spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(s3_port)], {}, root / "logs")]
    wait_for_port(s3_port, timeout=60, proc=procs[0].popen)
    urls = {url: f"http://127.0.0.1:{s3_port}" for url in _minio_urls()}
    with nats_cluster(root / "nats", OVERLAY) as servers:
        try:
            api_url = ""
            # The order the services need each other in: catalog, runner, API.
            found = {service: (obj, c) for service, obj, c in service_containers(OVERLAY)}
            for i, service in enumerate(("catalog", "runner", "api")):
                obj, container = found[service]
                env, ports = pod_env(obj, container, root, servers[i % len(servers)]["client"], urls)
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
    keys = base64.b64decode(one(OVERLAY, "Secret", "mochi-api-keys")["data"]["keys"]).decode()
    assert hash_token(DEV_API_KEY) in keys  # the key the dev overlay documents
    with MochiClient(stack) as anonymous:
        with pytest.raises(ApiError) as refused:
            anonymous.submit("no key")
        assert refused.value.status == 401
    with MochiClient(stack, api_key=DEV_API_KEY) as client:
        job = client.submit("a red ball bouncing", width=64, height=64, num_frames=7,
                            num_inference_steps=2, seed=1)
        done = client.wait(job["id"], timeout=180)
        assert done["status"] == "completed", done
        video = client.download(job["id"], tmp_path / "video.mp4")
        assert video.stat().st_size > 0
        assert [j["id"] for j in client.list(limit=5)["jobs"]] == [job["id"]]
