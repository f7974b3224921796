"""Idempotency-Key on submit, across API replicas and past JetStream's
duplicate window: a KV `create` claims the key for one job id for a day.

The claim stores the job id, the body's hash and the seed drawn for it, so a
retry after an API crash between the claim and the publish re-publishes the
same job (same id, same seed) instead of losing it or making a second one."""

from __future__ import annotations

import hashlib

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from mochi_contracts.jobs import JobRequest

BUCKET = "mochi_idempotency"


class Claim(msgspec.Struct, frozen=True):
    job_id: str
    body_sha256: str
    seed: int


class KeyReused(Exception):
    """The key was used before with a different body."""


def body_hash(req: JobRequest) -> str:
    return hashlib.sha256(msgspec.json.encode(req)).hexdigest()


def _kv_key(owner: str, key: str) -> str:
    # KV keys allow few characters; the header allows many, and owners must not collide.
    return hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()


async def open_bucket(js: JetStreamContext, ttl_s: float, replicas: int) -> KeyValue:
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(
            bucket=BUCKET, description="Idempotency-Key claims of submitted jobs",
            history=1, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas))


async def claim(kv: KeyValue, owner: str, key: str, wanted: Claim) -> tuple[Claim, bool]:
    """(the claim in force, whether this call made it)."""
    kv_key = _kv_key(owner, key)
    try:
        await kv.create(kv_key, msgspec.json.encode(wanted))
        return wanted, True
    except KeyWrongLastSequenceError:
        entry = await kv.get(kv_key)
        held = msgspec.json.decode(entry.value or b"", type=Claim)
        if held.body_sha256 != wanted.body_sha256:
            raise KeyReused(key) from None
        return held, False


async def release(kv: KeyValue, owner: str, key: str) -> None:
    """Forget a claim whose job was refused before it was published."""
    await kv.delete(_kv_key(owner, key))
