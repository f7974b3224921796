"""A job interrupted is a job continued (issue 20).

The engine: a render stopped after step k and resumed from the latents of
step k equals the uninterrupted render bit for bit (tiny model, CPU), on the
one-device stock pipeline, the guidance-parallel path and a lane."""

from __future__ import annotations

import pytest
import torch

from engines import GUIDANCE_PARALLEL, ONE_DEVICE, STOCK, cpu_engine, cpu_engines, interrupted_at
from mochi_contracts.jobs import JobRequest
from mochi_runner.resume_schedule import Resume
from mochi_runner.tiny_model import save_tiny_model

GUIDED = JobRequest(prompt="a cat walks on the grass", negative_prompt="", width=64, height=64, num_frames=13,
                    num_inference_steps=6, guidance_scale=4.5, seed=11)
FREE = JobRequest(prompt="a bird over a forest", width=64, height=48, num_frames=7, num_inference_steps=5,
                  guidance_scale=1.0, seed=4)


ENGINES = {"stock": STOCK, "one-device": ONE_DEVICE, "guidance-parallel": GUIDANCE_PARALLEL}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request, tiny_model):
    with cpu_engine(tiny_model, **ENGINES[request.param]) as engine:
        yield engine


@pytest.mark.parametrize("k", [1, 3, 5])
def test_interrupted_and_resumed_equals_uninterrupted(engine, k):
    uninterrupted = engine.denoise(GUIDED, lambda s, t: None)
    saved = interrupted_at(engine, GUIDED, k)
    steps: list[int] = []
    resumed = engine.denoise(GUIDED, lambda step, total: steps.append(step), resume=Resume(step=k, latents=saved))
    assert steps == list(range(k + 1, GUIDED.num_inference_steps + 1))  # numbered as uninterrupted
    assert torch.equal(resumed, uninterrupted)
    assert (engine.decode(resumed) == engine.decode(uninterrupted)).all()


def test_resumed_after_the_last_step_renders_no_step(engine):
    final = engine.denoise(GUIDED, lambda s, t: None)
    steps: list[int] = []
    again = engine.denoise(GUIDED, lambda step, total: steps.append(step),
                           resume=Resume(step=GUIDED.num_inference_steps, latents=final.clone()))
    assert steps == [] and torch.equal(again, final)
    with pytest.raises(ValueError):
        engine.denoise(GUIDED, lambda s, t: None, resume=Resume(step=GUIDED.num_inference_steps + 1, latents=final))


def test_the_stock_scheduler_is_back_after_a_resume(engine):
    stock = engine.pipe.scheduler
    saved = interrupted_at(engine, GUIDED, 2)
    engine.denoise(GUIDED, lambda s, t: None, resume=Resume(step=2, latents=saved))
    assert engine.pipe.scheduler is stock
    assert type(stock).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_a_lane_resumes_exactly_too(tiny_model):
    with cpu_engine(tiny_model, **GUIDANCE_PARALLEL) as engine:
        uninterrupted = engine.denoise(FREE, lambda s, t: None, lane=1)
        saved = interrupted_at(engine, FREE, 2, lane=1)
        resumed = engine.denoise(FREE, lambda s, t: None, lane=1, resume=Resume(step=2, latents=saved))
        assert torch.equal(resumed, uninterrupted)
        assert engine.render_config(1)["path"] == "lane" and engine.render_config(None)["path"] != "lane"


def test_model_digest_tells_models_apart(tiny_model, tmp_path):
    save_tiny_model(tmp_path / "other", seed=1)  # the same config, other weights
    with (cpu_engines(tiny_model, ONE_DEVICE, GUIDANCE_PARALLEL) as (one, same),
          cpu_engine(tmp_path / "other") as other):
        assert one.model_digest() == same.model_digest() != other.model_digest()
        assert one.latent_shape(GUIDED) == (1, 12, 3, 8, 8)


# ---- real processes: runners killed, stopped, failing; the bucket away ------------------

import asyncio  # noqa: E402
import urllib.request  # noqa: E402

import nats  # noqa: E402

from invariants import check_invariants, denoising_steps_rendered_twice  # noqa: E402
from mochi_contracts.storage import video_key  # noqa: E402
from mochi_contracts.streams import CHECKPOINT_BUCKET  # noqa: E402
from mochi_runner import checkpoints  # noqa: E402
from test_recovery import progress_of  # noqa: E402
from waits import wait_until  # noqa: E402

