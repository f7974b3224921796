"""Every overlay renders, and every object in it is valid Kubernetes: checked
offline against the API schemas that kubernetes-validate ships."""

from __future__ import annotations

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from test_deploy_support import OVERLAYS, render

# The oldest Kubernetes these manifests promise to work on, and the newest
# schema set the installed kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", latest_version())
# Custom resources have no core schema; their fields are checked in
# test_deploy_policy.py instead. Anything else without a schema is an error.
CUSTOM_RESOURCES = {("keda.sh/v1alpha1", "ScaledObject")}


@pytest.mark.parametrize("overlay", ("base", *OVERLAYS))
def test_renders(overlay: str) -> None:
    kinds = {o["kind"] for o in render(overlay)}
    assert {"Deployment", "StatefulSet", "Service", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_schemas(overlay: str, version: str) -> None:
    errors = []
    for obj in render(overlay):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            # strict: an unknown (misspelt) field is an error, not ignored.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
    assert not errors, "\n".join(errors)


def test_only_known_custom_resources() -> None:
    for overlay in OVERLAYS:
        for obj in render(overlay):
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            if "." in group and not group.endswith(".k8s.io"):
                assert (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES, obj["kind"]
