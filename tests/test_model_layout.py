"""The real model's layout, on the tiny model: the "layout twin" holds the tiny
random Mochi under genmo/mochi-1-preview's exact file names (fp32 and bf16
transformer shards with both indexes, a VAE in both precisions, T5 in two plain
shards, the root checkpoints). A stand-in `hf` serves it, filtering with
huggingface_hub's own matcher, so the project's download script, `mochi model
check` and the runner's loading path meet the real repository's names."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import structlog
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.engine import EngineConfig, MochiEngine
from mochi_runner.layout_twin import ROOT_CHECKPOINTS, twin_files, write_layout_twin

pytestmark = pytest.mark.timeout(300)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "deploy" / "kustomize" / "base" / "runner" / "config" / "download-weights.sh"
REPO_ID, REVISION = "genmo/mochi-1-preview", "45beef31"
# What the runner loads, and so all the download may leave.
EXPECTED = {
    "model_index.json", "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors.index.json",
    "text_encoder/model-00001-of-00002.safetensors", "text_encoder/model-00002-of-00002.safetensors",
    "tokenizer/spiece.model", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
    "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors.index.bf16.json",
    *(f"transformer/diffusion_pytorch_model.bf16-0000{i}-of-00003.safetensors" for i in (1, 2, 3)),
    "vae/config.json", "vae/diffusion_pytorch_model.bf16.safetensors",
}
REQ = JobRequest(prompt="a cat walks on the grass", width=64, height=64, num_frames=7,
                 num_inference_steps=2, guidance_scale=4.5, seed=3)

# `hf download REPO --revision R --local-dir D --include P ... --exclude P ...`
# served from a local folder. The command line is huggingface_hub's own `hf`
# (its click app and its `download` command: how it reads repeated --include,
# and that a bare word after a flag is a file name, not a second pattern, with
# the patterns then ignored); only snapshot_download's network part is
# replaced. That part filters with huggingface_hub's own filter_repo_objects
# (fnmatch on the repository path, `*` crossing `/`, a trailing `/` meaning the
# folder), as snapshot_download does. Like the real client it keeps its
# bookkeeping under <local-dir>/.cache/huggingface and skips files already
# downloaded, and FAKE_HF_FAIL_AFTER / FAKE_HF_SLEEP make it die part-way or hang.
FAKE_HF = """#!{python}
import os, shutil, sys, time
from pathlib import Path

import huggingface_hub.cli.download as cli_download
from huggingface_hub.cli.hf import app
from huggingface_hub.utils import filter_repo_objects

with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")


def snapshot_download(*, repo_id, revision, allow_patterns, ignore_patterns, local_dir, **_):
    assert repo_id == {repo!r} and revision and local_dir, (repo_id, revision, local_dir)
    local_dir, source = Path(local_dir), Path({source!r})
    paths = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    wanted = list(filter_repo_objects(paths, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
    time.sleep(float(os.environ.get("FAKE_HF_SLEEP", "0")))
    fail_after = int(os.environ.get("FAKE_HF_FAIL_AFTER", "-1"))
    for done, path in enumerate(wanted):
        if done == fail_after:
            sys.exit("connection reset (FAKE_HF_FAIL_AFTER)")
        target, meta = local_dir / path, local_dir / ".cache" / "huggingface" / "download" / (path + ".metadata")
        if meta.exists() and target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, target)
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(revision)
        with open({log!r}, "a") as log:
            log.write("copied " + path + "\\n")
    return str(local_dir)


def hf_hub_download(**kwargs):
    sys.exit(f"hf took a single file, not patterns: {{kwargs.get('filename')!r}}")


cli_download.snapshot_download, cli_download.hf_hub_download = snapshot_download, hf_hub_download
app(args=sys.argv[1:], prog_name="hf", windows_expand_args=False)
"""


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_layout_twin(tmp_path_factory.mktemp("hub") / "mochi-1-preview")


def _fake_hf(tmp_path: Path, source: Path) -> tuple[dict[str, str], Path]:
    """The environment the script runs in (the stand-in `hf` first on PATH,
    then the `mochi` command of this virtualenv) and the stand-in's log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "hf.log"
    bin_dir.mkdir()
    (bin_dir / "hf").write_text(FAKE_HF.format(python=sys.executable, log=str(log), source=str(source),
                                               repo=REPO_ID))
    (bin_dir / "hf").chmod(0o755)
    (tmp_path / "models").mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "REPO": REPO_ID, "REVISION": REVISION, "MODEL_ROOT": str(tmp_path / "models")}
    return env, log


def _download(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", str(SCRIPT)], env={**env, **extra}, capture_output=True, text=True,
                          timeout=120)


def _render(model_dir: Path) -> tuple[np.ndarray, MochiEngine]:
    engine = MochiEngine(EngineConfig(model_dir=model_dir, device="cpu"))
    try:
        return engine.render(REQ, lambda step, total: None), engine
    finally:
        engine.close()


def _check(model_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mochi_cli.main", "model", "check", str(model_dir)],
                          capture_output=True, text=True, timeout=60)


