"""The NATS permissions in deploy/kustomize are exactly what each service's
code needs, with every subject built from mochi_contracts.

What a service needs is read from its source: the events it constructs (it
builds them only to publish them) and its NATS calls (stream set-up, pulls,
ordered consumers, subscriptions, direct gets, catalog requests or the
catalog's micro service). A new call or event in a service changes the
expected permissions here, and this test then names the subject that
accounts.conf lacks. test_deploy_nats_live.py runs the calls on a server."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from mochi_contracts import events, streams, subjects
from test_deploy_support import (
    OVERLAYS, REPO, nats_accounts, nats_config, nats_users, one, service_containers)

SOURCES = {
    "api": REPO / "services/api/mochi_api",
    "catalog": REPO / "services/catalog/mochi_catalog",
    "runner": REPO / "services/gpu-runner/mochi_runner",
    "webhooks": REPO / "services/webhooks/mochi_webhooks",
}
API = "$JS.API"
INBOX = "_INBOX.>"  # replies to requests, JetStream API calls and pull fetches
ANY_JOB = "0" * 32
# Attributes that hold a stream name with a contracts default (ApiContext.jobs_stream).
STREAM_ATTRIBUTES = {"jobs_stream": streams.JOBS_STREAM}


# JetStream calls on a `js` context that `needs` has no rule for fail loudly,
# so a new kind of call cannot slip past with no permission to match it.
_TAUGHT = {"subscribe", "pull_subscribe_bind", "stream_info", "consumer_info", "get_msg",
           "get_last_msg", "key_value", "create_key_value", "publish"}
# Events whose subject is not event_subject(job, type): a webhook attempt
# is recorded per delivery, mochi.jobs.<id>.webhook.<delivery seq>.
_ANY_INT = 987654321
EVENT_SUBJECTS = {"webhook": lambda: subjects.webhook_attempts(ANY_JOB, _ANY_INT)}
# A stream's own subjects, for a publish whose subject is a parameter.
STREAM_SUBJECTS = {streams.JOBS_STREAM: streams.jobs_stream(streams.JetStreamSettings()).subjects,
                   streams.DISPATCH_STREAM: streams.dispatch_stream(streams.JetStreamSettings()).subjects}
UNTAUGHT = {n for n in dir(JetStreamContext) if not n.startswith("_")
            and callable(getattr(JetStreamContext, n))} - _TAUGHT


def _any_job(subject: str) -> str:
    return subject.replace(ANY_JOB, "*").replace(str(_ANY_INT), "*")


def _trees(package: Path) -> list[ast.AST]:
    return [ast.parse(p.read_text()) for p in sorted(package.rglob("*.py"))]


def _stream_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name) and hasattr(streams, node.id):
        return getattr(streams, node.id)
    if isinstance(node, ast.Attribute) and node.attr in STREAM_ATTRIBUTES:
        return STREAM_ATTRIBUTES[node.attr]
    raise AssertionError(f"cannot tell which stream {ast.unparse(node)!r} is; teach this test")


def _subject(node: ast.AST) -> str:
    """A subscription's subject with any job id as `*`."""
    if isinstance(node, ast.Attribute) and hasattr(subjects, node.attr):
        return getattr(subjects, node.attr)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "subjects":
        # Any job id and any number stand for `*`; string constants stay.
        args = [ANY_JOB] + [a.value if isinstance(a, ast.Constant) else _ANY_INT for a in node.args[1:]]
        return _any_job(getattr(subjects, node.func.attr)(*args))
    raise AssertionError(f"cannot tell the subject of {ast.unparse(node)!r}; teach this test")


def _constants(tree: ast.AST) -> dict[str, str]:
    """Module-level NAME = "string" assignments (e.g. a KV bucket's name)."""
    return {t.id: n.value.value for n in getattr(tree, "body", []) if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
            for t in n.targets if isinstance(t, ast.Name)}


def _bucket(node: ast.AST, constants: dict[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.Name) and isinstance(getattr(streams, node.id, None), str):
        return getattr(streams, node.id)  # a bucket named in mochi_contracts.streams
    raise AssertionError(f"cannot tell which KV bucket {ast.unparse(node)!r} is; teach this test")


def _assigned(func: ast.AST | None, name: str) -> ast.AST | None:
    """The subjects.x(...) call that `name` is set to in `func`, if any."""
    for n in ast.walk(func) if func is not None else ():
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets) \
                and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Attribute) \
                and isinstance(n.value.func.value, ast.Name) and n.value.func.value.id == "subjects":
            return n.value
    return None


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


