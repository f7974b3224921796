"""The images: the build script builds every image the manifests name, from
Dockerfiles that exist, and the Dockerfiles' pinned versions are the measured
CUDA 13 stack and agree with pyproject.toml. No container engine here, so the
script runs against a stand-in builder that records what it is asked."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from test_deploy_support import GPU_OVERLAYS, OVERLAYS, REPO, all_containers, one, pod_templates

SCRIPT = REPO / "deploy" / "scripts" / "build-images.sh"
DOCKER = REPO / "deploy" / "docker"
OURS = "ghcr.io/mochi-serve/"

FAKE_BUILDER = """#!/bin/sh
echo "$*" >> {log}
"""


def _built(tmp_path: Path, **env: str) -> list[list[str]]:
    bin_dir, log = tmp_path / "bin", tmp_path / "builder.log"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_BUILDER.format(log=log))
    (bin_dir / "docker").chmod(0o755)
    done = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **env},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in log.read_text().splitlines()]


def test_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def _option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_script_builds_every_image_the_manifests_name(tmp_path: Path) -> None:
    calls = _built(tmp_path)
    builds = [c for c in calls if c[0] == "build"]
    assert builds and len(builds) == len(calls), "nothing is pushed unless PUSH=1"
    built = set()
    for args in builds:
        (dockerfile,) = _option(args, "-f")
        assert (REPO / dockerfile).is_file(), dockerfile
        assert args[-1] == ".", "builds from the repository root"
        built |= set(_option(args, "-t"))
    named = {c["image"] for overlay in OVERLAYS for _, t in pod_templates(overlay)
             for c in all_containers(t["spec"]) if c["image"].startswith(OURS)}
    assert named <= built, f"named but never built: {sorted(named - built)}"
    assert built <= named, f"built but named nowhere: {sorted(built - named)}"


def test_script_pushes_what_it_built(tmp_path: Path) -> None:
    calls = _built(tmp_path, PUSH="1")
    built = {t for c in calls if c[0] == "build" for t in _option(c, "-t")}
    assert {c[1] for c in calls if c[0] == "push"} == built


def _pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m[0]): m[1]
            for m in re.findall(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)", text, re.M)}


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found: dict[str, list[Requirement]] = {}
    for spec in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        req = Requirement(spec)
        found.setdefault(canonicalize_name(req.name), []).append(req)
    return found


def test_pinned_versions_agree_with_pyproject() -> None:
    pins = _pins((DOCKER / "runner-constraints.txt").read_text())
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        pins |= _pins(dockerfile.read_text())
    requirements = _pyproject_requirements()
    assert {"torch", "diffusers", "flash-attn-4"} <= set(pins)
    for name, version in pins.items():
        assert name in requirements, f"{name}=={version} is pinned but pyproject.toml does not use it"
        for req in requirements[name]:
            assert req.specifier.contains(version, prereleases=True), f"{name}=={version} against {req}"


def test_runner_image_is_the_measured_cuda_13_stack() -> None:
    dockerfile = (DOCKER / "runner.Dockerfile").read_text()
    pins = _pins((DOCKER / "runner-constraints.txt").read_text())
    benchmarks = (REPO / "docs" / "benchmarks.md").read_text()
    measured = re.search(r"torch (\d+\.\d+\.\d+)\+cu(\d+), CUDA (\d+)\.(\d+).*?diffusers (\S+),", benchmarks)
    assert measured, "docs/benchmarks.md no longer states the measured versions"
    torch, cu, cuda_major, cuda_minor, diffusers = measured.groups()
    assert pins["torch"] == torch and pins["diffusers"] == diffusers
    (base,) = re.findall(r"^FROM nvidia/cuda:(\d+)\.(\d+)\.\d+-\S+$", dockerfile, re.M)
    assert base == (cuda_major, cuda_minor)
    (index,) = re.findall(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cu(\d+)$", dockerfile, re.M)
    assert index == cu == f"{cuda_major}{cuda_minor}"
    # FA4's extra is its CUDA 13 build: it must match the base.
    fa4 = [r for r in _pyproject_requirements()["flash-attn-4"]]
    assert all(r.extras == {f"cu{cuda_major}"} for r in fa4)
    (driver,) = re.findall(r"^# Minimum NVIDIA driver: (\d+\.\d+\.\d+)", dockerfile, re.M)
    assert f"driver {driver} or newer" in (REPO / "docs" / "deploy.md").read_text().replace("**", "")
    # tini as PID 1 in every image, so SIGTERM is never ignored by a Python PID 1.
    for path in DOCKER.glob("*.Dockerfile"):
        assert re.search(r'^ENTRYPOINT \["tini", "--", "mochi"\]$', path.read_text(), re.M), path


@pytest.mark.parametrize("overlay", GPU_OVERLAYS)
def test_fa4_only_where_the_image_has_it(overlay: str, tmp_path: Path) -> None:
    (c,) = one(overlay, "Deployment", "mochi-runner")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    builds = [b for b in _built(tmp_path) if b[0] == "build"]
    (args,) = [b for b in builds if c["image"] in _option(b, "-t")]
    extras = {e for a in _option(args, "--build-arg") if a.startswith("EXTRAS=") for e in a[7:].split(",")}
    assert (env.get("MOCHI_ATTENTION_KERNEL") == "fa4") == ("fa4" in extras), c["image"]
