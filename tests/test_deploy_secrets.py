"""Every Secret key a manifest reads is one that docs/deploy.md's script
(deploy/scripts/create-secrets.sh) creates, or that the dev overlay generates."""

from __future__ import annotations

import re

import pytest

from test_deploy_support import OVERLAYS, REPO, all_containers, objects, pod_templates

SCRIPT = REPO / "deploy" / "scripts" / "create-secrets.sh"


def referenced(overlay: str) -> set[tuple[str, str]]:
    refs = set()
    for _, template in pod_templates(overlay):
        for c in all_containers(template["spec"]):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def created_by_script() -> set[tuple[str, str]]:
    text = SCRIPT.read_text()
    created = set()
    for block in re.split(r"\bcreate secret generic\s+", text)[1:]:
        name = block.split()[0]
        created |= {(name, key) for key in re.findall(r"--from-literal=([a-z0-9-]+)=", block.split("\n\n")[0])}
    return created


def mounted(overlay: str) -> set[str]:
    return {v["secret"]["secretName"] for _, template in pod_templates(overlay)
            for v in template["spec"].get("volumes", []) if "secret" in v}


@pytest.mark.parametrize("overlay", ("h100x8", "keda"))
def test_script_creates_every_secret_key(overlay: str) -> None:
    missing = referenced(overlay) - created_by_script()
    assert not missing, f"{overlay} reads secret keys the script never creates: {sorted(missing)}"
    assert mounted(overlay) <= {name for name, _ in created_by_script()}


def test_dev_generates_its_secrets() -> None:
    generated = {(s["metadata"]["name"], k) for s in objects("dev", "Secret") for k in s["data"]}
    assert referenced("dev") <= generated
    assert mounted("dev") <= {name for name, _ in generated}
    assert "dev" in OVERLAYS
