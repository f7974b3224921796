"""The NATS permissions in deploy/kustomize are exactly what each service's
code needs, with every subject built from mochi_contracts.

The event subjects a service may publish come from the events its code
constructs (found by reading its source), so a new event in a service needs
a new permission here and in accounts.conf. The JetStream API subjects follow
the calls each service makes (comments name them); test_deploy_nats_live.py
then runs those calls as each user on a real server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mochi_contracts import events, subjects
from mochi_contracts.streams import (
    DEAD_LETTER_CONSUMER, DEAD_LETTER_STREAM, JOBS_STREAM, RUNNERS_CONSUMER)
from test_deploy_support import (
    OVERLAYS, REPO, nats_accounts, nats_config, nats_users, one, service_containers)

SOURCES = {
    "api": REPO / "services/api/mochi_api",
    "catalog": REPO / "services/catalog/mochi_catalog",
    "runner": REPO / "services/gpu-runner/mochi_runner",
}
API = "$JS.API"
INBOX = "_INBOX.>"  # replies to requests, JetStream API calls and pull fetches
ANY_JOB = "0" * 32


def _any_job(subject: str) -> str:
    return subject.replace(ANY_JOB, "*")


def constructed_events(package: Path) -> set[str]:
    """Event types whose class a package calls (services build events only to publish them)."""
    classes = {c.__name__: c.__struct_config__.tag for c in vars(events).values()
               if isinstance(c, type) and issubclass(c, events.Event) and c is not events.Event}
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes:
                found.add(classes[node.func.id])
    return found


def publishes_events(service: str) -> set[str]:
    return {_any_job(subjects.event_subject(ANY_JOB, t)) for t in constructed_events(SOURCES[service])}


def owns_stream(stream: str) -> set[str]:
    # ensure_stream(): info, then create or update.
    return {f"{API}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE")}


def works_durable(stream: str, consumer: str) -> set[str]:
    # ensure_consumer() + pull_subscribe_bind().fetch() + ack/nak/in_progress/term.
    return {f"{API}.CONSUMER.INFO.{stream}.{consumer}",
            f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>"}


def direct_get_last(stream: str) -> set[str]:
    # get_last_msg(stream, subject, direct=True) puts the subject in the API subject.
    return {f"{API}.DIRECT.GET.{stream}.>"}


def direct_get_seq(stream: str) -> set[str]:
    return {f"{API}.DIRECT.GET.{stream}"}


def reads_ordered(stream: str) -> set[str]:
    # js.subscribe(ordered_consumer=True): an unnamed consumer, flow-control replies.
    return {f"{API}.CONSUMER.CREATE.{stream}", f"$JS.FC.{stream}.>"}


EXPECTED = {
    "api": {
        # routes/jobs.py publishes events; app.py ensure_jobs_stream; job_reader.py
        # asks the catalog and reads a job's last event with a direct get.
        "publish": publishes_events("api") | {subjects.CATALOG_GET, subjects.CATALOG_LIST}
        | owns_stream(JOBS_STREAM) | direct_get_last(JOBS_STREAM),
        "subscribe": {INBOX},
        "allow_responses": False,
    },
    "catalog": {
        # service.py: ensure_jobs_stream, an ordered consumer over the stream, and
        # a nats.micro service ($SRV.PING/INFO/STATS discovery, replies to requests).
        "publish": owns_stream(JOBS_STREAM) | reads_ordered(JOBS_STREAM),
        "subscribe": {INBOX, subjects.CATALOG_GET, subjects.CATALOG_LIST, "$SRV.>"},
        "allow_responses": True,
    },
    "runner": {
        # service.py ensure_runner_topology + pull from gpu-runners; dead_letters.py
        # pulls advisories and reads the dead job by sequence; job_handler.py
        # reads last events and listens for its job's cancel and final events.
        "publish": publishes_events("runner") | owns_stream(JOBS_STREAM)
        | owns_stream(DEAD_LETTER_STREAM) | works_durable(JOBS_STREAM, RUNNERS_CONSUMER)
        | works_durable(DEAD_LETTER_STREAM, DEAD_LETTER_CONSUMER)
        | direct_get_last(JOBS_STREAM) | direct_get_seq(JOBS_STREAM),
        "subscribe": {INBOX, _any_job(subjects.event_subject(ANY_JOB, "cancel_requested")),
                      _any_job(subjects.job_final(ANY_JOB))},
        "allow_responses": False,
    },
}


def test_services_publish_the_events_they_own() -> None:
    # A guard on the source scan itself: these are the documented owners.
    assert constructed_events(SOURCES["api"]) == {"submitted", "cancel_requested", "cancelled"}
    assert constructed_events(SOURCES["catalog"]) == set()
    assert {"started", "progress", "completed", "failed"} <= constructed_events(SOURCES["runner"])


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_service_user_permissions_are_exactly_what_the_code_needs(user: str) -> None:
    perms = nats_users("h100x8")[user]["permissions"]
    want = EXPECTED[user]
    assert set(perms) <= {"publish", "subscribe", "allow_responses"}
    assert set(perms["publish"]) == {"allow"}, "allow-lists only: a deny list invites gaps"
    assert set(perms["subscribe"]) == {"allow"}
    have_pub, have_sub = perms["publish"]["allow"], perms["subscribe"]["allow"]
    assert len(have_pub) == len(set(have_pub)) and len(have_sub) == len(set(have_sub))
    assert set(have_pub) == want["publish"], (
        f"missing {sorted(want['publish'] - set(have_pub))}, extra {sorted(set(have_pub) - want['publish'])}")
    assert set(have_sub) == want["subscribe"], (
        f"missing {sorted(want['subscribe'] - set(have_sub))}, extra {sorted(set(have_sub) - want['subscribe'])}")
    assert perms.get("allow_responses", False) is want["allow_responses"]


def test_users_live_in_the_jetstream_account() -> None:
    users = nats_users("h100x8")
    assert set(EXPECTED) | {"admin", "sys"} == set(users)
    accounts = {u["account"] for name, u in users.items() if name != "sys"}
    assert len(accounts) == 1
    assert users["sys"]["account"] != accounts.pop()
    assert nats_accounts("h100x8")["system_account"] == users["sys"]["account"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_logs_in_as_its_user_with_its_password(overlay: str) -> None:
    # service URL user -> the Secret key it reads -> the server variable of
    # that user's password -> the Secret key the server reads. One chain.
    users = nats_users(overlay)
    server_env = {e["name"]: e for e in one(overlay, "StatefulSet", "nats")["spec"]["template"]["spec"]
                  ["containers"][0]["env"]}
    for service, _, container in service_containers(overlay):
        env = {e["name"]: e for e in container["env"]}
        user = env["MOCHI_NATS_URL"]["value"].split("://", 1)[1].split(":", 1)[0]
        assert user == service
        client_key = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        variable = users[user]["password"].removeprefix("$")
        server_key = server_env[variable]["valueFrom"]["secretKeyRef"]
        assert client_key == server_key, f"{overlay}/{service}"


def test_server_config_includes_the_accounts() -> None:
    conf = nats_config("h100x8", "nats.conf")
    assert "include ./accounts.conf" in conf
    assert "no_advertise: true" in conf
