"""Start-up of a one-GPU runner (issue 22): loading full-size weights from disk,
a cold and a warm start, and the first job of a size not rendered before.

Full-size Mochi with RANDOM weights (real sizes and FLOPs, noise pictures).

  load     writes full-size random weights in genmo/mochi-1-preview's layout
           (transformer: three bf16 shards with their bf16 index; vae: one bf16
           file; text_encoder: T5-XXL's fp32 in two shards and no bf16 variant,
           as the repository ships it), then, with the files evicted from the
           page cache: the disk's own sequential read speed over the same files,
           and the runner's real loading path (model_check + from_pretrained with
           the variant it picks, then to the GPU), in seconds and GB/s.
  restart  the runner's engine built twice in fresh processes on one compile
           cache directory (MOCHI_COMPILE_CACHE_DIR): cold (empty cache) and warm
           (what the first left), each to "ready" (weights, compile, warm-up
           render at the runner's warm-up size). The random weights are made on
           the GPU in seconds; the real load is the `load` part's figure.
  sizes    in the warm process, after ready: the first job of each size the
           web form offers (two guided steps each): the first step's extra time
           over the second, and how many graphs dynamo compiled for it.

    BENCH_ARGS="--part load" bash bench/run.sh startup
    BENCH_ARGS="--part restart" bash bench/run.sh startup   # restart and sizes
    BENCH_TINY=1 PYTHON=.venv/bin/python bash bench/run.sh startup  # CPU dry run (tiny, restart+sizes)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import DEFAULT, PROMPT, open_report

# The web form's resolutions (web/js/presets.js), at the default length.
FORM_SIZES = [(848, 480), (480, 848), (640, 352), (512, 512), (256, 144)]
READ_CHUNK = 64 * 2**20


def evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (no root needed for clean
    pages), so the next read comes from the disk as after a node restart."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_read_seconds(paths: list[Path]) -> float:
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - started


def write_full_layout(dest: Path, device: torch.device) -> None:
    """Full-size random modules saved as the repository holds them."""
    from mochi_runner.random_full_model import random_text_encoder, random_transformer, random_vae
    from mochi_runner.tiny_model import save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tiny = save_tiny_model(Path(tmp) / "tiny")
        # model_index.json, scheduler and tokenizer are configuration, not weights.
        import shutil

        shutil.copy(tiny / "model_index.json", dest)
        for name in ("scheduler", "tokenizer"):
            shutil.copytree(tiny / name, dest / name, dirs_exist_ok=True)
    transformer = random_transformer(device)
    transformer.save_pretrained(dest / "transformer", variant="bf16", max_shard_size="7GB")
    del transformer
    vae = random_vae(device)
    vae.save_pretrained(dest / "vae", variant="bf16")
    del vae
    t5 = random_text_encoder(device, torch.float32)
    t5.save_pretrained(dest / "text_encoder", max_shard_size="10GB")
    del t5
    torch.cuda.empty_cache()


def part_load(args, report) -> None:
    from mochi_runner.pipeline_loading import load_pipeline

    device = torch.device("cpu" if args.tiny else "cuda:0")
    dest = args.weights_dir
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.tiny:  # the dry run: the tiny model in the same layout (mochi_runner.layout_twin)
        from mochi_runner.layout_twin import write_layout_twin

        write_layout_twin(dest)
    else:
        write_full_layout(dest, device)
    from mochi_runner.model_check import loadable_model

    # The files the loader will read (model_check follows diffusers' variant rule).
    files = [dest / f for c in loadable_model(dest).components for f in c.files if f.endswith(".safetensors")]
    total = sum(p.stat().st_size for p in files)
    report.add("write_seconds", time.perf_counter() - started)
    report.add("files", {p.relative_to(dest).as_posix(): p.stat().st_size for p in files})
    report.add("weight_bytes", total)
    evict(files)
    disk = disk_read_seconds(files)
    report.add("disk_read_s", disk, "sequential 64 MiB reads of the same files, page cache evicted")
    report.add("disk_read_gb_s", total / disk / 1e9)
    evict(files)
    started = time.perf_counter()
    pipe = load_pipeline(dest, device, torch.bfloat16)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load = time.perf_counter() - started
    report.add("runner_load_s", load, "model_check + MochiPipeline.from_pretrained(variant) + .to(cuda)")
    report.add("runner_load_gb_s", total / load / 1e9)
    report.add("load_over_disk", load / disk, f"target <= 1.5: {'MET' if load / disk <= 1.5 else 'MISSED'}")
    report.add("loaded_dtypes", {n: str(next(m.parameters()).dtype) for n, m in pipe.components.items()
                                 if isinstance(m, torch.nn.Module)})


def child(args) -> None:
    """One runner start in this process: print JSON lines as figures come."""
    started = time.perf_counter()
    from mochi_runner.parallel.compile_cache import use_compile_cache

    use_compile_cache(str(args.cache_dir))
    from mochi_contracts.jobs import JobRequest
    from mochi_runner.engine import EngineConfig, MochiEngine

    def emit(**kw) -> None:
        print("FIGURE " + json.dumps(kw), flush=True)

    emit(import_s=time.perf_counter() - started)
    tiny = args.tiny
    model_dir = Path("unused")
    if tiny:
        from mochi_runner.tiny_model import save_tiny_model

        model_dir = save_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    built = time.perf_counter()
    engine = MochiEngine(EngineConfig(model_dir=model_dir, device="cpu" if tiny else "cuda:0",
                                      random_weights=not tiny, compile_blocks=True,
                                      warmup_size=tuple(args.warmup_size)))
    emit(build_s=time.perf_counter() - built)
    emit(warm_up_s=engine.warm_up())
    emit(ready_s=time.perf_counter() - started)
    if not args.sizes:
        return
    import torch._dynamo.utils as dynamo_utils

    frames = args.frames
    for width, height in args.form_sizes:
        graphs = dynamo_utils.counters["stats"]["unique_graphs"]
        times: list[float] = []
        last = [time.perf_counter()]

        def on_step(done: int, total: int, times=times, last=last) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        req = JobRequest(prompt=PROMPT, width=width, height=height, num_frames=frames,
                         num_inference_steps=2, guidance_scale=DEFAULT["guidance_scale"], seed=1)
        engine.denoise(req, on_step)
        emit(size=f"{width}x{height}x{frames}", first_step_s=times[0], second_step_s=times[1],
             extra_s=times[0] - times[1],
             graphs_compiled=dynamo_utils.counters["stats"]["unique_graphs"] - graphs)
    engine.close()


def start_once(args, label: str, sizes: bool) -> list[dict]:
    cmd = [sys.executable, __file__, "--child", "--cache-dir", str(args.cache_dir), "--frames", str(args.frames),
           "--warmup-size", *map(str, args.warmup_size)]
    if args.tiny:
        cmd.append("--tiny")
    if sizes:
        cmd.append("--sizes")
        for w, h in args.form_sizes:
            cmd += ["--form-size", str(w), str(h)]
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    figures = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("FIGURE "):
            figure = json.loads(line[7:])
            if "ready_s" in figure:
                figure["spawn_to_ready_s"] = time.perf_counter() - spawned
            print(f"  {label}: {figure}", flush=True)
            figures.append(figure)
    if proc.wait() != 0:
        raise SystemExit(f"the {label} start failed ({proc.returncode})")
    return figures


def part_restart(args, report) -> None:
    report.add("warmup_size", args.warmup_size, "the runner's MOCHI_WARMUP_* defaults unless --warmup-size")
    report.add("cold", start_once(args, "cold", sizes=False), "empty compile cache")
    report.add("warm", start_once(args, "warm", sizes=True), "the cold start's compile cache, then the form's sizes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--part", choices=("load", "restart"), default="restart")
    parser.add_argument("--weights-dir", type=Path, default=Path("/tmp/mochi-full"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--warmup-size", type=int, nargs=3, default=[64, 64, 7])
    parser.add_argument("--frames", type=int, default=DEFAULT["num_frames"])
    parser.add_argument("--form-size", type=int, nargs=2, action="append", dest="form_sizes")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--sizes", action="store_true")
    # bench/run.sh passes the size of its dry run; the form's sizes replace it here.
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    args = parser.parse_args()
    if not args.form_sizes:
        args.form_sizes = [(128, 64), (64, 128), (96, 96)] if args.tiny else FORM_SIZES
    if args.tiny and args.frames == DEFAULT["num_frames"]:
        args.frames = 13
    if args.child:
        child(args)
        return
    if args.cache_dir is None:
        args.cache_dir = Path(tempfile.mkdtemp(prefix="mochi-compile-"))
    report = open_report(args.out, f"startup_{args.part}", args.tiny)
    if args.part == "load":
        part_load(args, report)
    else:
        part_restart(args, report)


if __name__ == "__main__":
    main()
