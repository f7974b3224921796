"""Shared by the tests/test_deploy_*.py files (no tests here): render the
kustomize overlays once with `kubectl kustomize` and pick objects out of them."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE = REPO / "deploy" / "kustomize"
OVERLAYS = ("h100x8", "dev", "keda", "multi-node", "fair-share")
GPU_OVERLAYS = ("h100x8", "keda", "multi-node", "fair-share")
# Overlays for a single node: a drain there takes every pod (no PDBs).
ONE_NODE_OVERLAYS = ("h100x8", "dev")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# The label the weights DaemonSet puts on a node once its model is checked.
WEIGHTS_LABEL = "mochi-serve.dev/weights"
# The service each container runs, by its `mochi` subcommand (the image's entrypoint).
SERVICES = ("api", "catalog", "runner", "webhooks")


def kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.fail("kubectl is needed to render deploy/kustomize (it bundles kustomize)")
    return found


@functools.cache
def render_text(path: str) -> str:
    done = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZE / path)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return done.stdout


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    path = "base" if overlay == "base" else f"overlays/{overlay}"
    return tuple(d for d in yaml.safe_load_all(render_text(path)) if d)


def objects(overlay: str, kind: str) -> list[dict]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(overlay: str, kinds: tuple[str, ...] = (*WORKLOAD_KINDS, "DaemonSet", "Job")
                  ) -> Iterator[tuple[dict, dict]]:
    """(owner object, pod template) for every object that makes pods."""
    for obj in render(overlay):
        if obj["kind"] in kinds:
            yield obj, obj["spec"]["template"]


def all_containers(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def service_containers(overlay: str) -> Iterator[tuple[str, dict, dict]]:
    """(service, owner object, container) for each container that runs a Mochi service."""
    for obj, template in pod_templates(overlay, WORKLOAD_KINDS):
        for c in template["spec"]["containers"]:
            args = c.get("args") or []
            if not c.get("command") and args and args[0] in SERVICES:
                yield args[0], obj, c


def selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels only, which is all these manifests use)."""
    assert set(selector) <= {"matchLabels"}, f"unsupported selector {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def nats_config(overlay: str, name: str) -> str:
    cms = [o for o in objects(overlay, "ConfigMap") if o["metadata"]["name"].startswith("nats-config")]
    assert len(cms) == 1
    return cms[0]["data"][name]


def nats_accounts(overlay: str) -> dict:
    """accounts.conf is JSON apart from NATS's unquoted $VARIABLES (passwords
    from the environment) and # comments; quote those and it parses."""
    text = nats_config(overlay, "accounts.conf")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return json.loads(re.sub(r":\s*\$([A-Z_][A-Z0-9_]*)", r': "$\1"', text))


def nats_users(overlay: str) -> dict[str, dict]:
    accounts = nats_accounts(overlay)["accounts"]
    return {u["user"]: {**u, "account": name}
            for name, acc in accounts.items() for u in acc.get("users", [])}


def nats_passwords(overlay: str) -> dict[str, str]:
    """A test password for each $VARIABLE of accounts.conf, keyed by variable."""
    accounts = nats_config(overlay, "accounts.conf")
    return {v: f"pw-{v.lower()}" for v in set(re.findall(r":\s*\$([A-Z_][A-Z0-9_]*)", accounts))}


@contextlib.contextmanager
def nats_with_users(root: Path, overlay: str) -> Iterator[tuple[int, dict[str, str]]]:
    """One nats-server (no cluster) with the overlay's rendered accounts.conf,
    unchanged, and a test password per user. Yields its port and the
    passwords by user name."""
    from mochi_cli.processes import free_port, nats_server_binary, wait_for_port

    root.mkdir(parents=True, exist_ok=True)
    (root / "accounts.conf").write_text(nats_config(overlay, "accounts.conf"))
    secrets = nats_passwords(overlay)
    port = free_port()
    (root / "server.conf").write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{root / "js"}" }}\ninclude ./accounts.conf\n')
    log = (root / "nats.log").open("w")
    proc = subprocess.Popen([nats_server_binary(), "-c", str(root / "server.conf")],
                            env=secrets, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc)
        yield port, {v.removesuffix("_PASSWORD").lower(): pw for v, pw in secrets.items()}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _sub_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text)
    assert count == 1, f"nats.conf: expected one match of {pattern!r}, found {count}"
    return new


@contextlib.contextmanager
def nats_cluster(root: Path, overlay: str = "h100x8") -> Iterator[list[dict[str, int]]]:
    """The rendered nats.conf on local servers, one per StatefulSet replica.

    Only addresses change (pod DNS names and fixed ports become loopback
    ports, volume paths become directories under `root`); each change must
    match exactly once, so a reshaped config fails loudly instead of being
    half-tested. Yields each server's client, http and route ports."""
    from mochi_cli.processes import free_port, nats_server_binary, wait_for_port

    accounts = nats_config(overlay, "accounts.conf")
    template = nats_config(overlay, "nats.conf")
    replicas = one(overlay, "StatefulSet", "nats")["spec"]["replicas"]
    routes = sorted(set(re.findall(r"nats://(nats-\d+)\.nats-headless:6222", template)))
    assert routes == [f"nats-{i}" for i in range(replicas)]
    ports = [{"client": free_port(), "http": free_port(), "route": free_port()} for _ in range(replicas)]
    procs, logs = [], []
    try:
        for i, p in enumerate(ports):
            home = root / f"nats-{i}"
            home.mkdir(parents=True)
            (home / "accounts.conf").write_text(accounts)
            conf = _sub_once(template, r"listen: 0\.0\.0\.0:4222", f"listen: 127.0.0.1:{p['client']}")
            conf = _sub_once(conf, r"http: 0\.0\.0\.0:8222", f"http: 127.0.0.1:{p['http']}")
            conf = _sub_once(conf, r"listen: 0\.0\.0\.0:6222", f"listen: 127.0.0.1:{p['route']}")
            conf = _sub_once(conf, r"/var/run/nats/nats\.pid", str(home / "nats.pid"))
            conf = _sub_once(conf, r"/data/jetstream", str(home / "js"))
            for j, q in enumerate(ports):
                conf = _sub_once(conf, rf"nats://nats-{j}\.nats-headless:6222", f"nats://127.0.0.1:{q['route']}")
            (home / "nats.conf").write_text(conf)
            log = (home / "log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [nats_server_binary(), "-c", str(home / "nats.conf")],
                env={**os.environ, "SERVER_NAME": f"nats-{i}", **nats_passwords(overlay)},
                stdout=log, stderr=subprocess.STDOUT))
        for p, proc in zip(ports, procs, strict=True):
            wait_for_port(p["client"], proc=proc)
        # As the StatefulSet's startup probe does: JetStream has its meta
        # leader, so the services' stream set-up will not time out.
        _wait_healthy([p["http"] for p in ports], procs)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        for log in logs:
            log.close()


def _wait_healthy(http_ports: list[int], procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    pending = set(http_ports)
    while pending:
        assert all(p.poll() is None for p in procs), "a nats-server exited"
        assert time.monotonic() < deadline, f"nats-servers on {sorted(pending)} never became healthy"
        for port in list(pending):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        pending.discard(port)
            except OSError:
                pass
        time.sleep(0.2)
