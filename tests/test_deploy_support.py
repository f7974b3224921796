"""Shared by the tests/test_deploy_*.py files (no tests here): render the
kustomize overlays once with `kubectl kustomize` and pick objects out of them."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE = REPO / "deploy" / "kustomize"
OVERLAYS = ("h100x8", "dev", "keda")
GPU_OVERLAYS = ("h100x8", "keda")
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# The service each container runs, by its `mochi` subcommand (the image's entrypoint).
SERVICES = ("api", "catalog", "runner")


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


def pod_templates(overlay: str, kinds: tuple[str, ...] = (*WORKLOAD_KINDS, "Job")) -> Iterator[tuple[dict, dict]]:
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
