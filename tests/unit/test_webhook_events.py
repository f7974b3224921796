"""Which events a job's webhook may hear of, and which it hears of by
default: the default is the job's endings, and every event a webhook may ask
for is one the dispatcher reads from the job stream."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest

from mochi_contracts import subjects
from mochi_contracts.events import FINAL_TYPES, JobEvent, event_type
from mochi_contracts.jobs import DEFAULT_WEBHOOK_EVENTS, JobRequest, WebhookEvent

from .events import JOB

EVENT_TYPES = frozenset(event_type(cls) for cls in get_args(JobEvent))
WEBHOOK_EVENTS = frozenset(get_args(WebhookEvent))


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a last `>` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or token not in ("*", have[i]):
            return False
    return len(want) == len(have)


def test_the_matcher_is_nats_matching():
    assert _matches("a.*.c", "a.b.c") and not _matches("a.*.c", "a.b.d") and not _matches("a.*", "a.b.c")
    assert _matches("a.>", "a.b.c") and not _matches("a.>", "a")


def test_the_default_webhook_events_are_the_endings():
    assert frozenset(DEFAULT_WEBHOOK_EVENTS) == FINAL_TYPES
    assert len(DEFAULT_WEBHOOK_EVENTS) == len(FINAL_TYPES)  # no ending twice


def test_a_webhook_may_ask_only_for_events_the_dispatcher_reads():
    assert WEBHOOK_EVENTS <= EVENT_TYPES
    assert FINAL_TYPES <= WEBHOOK_EVENTS
    for kind in WEBHOOK_EVENTS:
        subject = subjects.event_subject(JOB, kind)
        assert any(_matches(source, subject) for source in subjects.DISPATCHER_SOURCES), kind


def test_without_a_filter_a_webhook_hears_of_exactly_the_endings():
    request = JobRequest(prompt="a cat", webhook_url="https://example.com/hook")
    assert {kind for kind in EVENT_TYPES if request.webhook_wants(kind)} == FINAL_TYPES
    assert not any(JobRequest(prompt="a cat").webhook_wants(kind) for kind in EVENT_TYPES)


def test_a_filter_names_only_webhook_events_and_narrows_to_them():
    request = msgspec.convert({"prompt": "a cat", "webhook_url": "https://example.com/hook",
                               "webhook_events": ["progress", "failed"]}, JobRequest)
    assert {kind for kind in EVENT_TYPES if request.webhook_wants(kind)} == {"progress", "failed"}
    for kind in EVENT_TYPES - WEBHOOK_EVENTS:
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"prompt": "a cat", "webhook_events": [kind]}, JobRequest)