# About 60 ms a step on two cores: long enough to be caught mid-render.
SLOW = {"width": 128, "height": 128, "num_frames": 7, "num_inference_steps": 150, "seed": 20}
CHECKPOINTS = {"MOCHI_ACK_WAIT_S": "3", "MOCHI_CHECKPOINT_EVERY_STEPS": "10"}


async def _bucket_call(url: str, op):  # type: ignore[no-untyped-def]
    nc = await nats.connect(url)
    try:
        return await op(nc.jetstream())
    finally:
        await nc.close()


def checkpoint_blob(system, job_id: str) -> bytes | None:
    async def get(js):  # type: ignore[no-untyped-def]
        try:
            return (await (await js.object_store(CHECKPOINT_BUCKET)).get(job_id)).data
        except nats.js.errors.ObjectNotFoundError:
            return None

    return asyncio.run(_bucket_call(system.nats_url, get))


def put_checkpoint(system, job_id: str, blob: bytes) -> None:
    async def put(js):  # type: ignore[no-untyped-def]
        from mochi_common.jetstream_setup import ensure_checkpoint_bucket
        from mochi_contracts.streams import JetStreamSettings

        # Made here when no runner has started yet, as a runner makes it.
        await (await ensure_checkpoint_bucket(js, JetStreamSettings())).put(job_id, blob)

    asyncio.run(_bucket_call(system.nats_url, put))


def checkpoint_step(system, job_id: str) -> int | None:
    blob = checkpoint_blob(system, job_id)
    return None if blob is None else checkpoints._header(blob)[0].step


def no_checkpoint_left(system, job_id: str) -> None:
    # The final event goes out first, the delete right after it.
    wait_until(lambda: checkpoint_blob(system, job_id) is None, timeout=15, what=f"{job_id}'s checkpoint deleted")


def folded(system, job_id: str):  # type: ignore[no-untyped-def]
    """The job as its events fold (what the catalog and the job resource read)."""
    from mochi_contracts.job_state import apply, new_state

    messages = system.events(f"mochi.jobs.{job_id}.>")
    state = new_state(messages[0].event, messages[0].seq)
    for m in messages[1:]:
        state = apply(state, m.event, m.seq)
    return state


def starts(system, job_id: str) -> list[tuple[str, int]]:
    return [(m.event.runner, m.event.from_step) for m in system.events(f"mochi.jobs.{job_id}.started")]


def steps_of(system, job_id: str, runner: str) -> list[int]:
    return [m.event.step for m in system.events(f"mochi.jobs.{job_id}.progress") if m.event.runner == runner]


def decoded_frames(path) -> list:  # type: ignore[no-untyped-def]
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def metric(runner, name: str) -> float:
    text = urllib.request.urlopen(f"{runner.health_url}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def the_stack(system, settings: dict[str, str]):  # type: ignore[no-untyped-def]
    system.settings.update(settings)
    system.start_catalog()
    runner = system.start_runner("runner-a", wait=True)
    system.start_api()
    return runner, system.client()


def test_sigkill_resumes_at_the_last_checkpoint_and_the_frames_equal_an_uninterrupted_render(system):
    first, client = the_stack(system, CHECKPOINTS)
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: (checkpoint_step(system, job.id) or 0) >= 20, timeout=90, what="two checkpoints")
    first.kill()
    saved = checkpoint_step(system, job.id)  # what the next delivery finds
    killed_at = progress_of(system, job.id)
    assert saved is not None and saved % 10 == 0 and killed_at - saved < 10 + 5, (saved, killed_at)

    second = system.start_runner("runner-b", wait=True)
    done = client.wait(job.id, timeout=240)
    assert done.status == "completed" and done.attempts == 2, done
    assert starts(system, job.id) == [("runner-a", 0), ("runner-b", saved)]
    assert steps_of(system, job.id, "runner-b") == list(range(saved + 1, 151))
    state = folded(system, job.id)
    assert [(a.runner, a.from_step) for a in state.attempt_starts] == [("runner-a", 0), ("runner-b", saved)]
    log = " ".join(line.message for line in client.logs(job.id))
    assert f"resuming at step {saved + 1} of 150" in log and "runner-a saved on attempt 1" in log
    assert "bit for bit" in log and "not bit for bit" not in log

    # The same request (same seed) rendered without interruption, on the same runner.
    again = client.wait(client.submit("a cat walks on the grass", **SLOW).id, timeout=240)
    assert again.status == "completed" and starts(system, again.id) == [("runner-b", 0)]
    resumed = decoded_frames(system.root / "videos" / video_key(job.id))
    plain = decoded_frames(system.root / "videos" / video_key(again.id))
    assert len(resumed) == len(plain) == SLOW["num_frames"]
    assert all((a == b).all() for a, b in zip(resumed, plain, strict=True))

    no_checkpoint_left(system, job.id)
    no_checkpoint_left(system, again.id)
    assert metric(second, "mochi_runner_denoising_steps_resumed_total") == saved
    twice = denoising_steps_rendered_twice(system.events(f"mochi.jobs.{job.id}.>"))
    assert twice[job.id] == killed_at - saved  # the steps after the checkpoint, rendered again
    check_invariants(system)