@functools.cache
def needs(service: str) -> dict[str, object]:
    """The permissions a service's source calls for."""
    trees = _trees(SOURCES[service])
    event_tags = {c.__name__: c.__struct_config__.tag for c in vars(events).values()
                  if isinstance(c, type) and issubclass(c, events.Event) and c is not events.Event}
    pub: set[str] = set()
    sub: set[str] = {INBOX}
    serves = False
    binds_any = False
    catalog_subjects = set()
    for tree in trees:
        constants = _constants(tree)
        # `name = subjects.x(...)` in the function that publishes `name`.
        scope = {}
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(func):
                    scope[id(inner)] = func  # the innermost function wins: walked last
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("CATALOG_GET", "CATALOG_LIST"):
                catalog_subjects.add(getattr(subjects, node.attr))
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "DeadLetterHandler" for b in node.bases):
                # mochi_common.dead_letters reads the exhausted message of its `stream` by a direct get.
                for item in node.body:
                    if isinstance(item, ast.Assign) and [ast.unparse(t) for t in item.targets] == ["stream"]:
                        pub |= direct_get_seq(_stream_name(item.value))
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name in event_tags:
                tag = event_tags[name]
                subject = EVENT_SUBJECTS[tag]() if tag in EVENT_SUBJECTS else subjects.event_subject(ANY_JOB, tag)
                pub.add(_any_job(subject))
            elif name == "ensure_jobs_stream":
                pub |= owns_stream(streams.JOBS_STREAM)
            elif name == "ensure_runner_topology":
                pub |= owns_stream(streams.JOBS_STREAM) | owns_stream(streams.DEAD_LETTER_STREAM)
                pub |= works_durable(streams.JOBS_STREAM, streams.RUNNERS_CONSUMER)
                pub |= works_durable(streams.DEAD_LETTER_STREAM, streams.DEAD_LETTER_CONSUMER)
            elif name == "ensure_dispatcher_topology":
                pub |= owns_stream(streams.JOBS_STREAM) | owns_stream(streams.DISPATCH_STREAM)
                pub |= works_durable(streams.JOBS_STREAM, streams.DISPATCHER_CONSUMER)
                pub |= works_durable(streams.DISPATCH_STREAM, streams.WEBHOOK_SENDER_CONSUMER)
                pub |= works_durable(streams.DISPATCH_STREAM, streams.DEADLINE_CONSUMER)
            elif name in ("publish", "publish_guarded") and (
                    _kw(node, "stream") is not None if name == "publish" else len(node.args) >= 3):
                # js.publish(subject, ..., stream=S) or publish_guarded(js, S, subject, ...):
                # the subject as built (a local `subject = subjects.x(...)`), or,
                # for a parameter, the stream's subjects.
                arg, stream_node = ((node.args[0], _kw(node, "stream")) if name == "publish"
                                    else (node.args[2], node.args[1]))
                stream = _stream_name(stream_node)  # type: ignore[arg-type]
                built = _assigned(scope.get(id(node)), arg.id) if isinstance(arg, ast.Name) else arg
                if built is not None:
                    pub.add(_subject(built))
                else:
                    assert stream != streams.JOBS_STREAM, f"too broad: {ast.unparse(node)}"
                    pub |= set(STREAM_SUBJECTS[stream])
            elif name == "pull_subscribe_bind":
                stream, durable = _kw(node, "stream"), _kw(node, "durable")
                if isinstance(durable, ast.Name) and hasattr(streams, durable.id):
                    pub |= works_durable(_stream_name(stream), getattr(streams, durable.id))
                else:
                    # A helper binding whichever durable it is given: those are the
                    # ones the service's ensure_*_topology makes (checked below).
                    binds_any = True
            elif name == "stream_info":
                pub.add(f"{API}.STREAM.INFO.{_stream_name(node.args[0])}")
            elif name == "consumer_info":
                # consumer_info(stream, durable): the catalog's metrics read the runners' queue.
                pub.add(f"{API}.CONSUMER.INFO.{_stream_name(node.args[0])}."
                        f"{getattr(streams, node.args[1].id)}")  # type: ignore[attr-defined]
            elif name == "subscribe" and _true(_kw(node, "ordered_consumer")):
                pub |= reads_ordered(_stream_name(_kw(node, "stream")))
            elif name == "subscribe":
                assert _kw(node, "stream") is None, ast.unparse(node)
                sub.add(_subject(node.args[0]))
            elif name in ("last_event", "get_last_msg"):
                # mochi_common.nats_conn.last_event: get_last_msg(JOBS_STREAM, subject, direct=True),
                # or through the stream leader (STREAM.MSG.GET) with consistent=True.
                stream = _stream_name(node.args[0]) if name == "get_last_msg" else streams.JOBS_STREAM
                if name == "last_event" and _true(_kw(node, "consistent")):
                    pub.add(f"{API}.STREAM.MSG.GET.{stream}")
                else:
                    pub |= direct_get_last(stream)
            elif name == "get_msg":
                assert _true(_kw(node, "direct")), ast.unparse(node)
                pub |= direct_get_seq(_stream_name(node.args[0]))
            elif name == "key_value":
                pub |= uses_kv(_bucket(node.args[0], constants))
            elif name == "KeyValueConfig":
                assert not _true(_kw(node, "direct")), "a direct KV bucket reads through DIRECT.GET"
                pub |= uses_kv(_bucket(_kw(node, "bucket"), constants))  # type: ignore[arg-type]
            elif name in ("ensure_checkpoint_bucket", "open_checkpoint_bucket"):
                pub |= uses_object_store(streams.CHECKPOINT_BUCKET)
            elif name == "ensure_preview_bucket":
                pub |= uses_object_store(streams.PREVIEW_BUCKET)
            elif name == "open_preview_bucket":
                pub |= reads_object_store(streams.PREVIEW_BUCKET)
            elif name == "add_service":
                serves = True
            elif name == "add_endpoint":
                sub.add(_subject(_kw(node, "subject")))  # type: ignore[arg-type]
            elif name in UNTAUGHT and isinstance(node.func, ast.Attribute) \
                    and ast.unparse(node.func.value).endswith("js"):
                raise AssertionError(f"{service} calls {ast.unparse(node.func)}(), which this test "
                                     "does not know the subjects of; teach it, then grant them")
    if binds_any:
        assert any(p.startswith(f"{API}.CONSUMER.MSG.NEXT.") for p in pub), \
            f"{service} binds durables by parameter but makes none; teach this test which"
    if serves:
        sub.add("$SRV.>")  # nats.micro discovery: $SRV.PING/INFO/STATS[.name[.id]]
    else:
        pub |= catalog_subjects  # a client of the catalog asks it by request
    return {"publish": pub, "subscribe": sub, "allow_responses": serves}


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


