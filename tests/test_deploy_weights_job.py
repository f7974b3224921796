"""The weights script as the manifests ship it (the ConfigMap, the download
container's environment), run here with a stand-in `hf` that serves the tiny
model saved as a bf16 variant: the runner's loader must load what the script
leaves, and a second run must leave it alone. tests/test_model_layout.py runs
the same script against the real repository's full file layout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_deploy_support import objects, one

pytestmark = pytest.mark.timeout(300)

FAKE_HF = """#!{python}
import shutil, sys
args = sys.argv[1:]
assert args[0] == "download", args
dest = args[args.index("--local-dir") + 1]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\\n")
shutil.copytree({source!r}, dest, dirs_exist_ok=True)
"""


def _script() -> str:
    (cm,) = [c for c in objects("h100x8", "ConfigMap") if c["metadata"]["name"].startswith("mochi-weights")]
    return cm["data"]["download-weights.sh"]


def test_script_leaves_a_model_the_runner_loads(tiny_model: Path, tmp_path: Path) -> None:
    from diffusers import MochiPipeline

    from mochi_runner.engine import EngineConfig, MochiEngine

    variant = tmp_path / "hub"
    MochiPipeline.from_pretrained(str(tiny_model)).save_pretrained(str(variant), variant="bf16")
    assert not list(variant.rglob("diffusion_pytorch_model.safetensors"))  # only bf16 names
    bin_dir, log = tmp_path / "bin", tmp_path / "hf.log"
    bin_dir.mkdir()
    (bin_dir / "hf").write_text(FAKE_HF.format(python=sys.executable, log=str(log), source=str(variant)))
    (bin_dir / "hf").chmod(0o755)
    (tmp_path / "download-weights.sh").write_text(_script())
    weights = one("h100x8", "DaemonSet", "mochi-weights")["spec"]["template"]["spec"]
    download = next(c for c in weights["initContainers"] if c["name"] == "download")
    env = {e["name"]: e["value"] for e in download["env"] if "value" in e}
    models = tmp_path / "models"
    models.mkdir()
    # The script checks the result with the `mochi` command (the image's entrypoint).
    path = f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    run_env = {**os.environ, **env, "PATH": path, "MODEL_ROOT": str(models)}

    for _ in range(2):
        done = subprocess.run(["/bin/sh", str(tmp_path / "download-weights.sh")], env=run_env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    calls = log.read_text().splitlines()
    assert len(calls) == 1, "the second run must find the weights and not download"
    assert f"download {env['REPO']} --revision {env['REVISION']}" in calls[0]
    assert "--include *.bf16*" in calls[0]
    dest = models / "mochi-1-preview"
    assert not (models / ".mochi-1-preview.partial").exists()
    engine = MochiEngine(EngineConfig(model_dir=dest, device="cpu"))  # the runner's own loading path
    try:
        assert engine.pipe.transformer is not None
    finally:
        engine.close()
    # The path the runner's init container and MOCHI_MODEL_DIR wait for.
    runner = one("h100x8", "Deployment", "mochi-runner")["spec"]["template"]["spec"]
    model_dir = next(e["value"] for e in runner["containers"][0]["env"] if e["name"] == "MOCHI_MODEL_DIR")
    assert model_dir == "/models/mochi-1-preview" and (dest / "model_index.json").exists()
