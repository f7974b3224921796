"""Fair share in Kubernetes (deploy/kustomize/components/fair-share, used by
overlays/fair-share): the scheduler's Deployment, PDB and NetworkPolicy, fair
mode on the runners and the API, and NATS users that are the base's plus
exactly what fair mode adds, checked by running the scheduler, a fair runner,
the catalog and the API as those users on a live nats-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SMALL, System
from mochi_cli.client import MochiClient
from mochi_contracts import streams, subjects
from test_deploy_nats_permissions import ANY_JOB, _any_job, owns_stream, reads_ordered, uses_kv, works_durable
from test_deploy_support import KUSTOMIZE, OVERLAYS, nats_users, nats_with_users, objects, one, selects

FAIR = "fair-share"
API = "$JS.API"
VIOLATION = "permissions violation"


def scheduler_needs() -> set[str]:
    """What mochi_scheduler does on NATS, from mochi_contracts: its streams
    (topology.py), its two KV buckets (lease.py, queue_order.py), ordered reads
    of the job and release streams (view.py), the runners' consumer's free
    lanes and the guarded release (release.py), the dead letters' durable, the
    read of the dead release and the failed event (dead_letters.py)."""
    return {
        _any_job(subjects.released(ANY_JOB)), _any_job(subjects.event_subject(ANY_JOB, "failed")),
        *owns_stream(streams.JOBS_STREAM), *owns_stream(streams.RELEASE_STREAM),
        *owns_stream(streams.RELEASE_DEAD_LETTER_STREAM),
        *works_durable(streams.RELEASE_DEAD_LETTER_STREAM, streams.RELEASE_DEAD_LETTER_CONSUMER),
        *reads_ordered(streams.JOBS_STREAM), *reads_ordered(streams.RELEASE_STREAM),
        f"{API}.CONSUMER.INFO.{streams.RELEASE_STREAM}.{streams.RELEASED_CONSUMER}",
        # The dead release is read by its sequence, from the leader or directly.
        f"{API}.STREAM.MSG.GET.{streams.RELEASE_STREAM}", f"{API}.DIRECT.GET.{streams.RELEASE_STREAM}",
        *uses_kv(streams.SCHEDULER_LEASE_BUCKET), *uses_kv(streams.SCHEDULER_QUEUE_BUCKET),
    }


def runner_fair_needs() -> set[str]:
    """A runner in fair mode (mochi_scheduler.topology.ensure_runner_release_topology,
    released_work.py) besides its fifo grants: the release stream made if
    absent (never updated by a runner) and the released-jobs durable."""
    return {f"{API}.STREAM.INFO.{streams.RELEASE_STREAM}", f"{API}.STREAM.CREATE.{streams.RELEASE_STREAM}",
            *works_durable(streams.RELEASE_STREAM, streams.RELEASED_CONSUMER)}


def _allowed(user: dict, kind: str) -> set[str]:
    return set(user["permissions"][kind]["allow"])


def test_the_components_accounts_conf_is_made_from_the_bases() -> None:
    import importlib.util

    script = KUSTOMIZE / "components" / "fair-share" / "config" / "make_accounts.py"
    spec = importlib.util.spec_from_file_location("make_accounts", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.TARGET.read_text() == module.fair_accounts(module.BASE.read_text()), (
        f"the base's accounts.conf changed: run python {script.relative_to(KUSTOMIZE.parents[1])}")


def test_the_fair_users_are_the_bases_plus_the_scheduler_and_the_runners_releases() -> None:
    base, fair = nats_users("multi-node"), nats_users(FAIR)
    assert set(fair) == set(base) | {"scheduler"}
    for name in set(base) - {"runner"}:
        assert fair[name] == base[name], f"{name} differs from the base's accounts.conf: copy the change"
    runner = fair["runner"]
    assert _allowed(runner, "publish") == _allowed(base["runner"], "publish") | runner_fair_needs()
    assert _allowed(runner, "subscribe") == _allowed(base["runner"], "subscribe")
    scheduler = fair["scheduler"]
    assert scheduler["account"] == base["api"]["account"]  # the JetStream account
    have = scheduler["permissions"]["publish"]["allow"]
    assert len(have) == len(set(have))
    need = scheduler_needs()
    assert set(have) == need, (sorted(need - set(have)), sorted(set(have) - need))
    assert _allowed(scheduler, "subscribe") == {"_INBOX.>"}
    assert not scheduler["permissions"].get("allow_responses", False)


def test_the_scheduler_runs_two_replicas_spread_with_a_pdb_and_only_nats_egress() -> None:
    deployment = one(FAIR, "Deployment", "mochi-scheduler")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["mochi-serve/nats-client"] == "true"  # NATS lets it in
    spec = pod["spec"]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    [container] = spec["containers"]
    assert container["args"] == ["scheduler"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MOCHI_NATS_URL"]["value"].startswith("nats://scheduler:$(NATS_PASSWORD)@nats:4222")
    # The same password Secret key the server reads for the scheduler user.
    server_env = {e["name"]: e for e in one(FAIR, "StatefulSet", "nats")["spec"]["template"]["spec"]
                  ["containers"][0]["env"]}
    variable = nats_users(FAIR)["scheduler"]["password"].removeprefix("$")
    assert env["NATS_PASSWORD"]["valueFrom"] == server_env[variable]["valueFrom"]
    # The API's keys file: weights, priorities and running limits.
    api = one(FAIR, "Deployment", "mochi-api")["spec"]["template"]["spec"]
    api_env = {e["name"]: e.get("value") for e in api["containers"][0]["env"]}
    assert env["MOCHI_API_KEYS_FILE"]["value"] == api_env["MOCHI_API_KEYS_FILE"]
    secret = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secret["api-keys"] == {v["name"]: v.get("secret", {}).get("secretName")
                                  for v in api["volumes"]}["api-keys"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pdb = one(FAIR, "PodDisruptionBudget", "mochi-scheduler")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert selects(pdb["spec"]["selector"], labels)
    policy = one(FAIR, "NetworkPolicy", "mochi-scheduler")
    assert selects(policy["spec"]["podSelector"], labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [egress] = policy["spec"]["egress"]
    assert egress["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}]
    assert egress["ports"] == [{"protocol": "TCP", "port": 4222}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_fair_mode_only_where_the_component_is(overlay: str) -> None:
    def mode(name: str, container: str) -> str | None:
        spec = one(overlay, "Deployment", name)["spec"]["template"]["spec"]
        [c] = [c for c in spec["containers"] if c["name"] == container]
        return {e["name"]: e.get("value") for e in c["env"]}.get("MOCHI_SCHEDULING")

    fair = overlay == FAIR
    assert mode("mochi-runner", "runner") == mode("mochi-api", "api") == ("fair" if fair else None)
    assert bool([d for d in objects(overlay, "Deployment") if d["metadata"]["name"] == "mochi-scheduler"]) is fair


@pytest.fixture
def fair_nats(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A nats-server with the fair overlay's accounts.conf, unchanged."""
    with nats_with_users(tmp_path / "nats-users", FAIR) as server:
        yield server


