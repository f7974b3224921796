"""The tiny random Mochi written in genmo/mochi-1-preview's exact file layout.

`save_pretrained` writes a layout of diffusers' choosing (one unsharded file
per component, one precision). The real repository (Hugging Face commit
45beef31, "Add Diffusers weights") holds more, and the download and the loader
must cope with all of it:

- transformer/: five fp32 shards and three bf16 shards, each with its index
  (`...safetensors.index.json`, `...safetensors.index.bf16.json`);
- vae/: one unsharded file in each precision;
- text_encoder/: T5 in two plain shards with its index, and no bf16 variant;
- tokenizer/, scheduler/, model_index.json, and at the root the original
  checkpoints (dit, decoder, encoder) that diffusers does not use.

Here the same names hold the tiny model's weights, so a test can download from
it with the real include/exclude patterns and load the result."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

# The root files of the real repository that diffusers never reads.
ROOT_CHECKPOINTS = ("dit.safetensors", "decoder.safetensors", "encoder.safetensors")


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def _write_shards(tensors: dict[str, torch.Tensor], folder: Path, base: str, count: int,
                  variant: str | None) -> list[str]:
    """`count` shards named as save_pretrained names them, and their index."""
    names = sorted(tensors)
    per = -(-len(names) // count)
    groups = [names[i * per:(i + 1) * per] for i in range(count)]
    if not all(groups):
        raise ValueError(f"{len(names)} tensors cannot fill {count} shards")
    stem = f"{base}.{variant}" if variant else base
    weight_map, files = {}, []
    for i, group in enumerate(groups, 1):
        shard = f"{stem}-{i:05d}-of-{count:05d}.safetensors"
        _save({k: tensors[k] for k in group}, folder / shard)
        weight_map.update({k: shard for k in group})
        files.append(shard)
    index = f"{base}.safetensors.index.{variant}.json" if variant else f"{base}.safetensors.index.json"
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return [*files, index]


def write_layout_twin(dest: Path, seed: int = 0) -> Path:
    from safetensors.torch import load_file

    from mochi_runner.tiny_model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        saved = save_tiny_model(Path(tmp) / "tiny", seed)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(saved / "model_index.json", dest)
        for name in ("scheduler", "tokenizer"):
            shutil.copytree(saved / name, dest / name, dirs_exist_ok=True)
        for name in ("transformer", "vae", "text_encoder"):
            (dest / name).mkdir(exist_ok=True)
            shutil.copy(saved / name / "config.json", dest / name)
        # The tensors exactly as save_pretrained wrote them (T5's tied embedding once).
        transformer = load_file(str(saved / "transformer" / "diffusion_pytorch_model.safetensors"))
        vae = load_file(str(saved / "vae" / "diffusion_pytorch_model.safetensors"))
        t5 = load_file(str(saved / "text_encoder" / "model.safetensors"))

    bf16 = lambda tensors: {k: v.to(torch.bfloat16) for k, v in tensors.items()}  # noqa: E731
    _write_shards(transformer, dest / "transformer", "diffusion_pytorch_model", 5, None)
    _write_shards(bf16(transformer), dest / "transformer", "diffusion_pytorch_model", 3, "bf16")
    _save(vae, dest / "vae" / "diffusion_pytorch_model.safetensors")
    _save(bf16(vae), dest / "vae" / "diffusion_pytorch_model.bf16.safetensors")
    _write_shards(t5, dest / "text_encoder", "model", 2, None)
    # The real tokenizer is SentencePiece (spiece.model); the tiny one is a
    # tokenizers JSON, so this file only stands in for the name.
    (dest / "tokenizer" / "spiece.model").write_bytes(b"stand-in for the SentencePiece model\n")
    # The original checkpoints (40 GB dit.safetensors): small files of the same names.
    for name in ROOT_CHECKPOINTS:
        _save({"stand_in": torch.zeros(4)}, dest / name)
    (dest / "README.md").write_text("layout twin of genmo/mochi-1-preview with tiny random weights\n")
    return dest


def twin_files(root: Path) -> set[str]:
    """Every file under root as a repository path (`transformer/config.json`)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def main() -> None:
    from mochi_runner.tiny_model import writer_main

    writer_main(write_layout_twin, __doc__ or "")


if __name__ == "__main__":
    main()