def test_the_twin_has_the_real_repositorys_names(twin: Path) -> None:
    files = twin_files(twin)
    assert {f"transformer/diffusion_pytorch_model-0000{i}-of-00005.safetensors" for i in range(1, 6)} <= files
    assert {"transformer/diffusion_pytorch_model.safetensors.index.json", "vae/diffusion_pytorch_model.safetensors",
            *ROOT_CHECKPOINTS} <= files
    assert EXPECTED <= files
    assert not any(".bf16" in f for f in files if f.startswith("text_encoder/"))  # as in the real repository
    index = json.loads((twin / "transformer" / "diffusion_pytorch_model.safetensors.index.bf16.json").read_text())
    assert len(set(index["weight_map"].values())) == 3


def test_download_fetches_exactly_what_the_runner_loads_and_it_renders(twin: Path, tmp_path: Path) -> None:
    env, log = _fake_hf(tmp_path, twin)
    for _ in range(2):
        done = _download(env)
        assert done.returncode == 0, done.stdout + done.stderr
    dest = tmp_path / "models" / "mochi-1-preview"
    assert twin_files(dest) == EXPECTED  # no root checkpoints, no fp32 transformer or VAE, no hf bookkeeping
    assert not (tmp_path / "models" / ".mochi-1-preview.partial").exists()
    calls = [line for line in log.read_text().splitlines() if line.startswith("download ")]
    assert len(calls) == 1, "the second run must find the checked weights and not download"

    with structlog.testing.capture_logs() as logs:
        frames, engine = _render(dest)
    assert frames.shape == (7, 64, 64, 3) and frames.dtype == np.uint8
    loaded = {e["component"]: e for e in logs if e["event"] == "engine.component"}
    assert set(loaded) == {"transformer", "vae", "text_encoder"}
    assert all(e["device"] == "cpu" and e["dtype"] == "torch.float32" for e in loaded.values())
    assert loaded["transformer"]["stored_dtype"] == loaded["vae"]["stored_dtype"] == "BF16"
    assert loaded["text_encoder"]["stored_dtype"] == "F32" and loaded["text_encoder"]["files"] == 3
    # The transformer holds the bf16 numbers (upcast on the CPU), not the fp32 ones.
    from safetensors.torch import load_file

    index = json.loads((dest / "transformer" / "diffusion_pytorch_model.safetensors.index.bf16.json").read_text())
    shard = index["weight_map"]["proj_out.weight"]
    stored = load_file(str(dest / "transformer" / shard))["proj_out.weight"]
    # (The runner's one-device path wraps the loaded transformer: read its replica.)
    assert torch.equal(engine.parallel.replicas[0].proj_out.weight, stored.float())

    # A full clone (fp32 and bf16, root checkpoints) loads the same bf16 weights: the same video.
    clone_frames, _ = _render(twin)
    assert np.array_equal(frames, clone_frames)


def test_a_broken_download_is_resumed_and_nothing_half_done_is_renamed(twin: Path, tmp_path: Path) -> None:
    env, log = _fake_hf(tmp_path, twin)
    cut = _download(env, FAKE_HF_FAIL_AFTER="7")
    assert cut.returncode != 0
    assert not (tmp_path / "models" / "mochi-1-preview").exists()
    assert (tmp_path / "models" / ".mochi-1-preview.partial").is_dir()
    first = [line for line in log.read_text().splitlines() if line.startswith("copied ")]
    assert len(first) == 7
    done = _download(env)
    assert done.returncode == 0, done.stdout + done.stderr
    copied = [line for line in log.read_text().splitlines() if line.startswith("copied ")]
    assert len(copied) == len(EXPECTED), "the second run copies only what the first did not"
    assert twin_files(tmp_path / "models" / "mochi-1-preview") == EXPECTED