def uses_kv(bucket: str) -> set[str]:
    # js.key_value / create_key_value, then create, update, delete (publishes
    # to $KV.<bucket>.<key>) and get (a non-direct bucket: STREAM.MSG.GET).
    stream = f"KV_{bucket}"
    return {f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.CREATE.{stream}",
            f"{API}.STREAM.MSG.GET.{stream}", f"$KV.{bucket}.>"}


def uses_object_store(bucket: str) -> set[str]:
    # js.create_object_store / object_store, then put, get, delete: chunks and
    # meta under $O.<bucket>, an ordered consumer for get, a purge on replace,
    # and STREAM.NAMES, by which nats-py's get finds the stream by subject.
    stream = f"OBJ_{bucket}"
    return {*(f"{API}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", "UPDATE", "MSG.GET", "PURGE")),
            f"{API}.CONSUMER.CREATE.{stream}", f"$JS.FC.{stream}.>", f"$O.{bucket}.>", f"{API}.STREAM.NAMES"}


def reads_object_store(bucket: str) -> set[str]:
    # js.object_store, then get only: the meta by STREAM.MSG.GET, the chunks by an
    # ordered consumer (found by subject through STREAM.NAMES); no writes under $O.
    stream = f"OBJ_{bucket}"
    return {f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.MSG.GET.{stream}", f"{API}.CONSUMER.CREATE.{stream}",
            f"$JS.FC.{stream}.>", f"{API}.STREAM.NAMES"}


def reads_ordered(stream: str) -> set[str]:
    # js.subscribe(ordered_consumer=True): an unnamed consumer, flow-control replies.
    return {f"{API}.CONSUMER.CREATE.{stream}", f"$JS.FC.{stream}.>"}


def test_the_source_reading_sees_the_known_roles() -> None:
    # A guard on the reading itself, with what each service is known to do.
    api, catalog, runner = needs("api"), needs("catalog"), needs("runner")
    job = _any_job(subjects.event_subject(ANY_JOB, "submitted"))
    assert job in api["publish"] and job not in runner["publish"]
    assert {subjects.CATALOG_GET, subjects.CATALOG_LIST} <= api["publish"]  # type: ignore[operator]
    assert {subjects.CATALOG_GET, subjects.CATALOG_LIST, "$SRV.>"} <= catalog["subscribe"]  # type: ignore[operator]
    assert not any(s.startswith("mochi.jobs.") for s in catalog["publish"])  # type: ignore[union-attr]
    assert f"{API}.CONSUMER.MSG.NEXT.{streams.JOBS_STREAM}.{streams.RUNNERS_CONSUMER}" in runner["publish"]  # type: ignore[operator]
    assert _any_job(subjects.job_final(ANY_JOB)) in runner["subscribe"]  # type: ignore[operator]


@pytest.mark.parametrize("user", sorted(SOURCES))
def test_service_user_permissions_are_exactly_what_the_code_needs(user: str) -> None:
    perms = nats_users("h100x8")[user]["permissions"]
    want = needs(user)
    assert set(perms) <= {"publish", "subscribe", "allow_responses"}
    assert set(perms["publish"]) == {"allow"}, "allow-lists only: a deny list invites gaps"
    assert set(perms["subscribe"]) == {"allow"}
    have_pub, have_sub = perms["publish"]["allow"], perms["subscribe"]["allow"]
    assert len(have_pub) == len(set(have_pub)) and len(have_sub) == len(set(have_sub))
    for kind, have in (("publish", set(have_pub)), ("subscribe", set(have_sub))):
        need = want[kind]
        assert have == need, (f"{user} {kind}: accounts.conf lacks {sorted(need - have)}, "  # type: ignore[operator]
                              f"allows more than the code uses: {sorted(have - need)}")  # type: ignore[operator]
    assert perms.get("allow_responses", False) is want["allow_responses"]


def test_users_live_in_the_jetstream_account() -> None:
    users = nats_users("h100x8")
    assert set(SOURCES) | {"admin", "sys"} == set(users)
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
