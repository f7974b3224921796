"""Mochi-1 through diffusers: load once, render many.

One device: diffusers' MochiPipeline, as loaded from a local directory
(genmo/mochi-1-preview's bf16 weights on a GPU node, the tiny random model
here), its transformer behind the same wrapper as on several devices
(parallel/guidance_parallel.py with one replica): the sync-free processor and,
if asked, compiled blocks, the guidance pair's two branches one after the
other on the one copy of the weights. prefix_attention=False keeps the stock
transformer (diffusers' processor, one batch-2 forward).

Several devices (`devices=("cuda:0", "cuda:1")`): one transformer replica and
one VAE replica per device. Each denoising step runs the guidance pair's two
branches at once, one per device (parallel/guidance_parallel.py), and the
tiled VAE decode spreads its tiles over the devices (parallel/vae_split.py).
T5 stays on the first device: its encode costs milliseconds there (see
docs/benchmarks.md), against seconds on the CPU.

Without guidance a step is one batch-1 forward, which would leave the second
device idle: `denoise(..., lane=i)` runs such a job on device i alone, so two
guidance-free jobs can denoise at once from two threads.

Rendering is split in two, `denoise()` then `decode()`, so a runner can hand
one job's decode/encode/upload to other threads while it starts the next.
Every model call goes through parallel/compile_gate.py, which keeps
torch.compile's process-wide tracing away from calls in other threads.

Loading (device, dtype, the model check, from_pretrained) is in
pipeline_loading.py; the scheduler of a resumed render in resume_schedule.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import structlog
import torch

from mochi_contracts.jobs import JobRequest
from mochi_runner.pipeline_loading import load_pipeline, resolve_device, resolve_dtype
from mochi_runner.resume_schedule import Resume, resumed_scheduler

if TYPE_CHECKING:
    from diffusers import AutoencoderKLMochi, MochiTransformer3DModel

    from mochi_runner.parallel.attention_kernels import AttentionKernel

log = structlog.get_logger()

# Called after each denoising step with (steps done, total steps). Raising
# from it stops the render at once: diffusers' interrupt flag would still
# decode the half-done latents, which wastes the GPU on a cancelled job.
StepHook = Callable[[int, int], None]
# Called after each denoising step, before the step hook, with (steps done,
# the latents after that step). The tensor is the pipeline's own and is handed
# to the next step: copy it (checkpoints.start_host_copy) rather than keep it.
LatentsHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class EngineConfig:
    model_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    vae_tiling: bool = True
    # Two or more devices turn on guidance-parallel denoising and the split VAE decode.
    devices: tuple[str, ...] = ()
    # The sync-free exact attention processor (multi-device path).
    prefix_attention: bool = True
    # The attention kernel inside that processor: "sdpa" (cuDNN on Hopper) or
    # "fa4" (FlashAttention-4, optional dependency; parallel/attention_kernels.py).
    attention_kernel: AttentionKernel = "sdpa"
    # torch.compile each transformer block (multi-device path).
    compile_blocks: bool = False
    # Inductor's and Triton's caches on the node's disk ("" keeps torch's /tmp
    # default): a restart reuses the compiled blocks (parallel/compile_cache.py).
    compile_cache_dir: str = ""
    # FOR BENCHMARKS ONLY: full-size Mochi with random weights, model_dir unused.
    random_weights: bool = False
    # The warm-up render's size. Compiled blocks take any size after it
    # (parallel/prefix_attention.mark_sequence_dynamic).
    warmup_size: tuple[int, int, int] = (64, 64, 7)  # width, height, frames


def compile_blocks(transformer: MochiTransformer3DModel) -> None:
    """`block.compile()` per transformer block (diffusers' compile_repeated_blocks
    does nothing for Mochi). 47 blocks share one graph per device and prompt
    length class, the last block (context_pre_only) another: raise dynamo's
    per-function limit above those few graphs."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 64))
    for block in transformer.transformer_blocks:
        block.compile()