def test_sigterm_hands_over_and_the_next_runner_resumes_at_exactly_that_step(system):
    first, client = the_stack(system, {"MOCHI_ACK_WAIT_S": "120", "MOCHI_CHECKPOINT_EVERY_STEPS": "0"})
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: progress_of(system, job.id) >= 5, timeout=60, what="runner-a mid-job")
    assert first.stop(timeout=30) == 0
    stopped_at = progress_of(system, job.id)
    assert 5 <= stopped_at < 150
    assert checkpoint_step(system, job.id) == stopped_at  # no interval: the hand-over's own

    system.start_runner("runner-b", wait=True)
    done = client.wait(job.id, timeout=240)
    assert done.status == "completed" and done.runner == "runner-b", done
    assert starts(system, job.id) == [("runner-a", 0), ("runner-b", stopped_at)]
    # The job resource shows each attempt and the step it started from.
    assert [(a.attempt, a.runner, a.from_step) for a in done.attempt_starts] == [
        (1, "runner-a", 0), (2, "runner-b", stopped_at)]
    assert steps_of(system, job.id, "runner-b")[0] == stopped_at + 1
    assert denoising_steps_rendered_twice(system.events(f"mochi.jobs.{job.id}.>"))[job.id] == 0
    no_checkpoint_left(system, job.id)
    check_invariants(system)


def test_a_runner_of_another_configuration_resumes_and_says_so(system):
    """Across configurations a resume is allowed (the latents are the same
    model's) and logged as not bit for bit: here a one-device runner hands
    over to a guidance-parallel one."""
    first, client = the_stack(system, {"MOCHI_ACK_WAIT_S": "120", "MOCHI_CHECKPOINT_EVERY_STEPS": "0"})
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: progress_of(system, job.id) >= 5, timeout=60, what="runner-a mid-job")
    assert first.stop(timeout=30) == 0
    stopped_at = progress_of(system, job.id)

    second = system.start_runner("runner-b", wait=True, MOCHI_DEVICES="cpu,cpu")
    done = client.wait(job.id, timeout=240)
    assert done.status == "completed" and done.runner == "runner-b", done
    assert starts(system, job.id) == [("runner-a", 0), ("runner-b", stopped_at)]
    log = " ".join(line.message for line in client.logs(job.id))
    assert f"resuming at step {stopped_at + 1} of 150" in log
    assert "another engine configuration (" in log and "not bit for bit" in log, log
    assert "path: guidance-parallel x1 -> guidance-parallel x2" in log, log
    assert metric(second, 'mochi_runner_resumes_total{configuration="other"}') == 1
    no_checkpoint_left(system, job.id)
    check_invariants(system)