def test_sigterm_ends_the_download_at_once(twin: Path, tmp_path: Path) -> None:
    env, log = _fake_hf(tmp_path, twin)
    proc = subprocess.Popen(["/bin/sh", str(SCRIPT)], env={**env, "FAKE_HF_SLEEP": "60"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.exists(), "hf never started"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert proc.returncode == 143, out + err
    assert "resumes" in err
    hf = subprocess.run(["pgrep", "-f", str(tmp_path / "bin" / "hf")], capture_output=True, text=True)
    assert hf.stdout == "", "the stand-in hf outlived the script"


def test_the_download_stops_at_a_model_that_fails_the_check(twin: Path, tmp_path: Path) -> None:
    """A source missing a T5 shard: the script's own check refuses it before the rename."""
    source = tmp_path / "hub"
    shutil.copytree(twin, source)
    (source / "text_encoder" / "model-00002-of-00002.safetensors").unlink()
    env, _ = _fake_hf(tmp_path, source)
    done = _download(env)
    assert done.returncode == 1
    assert "text_encoder/model-00002-of-00002.safetensors, which is missing" in done.stderr
    assert not (tmp_path / "models" / "mochi-1-preview").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_broken_t5_shard_is_named_by_the_check_and_the_runner(twin: Path, tmp_path: Path, damage: str) -> None:
    broken = tmp_path / "model"
    shutil.copytree(twin, broken)
    shard = broken / "text_encoder" / "model-00002-of-00002.safetensors"
    if damage == "missing":
        shard.unlink()
        line = ("text_encoder/model.safetensors.index.json: refers to "
                "text_encoder/model-00002-of-00002.safetensors, which is missing")
    else:
        size = shard.stat().st_size
        with shard.open("r+b") as f:
            f.truncate(size - 1000)
        line = f"text_encoder/model-00002-of-00002.safetensors: truncated: {size - 1000} bytes, its header needs {size}"

    checked = _check(broken)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [line]  # one line, naming the file; nothing derived from it

    runner = subprocess.run(
        [sys.executable, "-m", "mochi_cli.main", "runner"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "MOCHI_MODEL_DIR": str(broken), "MOCHI_NATS_URL": "nats://127.0.0.1:1",
             "MOCHI_HEALTH_PORT": "0"})
    assert runner.returncode == 1
    assert line in runner.stderr.splitlines()
    assert "Traceback" not in runner.stderr


def test_the_check_compares_headers_with_the_configs(twin: Path, tmp_path: Path) -> None:
    """The wrong model in a folder: shapes that the configs fix do not match."""
    other = tmp_path / "model"
    shutil.copytree(twin, other)
    config = json.loads((other / "text_encoder" / "config.json").read_text())
    (other / "text_encoder" / "config.json").write_text(json.dumps({**config, "d_model": 64, "num_layers": 3}))
    checked = _check(other)
    assert checked.returncode == 1
    problems = checked.stderr.splitlines()
    assert "text_encoder (plain files): shared.weight has shape [40, 32], text_encoder/config.json implies [40, 64]" \
        in problems
    assert "text_encoder (plain files): 2 encoder.block in the weights, text_encoder/config.json says 3" in problems
    assert ("transformer/config.json: text_embed_dim 32 but text_encoder/config.json has d_model 64") in problems


def test_the_check_summarises_what_loads(twin: Path) -> None:
    checked = _check(twin)
    assert checked.returncode == 0, checked.stderr
    rows = {line.split()[0]: line.split() for line in checked.stdout.splitlines()[1:-1]}
    assert "variant=bf16" in checked.stdout.splitlines()[0]
    assert rows["transformer"][2:4] == ["bf16", "BF16"]
    assert rows["vae"][2:4] == ["bf16", "BF16"]
    assert rows["text_encoder"][2:4] == ["plain", "F32"]
    assert set(rows) == {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"}


@pytest.mark.parametrize("damage", ["component", "bf16 shard", "dtype"])
def test_the_check_names_a_missing_component_a_missing_bf16_shard_and_a_wrong_dtype(
        twin: Path, tmp_path: Path, damage: str) -> None:
    """The issue's other checks, each one line: every component model_index.json
    names is there, the bf16 index (the one diffusers reads for variant="bf16")
    names only shards that exist, and the stored dtype is the config's."""
    broken = tmp_path / "model"
    shutil.copytree(twin, broken)
    if damage == "component":
        shutil.rmtree(broken / "vae")
        line = "vae/: missing (model_index.json names AutoencoderKLMochi)"
    elif damage == "bf16 shard":
        (broken / "transformer" / "diffusion_pytorch_model.bf16-00002-of-00003.safetensors").unlink()
        line = ("transformer/diffusion_pytorch_model.safetensors.index.bf16.json: refers to "
                "transformer/diffusion_pytorch_model.bf16-00002-of-00003.safetensors, which is missing")
    else:
        config = json.loads((broken / "text_encoder" / "config.json").read_text())
        config.pop("torch_dtype", None)
        (broken / "text_encoder" / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
        line = "text_encoder (plain files): weights are F32, text_encoder/config.json says BF16"
    checked = _check(broken)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [line]


@pytest.mark.parametrize("folder", ["text_encoder", "tokenizer", "transformer"])
def test_a_name_without_a_dot_that_breaks_diffusers_variant_lookup_is_named(
        twin: Path, tmp_path: Path, folder: str) -> None:
    """With variant="bf16", diffusers splits every name in every component folder at
    its dots (_identify_model_variants) and a dotless one is an IndexError inside
    from_pretrained; T5's and the tokenizer's folders, with no bf16 file, for certain."""
    broken = tmp_path / "model"
    shutil.copytree(twin, broken)
    (broken / folder / "LICENSE").write_text("a file someone copied in\n")
    from diffusers import MochiPipeline

    if folder != "transformer":  # there a bf16 file listed first may end diffusers' scan early
        with pytest.raises(IndexError):  # what the runner would die of without the check
            MochiPipeline.from_pretrained(str(broken), variant="bf16")
    checked = _check(broken)
    assert checked.returncode == 1
    assert checked.stderr.splitlines() == [
        f"{folder}/LICENSE: a name without a dot breaks diffusers' variant lookup (IndexError in from_pretrained); "
        "move it out"]