class MochiEngine:
    """One resident MochiPipeline, on one device or spread over several."""

    def __init__(self, config: EngineConfig):
        from mochi_runner.parallel.attention_kernels import check_kernel
        from mochi_runner.parallel.device_worker import DeviceWorker
        from mochi_runner.parallel.guidance_parallel import GuidanceParallelTransformer
        from mochi_runner.parallel.replicate import replicate

        self.config = config
        devices = [resolve_device(d) for d in config.devices]
        self.device = devices[0] if devices else resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        started = time.perf_counter()
        self.pipe = load_pipeline(config.model_dir, self.device, self.dtype, random_weights=config.random_weights)
        self.pipe.set_progress_bar_config(disable=True)
        if config.vae_tiling:
            self.pipe.vae.enable_tiling()
        self.parallel: GuidanceParallelTransformer | None = None
        self.vaes: list[AutoencoderKLMochi] = [self.pipe.vae]
        self.vae_workers: list[DeviceWorker] = []
        # One pipeline per device for guidance-free jobs, two of which run at once.
        self.lanes: list = []
        self._encode_lock = threading.Lock()
        self._model_digest: str | None = None
        if config.compile_blocks:
            from mochi_runner.parallel.compile_cache import use_compile_cache

            use_compile_cache(config.compile_cache_dir)
        if len(devices) > 1:
            base = self.pipe.transformer
            replicas = [base] + [replicate(base, d) for d in devices[1:]]
            check_kernel(config.attention_kernel, devices)
            self.parallel = GuidanceParallelTransformer(replicas, prefix_attention=config.prefix_attention,
                                                        attention_kernel=config.attention_kernel)
            if config.compile_blocks:
                for replica in replicas:
                    compile_blocks(replica)
            # Not through register_modules: the look-alike must not be saved or moved as a component.
            object.__setattr__(self.pipe, "transformer", self.parallel)
            self.vaes += [replicate(self.pipe.vae, d) for d in devices[1:]]
            for vae in self.vaes[1:]:
                if config.vae_tiling:
                    vae.enable_tiling()
            self.vae_workers = [DeviceWorker(d) for d in devices]
            self.lanes = [self._lane(replica, vae, device)
                          for replica, vae, device in zip(replicas, self.vaes, devices, strict=True)]
        elif config.prefix_attention:
            # One device, the same code path as several: the guidance pair's
            # two branches run one after the other on the one transformer
            # (no second copy of the weights), on the sync-free processor.
            check_kernel(config.attention_kernel, [self.device])
            self.parallel = GuidanceParallelTransformer([self.pipe.transformer], prefix_attention=True,
                                                        attention_kernel=config.attention_kernel)
            if config.compile_blocks:
                compile_blocks(self.pipe.transformer)
            object.__setattr__(self.pipe, "transformer", self.parallel)
        elif config.attention_kernel != "sdpa":
            raise ValueError(f"attention_kernel={config.attention_kernel} runs inside the prefix processor; "
                             "turn prefix_attention on")
        elif config.compile_blocks:
            compile_blocks(self.pipe.transformer)
        self.load_seconds = time.perf_counter() - started
        log.info("engine.loaded", model_dir=None if config.random_weights else str(config.model_dir),
                 devices=[str(d) for d in devices] or [str(self.device)], dtype=str(self.dtype),
                 random_weights_benchmark_only=config.random_weights,
                 seconds=round(self.load_seconds, 2))

    def _lane(self, replica: MochiTransformer3DModel, vae: AutoencoderKLMochi, device: torch.device):
        """A pipeline whose latents, transformer and VAE all live on `device`, so
        two lanes never queue work on each other's GPU. It gets its prompt
        embeddings from the engine (T5 stays on the first device)."""
        from diffusers import MochiPipeline

        from mochi_runner.parallel.guidance_parallel import GuidanceParallelTransformer

        lane = MochiPipeline(
            scheduler=type(self.pipe.scheduler).from_config(self.pipe.scheduler.config), vae=vae,
            text_encoder=None, tokenizer=None,
            transformer=GuidanceParallelTransformer([replica], prefix_attention=self.config.prefix_attention,
                                                    output_device=device,
                                                    attention_kernel=self.config.attention_kernel))
        lane.set_progress_bar_config(disable=True)
        return lane

    @property
    def devices(self) -> list[torch.device]:
        return self.parallel.devices if self.parallel is not None else [self.device]

    def close(self) -> None:
        if self.parallel is not None:
            self.parallel.close()
        for lane in self.lanes:
            lane.transformer.close()
        for worker in self.vae_workers:
            worker.close()

    def warm_up(self) -> float:
        """One small render (compiling, if compile is on, at `warmup_size`) before any job."""
        started = time.perf_counter()
        width, height, frames = self.config.warmup_size
        self.render(JobRequest(prompt="warm up", width=width, height=height, num_frames=frames,
                               num_inference_steps=2, seed=0), lambda step, total: None)
        seconds = time.perf_counter() - started
        log.info("engine.warm", seconds=round(seconds, 2))
        return seconds

    def render(self, req: JobRequest, on_step: StepHook) -> np.ndarray:
        """Render one video; T x H x W x 3 uint8 frames."""
        return self.decode(self.denoise(req, on_step))

    def denoise(self, req: JobRequest, on_step: StepHook, lane: int | None = None,
                resume: Resume | None = None, on_latents: LatentsHook | None = None,
                on_prompt_encoded: Callable[[], None] | None = None) -> torch.Tensor:
        """Text to final latents (still scaled).

        lane=None: the whole engine (both GPUs on a guided job). lane=i: the
        i-th device alone, for a guidance-free job (guidance <= 1), so that two
        such jobs can denoise at once from two threads, one per GPU.

        resume: start after `resume.step` finished steps from their latents;
        with the same engine configuration the result is bitwise the
        uninterrupted render's (ResumedScheduler says why). on_latents gets
        the latents after every step, numbered as in an uninterrupted render.
        on_prompt_encoded is called once T5 is done, where the engine runs it
        itself (the multi-device path, one device included); the stock
        pipeline encodes inside its call, which gives no such moment."""
        steps = req.num_inference_steps
        done = resume.step if resume is not None else 0
        if not 0 <= done <= steps:
            raise ValueError(f"cannot resume at step {done} of a {steps}-step render")
        pipe, device = self.pipe, self.device
        if lane is not None:
            if not self.lanes:
                raise ValueError("lanes need two or more devices")
            if req.guidance_scale > 1.0:
                raise ValueError("a lane runs guidance-free jobs; a guided job takes both GPUs")
            pipe, device = self.lanes[lane], self.devices[lane]
        if resume is not None and done == steps:
            return resume.latents.to(device)  # denoising had finished: only the decode is left

        def step_end(pipe, index, timestep, tensors):  # diffusers' callback signature
            # Nothing else waits for the GPU now (no per-layer sync): wait here
            # so progress reports real steps and a cancel lands between real steps.
            # The step ends where the latents live, after the predictions came over.
            if device.type == "cuda":
                torch.cuda.current_stream(device).synchronize()
            if on_latents is not None:
                on_latents(done + index + 1, tensors["latents"])
            on_step(done + index + 1, steps)
            return {}

        # The generator lives on the CPU so one seed gives one video on any device.
        generator = torch.Generator(device="cpu").manual_seed(req.seed or 0)
        extra: dict = {}
        stock = pipe.scheduler
        if resume is not None:
            extra["latents"] = resume.latents
            # Swapped for this call only (a pipeline runs one job at a time: its
            # ticket's lanes), past DiffusionPipeline.__setattr__, which would
            # rewrite the pipeline's config with the subclass's name.
            object.__setattr__(pipe, "scheduler", resumed_scheduler(stock, done))
        try:
            with torch.inference_mode():
                inputs = self._prompt_inputs(req, device)
                # Only where the engine ran T5 itself: the stock pipeline encodes inside its call.
                if on_prompt_encoded is not None and self.parallel is not None:
                    on_prompt_encoded()
                out = pipe(
                    **inputs, width=req.width, height=req.height,
                    num_frames=req.num_frames, num_inference_steps=steps, guidance_scale=req.guidance_scale,
                    generator=generator, output_type="latent", callback_on_step_end=step_end, **extra)
        finally:
            if resume is not None:
                object.__setattr__(pipe, "scheduler", stock)
        return out.frames

    def latent_shape(self, req: JobRequest) -> tuple[int, ...]:
        """The shape of a request's latents (what a checkpoint must have)."""
        pipe = self.pipe
        return (1, pipe.transformer.config.in_channels,
                (req.num_frames - 1) // pipe.vae_temporal_scale_factor + 1,
                req.height // pipe.vae_spatial_scale_factor, req.width // pipe.vae_spatial_scale_factor)

    def model_digest(self) -> str:
        """Which model this is, by its transformer's config and the bytes of its
        first and last parameters (a few MB at most): a checkpoint of another
        model's latents is refused, not decoded into noise."""
        if self._model_digest is None:
            import hashlib
            import json

            transformer = self.parallel.replicas[0] if self.parallel is not None else self.pipe.transformer
            digest = hashlib.sha256(json.dumps(dict(transformer.config), sort_keys=True, default=str).encode())
            params = list(transformer.parameters())
            for param in (params[0], params[-1]):
                digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
            self._model_digest = digest.hexdigest()
        return self._model_digest

    def render_config(self, lane: int | None) -> dict[str, str]:
        """What decides the numbers of a render besides the request and the
        model: two renders agree bit for bit only where these agree."""
        import diffusers

        parallel = self.parallel is not None
        devices = [self.devices[lane]] if lane is not None else self.devices
        names = sorted({torch.cuda.get_device_name(d) if d.type == "cuda" else d.type for d in devices})
        return {
            "path": "lane" if lane is not None else (f"guidance-parallel x{len(devices)}" if parallel else "stock"),
            "devices": f"{len(devices)} x {'/'.join(names)}", "dtype": str(self.dtype),
            "prefix_attention": str(self.config.prefix_attention if parallel else False),
            "attention_kernel": self.config.attention_kernel if parallel else "stock",
            "compile_blocks": str(self.config.compile_blocks),
            "torch": str(torch.__version__), "diffusers": str(diffusers.__version__)}

    def _prompt_inputs(self, req: JobRequest, device: torch.device) -> dict:
        """The pipeline's prompt arguments. On several devices the engine runs
        T5 itself (the pipeline's own encode_prompt, so the same numbers) under
        the compile gate, and hands the embeddings over."""
        if self.parallel is None:
            return dict(prompt=req.prompt, negative_prompt=req.negative_prompt or None)
        from mochi_runner.parallel.compile_gate import GATE

        # One tokenizer and one T5 for all lanes: a fast tokenizer is not safe
        # to call from two threads at once, and the encode takes milliseconds.
        with self._encode_lock, GATE.shared(), torch.inference_mode():
            embeds, mask, neg_embeds, neg_mask = self.pipe.encode_prompt(
                prompt=req.prompt, negative_prompt=req.negative_prompt or None,
                do_classifier_free_guidance=req.guidance_scale > 1.0, device=self.device)
        inputs = dict(prompt_embeds=embeds.to(device), prompt_attention_mask=mask.to(device))
        if req.guidance_scale > 1.0:
            inputs.update(negative_prompt_embeds=neg_embeds.to(device),
                          negative_prompt_attention_mask=neg_mask.to(device))
        return inputs

    def decode(self, latents: torch.Tensor, lane: int | None = None) -> np.ndarray:
        """Latents to T x H x W x 3 uint8 frames: MochiPipeline's own unscaling,
        decode and post-processing, with the tiles spread over the devices
        (lane=i: on device i's VAE alone, beside a job on the other lane)."""
        from mochi_runner.parallel.compile_gate import GATE
        from mochi_runner.parallel.vae_split import needs_tiling, split_tiled_decode

        vae = self.pipe.vae if lane is None else self.vaes[lane]
        with torch.inference_mode():
            latents = latents.to(self.device if lane is None else self.devices[lane])
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean_t = torch.tensor(mean).view(1, 12, 1, 1, 1).to(latents.device, latents.dtype)
                std_t = torch.tensor(std).view(1, 12, 1, 1, 1).to(latents.device, latents.dtype)
                latents = latents * std_t / vae.config.scaling_factor + mean_t
            else:
                latents = latents / vae.config.scaling_factor
            if lane is None and len(self.vaes) > 1 and needs_tiling(vae, latents):
                video = split_tiled_decode(self.vaes, self.vae_workers, latents)
            else:
                with GATE.shared():
                    video = vae.decode(latents, return_dict=False)[0]
            return video_to_uint8(video)


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """Batch-1 VAE output (1, C, T, H, W) in [-1, 1] to T x H x W x C uint8, the
    same numbers as VideoProcessor.postprocess_video(output_type="np") followed
    by video_encode.to_uint8, computed on the device so only bytes cross to the host."""
    frames = (video[0] * 0.5 + 0.5).clamp(0, 1)  # VaeImageProcessor.denormalize, in the VAE's dtype
    frames = frames.permute(1, 2, 3, 0).float()
    frames = (frames.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)  # to_uint8, in fp32
    return frames.cpu().numpy()


def parse_devices(spec: str) -> tuple[str, ...]:
    """"cuda:0,cuda:1" -> ("cuda:0", "cuda:1"); "" -> () (one device)."""
    return tuple(part.strip() for part in spec.split(",") if part.strip())


def engine_config(settings) -> EngineConfig:  # settings: mochi_runner.settings.RunnerSettings
    return EngineConfig(
        model_dir=Path(settings.model_dir), device=settings.device, dtype=settings.dtype,
        vae_tiling=settings.vae_tiling, devices=parse_devices(settings.devices),
        prefix_attention=settings.prefix_attention, attention_kernel=settings.attention_kernel,
        compile_blocks=settings.compile_blocks, compile_cache_dir=settings.compile_cache_dir,
        random_weights=settings.random_weights_for_benchmarks,
        warmup_size=(settings.warmup_width, settings.warmup_height, settings.warmup_frames))