def test_a_failed_decode_is_retried_without_denoising_again(system):
    # Fault injection (settings.fault_injection_decode_oom): the first decode
    # raises torch.OutOfMemoryError, as a VAE decode past the GPU's memory does.
    runner, client = the_stack(system, {"MOCHI_ACK_WAIT_S": "10", "MOCHI_FAULT_INJECTION_DECODE_OOM": "1"})
    small = {**SLOW, "num_inference_steps": 12}
    job = client.submit("a cat walks on the grass", **small)
    done = client.wait(job.id, timeout=120)
    assert done.status == "completed" and done.attempts == 2, done
    assert starts(system, job.id) == [("runner-a", 0), ("runner-a", 12)]
    assert steps_of(system, job.id, "runner-a") == list(range(1, 13))  # each step once
    messages = [line.message for line in client.logs(job.id)]
    assert any("out of GPU memory" in m and "no denoising step again" in m for m in messages), messages
    assert any("denoising had finished" in m for m in messages), messages
    assert metric(runner, "mochi_runner_denoising_steps_rendered_total") == 12
    no_checkpoint_left(system, job.id)
    check_invariants(system)


def test_a_corrupt_checkpoint_and_another_requests_are_ignored(system, tiny_model):
    from mochi_contracts.jobs import JobRequest
    from mochi_runner.engine import EngineConfig, MochiEngine

    system.start_catalog()
    system.start_api()
    client = system.client()
    small = {**SLOW, "num_inference_steps": 6}
    corrupt, other = (client.submit(p, **small).id for p in ("a red car", "a blue car"))
    engine = MochiEngine(EngineConfig(model_dir=tiny_model, device="cpu"))
    req = JobRequest(prompt="a red car", **small)
    shape = engine.latent_shape(req)

    def blob(job_id: str, request: JobRequest, step: int) -> bytes:
        data = checkpoints.tensor_bytes(torch.ones(shape))
        header = checkpoints.CheckpointHeader(
            format=checkpoints.FORMAT, job_id=job_id, step=step, total_steps=6, shape=list(shape), dtype="float32",
            sha256=checkpoints.hashlib.sha256(data).hexdigest(),
            request_digest=checkpoints.request_digest(job_id, request), model_digest=engine.model_digest(),
            config=engine.render_config(None), runner="elsewhere", attempt=1, saved_at=checkpoints.utcnow())
        return checkpoints.encode(header, data)

    good = blob(corrupt, req, 3)
    put_checkpoint(system, corrupt, good[:-8] + b"\x00" * 8)  # the latents' last bytes changed
    put_checkpoint(system, other, blob(other, JobRequest(prompt="a green car", **small), 3))
    engine.close()

    runner = system.start_runner("runner-a", wait=True)
    for job_id, why in ((corrupt, "checksum"), (other, "another_request")):
        done = client.wait(job_id, timeout=120)
        assert done.status == "completed" and starts(system, job_id) == [("runner-a", 0)], done
        assert steps_of(system, job_id, "runner-a") == list(range(1, 7))
        warnings = [line.message for line in client.logs(job_id) if line.level == "warning"]
        assert any(why in w and "rendering from step 0" in w for w in warnings), warnings
        no_checkpoint_left(system, job_id)
    assert metric(runner, "mochi_runner_checkpoints_rejected_total") == 2
    assert '"checkpoint.rejected"' in runner.log()


def test_the_bucket_gone_mid_job_the_job_completes_without_checkpoints(system):
    runner, client = the_stack(system, {"MOCHI_CHECKPOINT_EVERY_STEPS": "5"})
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: checkpoint_step(system, job.id) is not None, timeout=60, what="a first checkpoint")
    asyncio.run(_bucket_call(system.nats_url, lambda js: js.delete_object_store(CHECKPOINT_BUCKET)))
    done = client.wait(job.id, timeout=180)
    assert done.status == "completed", done
    assert '"checkpoint.store_unavailable"' in runner.log()
    assert metric(runner, "mochi_runner_checkpoint_store_unavailable_total") >= 1
    # The next job renders too, the bucket still away.
    assert client.wait(client.submit("a red car", **{**SLOW, "num_inference_steps": 4}).id,
                       timeout=60).status == "completed"
    check_invariants(system)


def test_no_checkpoint_is_left_after_a_cancel(system):
    runner, client = the_stack(system, {"MOCHI_CHECKPOINT_EVERY_STEPS": "2"})
    job = client.submit("a cat walks on the grass", **SLOW)
    wait_until(lambda: checkpoint_step(system, job.id) is not None, timeout=60, what="a first checkpoint")
    client.cancel(job.id)
    assert client.wait(job.id, timeout=60).status == "cancelled"
    no_checkpoint_left(system, job.id)
    assert metric(runner, "mochi_runner_checkpoints_total") >= 1
