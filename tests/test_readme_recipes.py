"""The README's `nats` recipes name exactly what contracts/ defines, and the
request bodies it shows work against a live catalog."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path

import msgspec
import nats

from conftest import SMALL
from mochi_contracts import catalog, streams, subjects
from mochi_contracts.events import FINAL_TYPES

README = Path(__file__).resolve().parents[1] / "README.md"
SAMPLE_ID = "0123456789abcdef0123456789abcdef"


def recipes() -> list[list[str]]:
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln.replace("<id>", SAMPLE_ID)) for ln in lines if ln.startswith("nats ")]


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


KNOWN_SUBJECTS = {subjects.job_events(SAMPLE_ID), subjects.ALL_JOB_EVENTS, subjects.CATALOG_GET,
                  subjects.CATALOG_LIST, *(subjects.event_subject(SAMPLE_ID, t) for t in
                                           ("submitted", "started", "progress", "cancel_requested"))}


def test_recipes_name_streams_consumers_and_subjects_from_contracts():
    cmds = recipes()
    assert len(cmds) >= 10
    stream_names = {streams.JOBS_STREAM, streams.DEAD_LETTER_STREAM, streams.RELEASE_STREAM,
                    streams.RELEASE_DEAD_LETTER_STREAM}
    buckets = {streams.SCHEDULER_LEASE_BUCKET: streams.SCHEDULER_LEASE_KEY,
               streams.SCHEDULER_QUEUE_BUCKET: streams.SCHEDULER_QUEUE_KEY}
    for cmd in cmds:
        for tok in cmd:
            if re.fullmatch(r"MOCHI_[A-Z_]+", tok):
                assert tok in stream_names, cmd
            if tok.startswith(subjects.SCHED_PREFIX + "."):
                assert tok == subjects.released(SAMPLE_ID), (tok, cmd)
            elif tok.startswith("mochi.") and not tok.startswith(subjects.CATALOG_PREFIX):
                finals = [subjects.event_subject(SAMPLE_ID, t) for t in sorted(FINAL_TYPES)]
                assert tok in KNOWN_SUBJECTS or any(matches(tok, f) for f in finals), (tok, cmd)
                assert matches(subjects.ALL_JOB_EVENTS, tok.replace("*", "x").replace(">", "x")), tok
        if cmd[1:3] == ["consumer", "info"]:
            assert cmd[3:5] in ([streams.JOBS_STREAM, streams.RUNNERS_CONSUMER],
                                [streams.RELEASE_STREAM, streams.RELEASED_CONSUMER]), cmd
        if cmd[1] == "kv":
            assert cmd[3] in buckets and cmd[4:] in ([], [buckets[cmd[3]]]), cmd
        if cmd[1:3] == ["micro", "info"]:
            assert cmd[3] == subjects.CATALOG_SERVICE
        if cmd[1] == "req":
            assert cmd[2] in (subjects.CATALOG_GET, subjects.CATALOG_LIST)
            query_type = catalog.GetJob if cmd[2] == subjects.CATALOG_GET else catalog.ListJobs
            msgspec.json.decode(cmd[3], type=query_type)


def test_readme_requests_work_against_the_catalog(stack):
    client = stack.client()
    job = client.submit("a cat walks on the grass", **SMALL)
    client.wait(job.id, timeout=120)
    reqs = [c for c in recipes() if c[1] == "req"]

    async def ask():
        nc = await nats.connect(stack.nats_url)
        replies = []
        for cmd in reqs:
            body = cmd[3].replace(SAMPLE_ID, job.id)
            replies.append((cmd[2], (await nc.request(cmd[2], body.encode(), timeout=5)).data))
        await nc.close()
        return replies

    for subject, data in asyncio.run(ask()):
        if subject == subjects.CATALOG_GET:
            reply = msgspec.json.decode(data, type=catalog.GetJobReply)
            assert reply.job is not None and reply.job.id == job.id
        else:
            msgspec.json.decode(data, type=catalog.JobPage)