def test_fair_mode_runs_as_the_deployed_users(tmp_path: Path, tiny_model: Path,
                                              fair_nats: tuple[int, dict[str, str]]) -> None:
    """Scheduler, fair runner, catalog and API each log in as its own user:
    a job goes through the scheduler's release to completion, its queue
    position came from the plan, and no process was refused anything."""
    port, passwords = fair_nats
    system = System(root=tmp_path, model_dir=tiny_model, nats_port=port)

    def as_user(user: str) -> dict[str, str]:
        return {"MOCHI_NATS_URL": f"nats://{user}:{passwords[user]}@127.0.0.1:{port}",
                "MOCHI_JETSTREAM_REPLICAS": "1"}

    try:
        # The API and the runner make the job stream, the scheduler its own.
        system.start_catalog(**as_user("catalog"), MOCHI_SCHEDULING="fair")
        system.start_api(**as_user("api"), MOCHI_SCHEDULING="fair")
        from test_fair_share import start_scheduler

        scheduler = start_scheduler(system, **as_user("scheduler"))
        client = MochiClient(system.api_url)
        job = client.submit("a cat as the deployed users", seed=1,
                            **{**SMALL, "num_frames": 1, "num_inference_steps": 2})
        # No runner yet: nothing is released, and the position is the plan's.
        from waits import wait_until

        wait_until(lambda: client.get(job.id).queue_position == 1, timeout=30, what="the queued position")
        runner = system.start_runner(**as_user("runner"), MOCHI_SCHEDULING="fair")
        done = client.wait(job.id, timeout=300)
        assert done.status == "completed", done.error
        for proc in (scheduler, runner, *system.procs):
            assert VIOLATION not in proc.log().lower(), f"{proc.name}: {proc.log()[-2000:]}"
    finally:
        system.stop()


def test_the_secrets_script_creates_the_scheduler_password() -> None:
    from test_deploy_secrets import created_by_script, mounted, referenced

    missing = referenced(FAIR) - created_by_script()
    assert not missing, f"{FAIR} reads secret keys the script never creates: {sorted(missing)}"
    assert ("mochi-nats-users", "scheduler-password") in referenced(FAIR)
    assert mounted(FAIR) <= {name for name, _ in created_by_script()}
