"""API keys: bearer tokens checked against hashes read from a file.

The file (a Kubernetes Secret mounted as a file, say) holds one key a line:
    <owner> <sha256 of the token, hex> [admin] [weight=N] [priorities=P,...] [max_running=N]
The settings after the hash are the owner's, for fair-share scheduling
(docs/scheduling.md): its share `weight` (default 1), the `priorities` its jobs
may ask for (default normal,low; an admin key may use every one) and the most
jobs it may have running at once across all runners (default: the scheduler's
MOCHI_MAX_RUNNING_PER_OWNER). An owner with several keys states each setting on
one of its lines or the same on all of them; the scheduler reads this file too.
Tokens are long random strings (`mochi keys new`), so a plain SHA-256 is
enough to keep them out of the file; a slow password hash would cost every
request milliseconds and protect nothing more."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

from litestar.connection import ASGIConnection

from mochi_api.bounds import MAX_AUTHORIZATION_CHARS, MAX_TOKEN_CHARS
from mochi_api.context import Caller
from mochi_api.problems import invalid_fields
from mochi_common.settings import SettingsError
from mochi_contracts.jobs import PRIORITIES, FieldError, JobRequest

ANONYMOUS = Caller(owner="anonymous", admin=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key(owner: str, admin: bool = False) -> tuple[str, str]:
    """A fresh token and the line for the keys file."""
    token = "msk_" + secrets.token_urlsafe(32)
    return token, f"{owner} {hash_token(token)}{' admin' if admin else ''}"


class KeyFileError(SystemExit):
    pass


ALL_PRIORITIES = frozenset(PRIORITIES)
# A key not granted `high` cannot jump its owner's queue past the jobs it
# already has; asking for less than normal is always allowed.
DEFAULT_PRIORITIES = frozenset({"normal", "low"})
MAX_WEIGHT = 1000.0


@dataclass(frozen=True)
class OwnerPolicy:
    """An owner's scheduling settings from the keys file (None: not stated)."""

    weight: float | None = None
    priorities: frozenset[str] | None = None
    max_running: int | None = None
    admin: bool = False

    @property
    def share_weight(self) -> float:
        return 1.0 if self.weight is None else self.weight

    @property
    def allowed_priorities(self) -> frozenset[str]:
        if self.priorities is not None:
            return self.priorities
        return ALL_PRIORITIES if self.admin else DEFAULT_PRIORITIES


class StatedPolicy(TypedDict, total=False):
    """The OwnerPolicy fields one line of the keys file states."""

    weight: float
    priorities: frozenset[str]
    max_running: int


def _setting(where: str, text: str) -> StatedPolicy:
    name, sep, value = text.partition("=")
    if not sep or not value:
        raise KeyFileError(f"{where}: expected name=value after the hash, not {text!r}")
    try:
        if name == "weight":
            weight = float(value)
            if not 0 < weight <= MAX_WEIGHT:
                raise ValueError
            return {"weight": weight}
        if name == "max_running":
            most = int(value)
            if most < 1:
                raise ValueError
            return {"max_running": most}
        if name == "priorities":
            chosen = frozenset(p.strip() for p in value.split(","))
            if not chosen or not chosen <= ALL_PRIORITIES:
                raise ValueError
            return {"priorities": chosen}
    except ValueError:
        raise KeyFileError(f"{where}: bad {name}={value!r} (weight: a number in (0, {MAX_WEIGHT:g}]; "
                           f"max_running: an integer >= 1; priorities: some of {','.join(PRIORITIES)})") from None
    raise KeyFileError(f"{where}: unknown setting {name!r} (weight, priorities, max_running)")


def _merge(where: str, owner: str, have: OwnerPolicy, stated: StatedPolicy, admin: bool) -> OwnerPolicy:
    for name, value in stated.items():
        old = getattr(have, name)
        if old is not None and old != value:
            raise KeyFileError(f"{where}: {name} of {owner} differs from an earlier line of the same owner")
    return replace(have, admin=have.admin or admin, **stated)


def parse_keys_file(path: str) -> tuple[dict[str, Caller], dict[str, OwnerPolicy]]:
    """(token hash -> caller, owner -> policy); KeyFileError names the line at fault."""
    by_hash: dict[str, Caller] = {}
    policies: dict[str, OwnerPolicy] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        parts = line.split()
        admin = len(parts) >= 3 and parts[2] == "admin"
        settings = parts[3:] if admin else parts[2:]
        if len(parts) < 2 or len(parts[1]) != 64 or any("=" not in s for s in settings):
            raise KeyFileError(f"{where}: expected '<owner> <sha256 hex> [admin] [weight=N] "
                               "[priorities=high,normal,low] [max_running=N]'")
        stated: StatedPolicy = {}
        for text in settings:
            stated.update(_setting(where, text))
        owner = parts[0]
        by_hash[parts[1].lower()] = Caller(owner=owner, admin=admin)
        policies[owner] = _merge(where, owner, policies.get(owner, OwnerPolicy()), stated, admin)
    return by_hash, policies


def read_owner_policies(path: str) -> dict[str, OwnerPolicy]:
    """The scheduler's view of the keys file: owner -> policy ({} without a file)."""
    return parse_keys_file(path)[1] if path else {}


@dataclass(frozen=True)
class ApiKeys:
    by_hash: dict[str, Caller]
    allow_anonymous: bool
    policies: dict[str, OwnerPolicy] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str, allow_anonymous: bool) -> ApiKeys:
        if path and allow_anonymous:
            # Both would make every caller without a key the anonymous admin:
            # the keys would guard nothing.
            raise SettingsError(f"MOCHI_ALLOW_ANONYMOUS=true and MOCHI_API_KEYS_FILE={path} exclude each "
                                "other: anonymous callers would be admins beside the keys. Unset "
                                "MOCHI_ALLOW_ANONYMOUS (or set it to false) to require keys, or unset "
                                "MOCHI_API_KEYS_FILE for a local, single-user stack without keys")
        if not path:
            if not allow_anonymous:
                raise KeyFileError("no API keys: set MOCHI_API_KEYS_FILE, or MOCHI_ALLOW_ANONYMOUS=true "
                                   "to run without keys (for a local, single-user setup only)")
            return cls({}, True)
        by_hash, policies = parse_keys_file(path)
        return cls(by_hash, allow_anonymous, policies)

    def priority_errors(self, caller: Caller, request: JobRequest) -> list[FieldError]:
        """The request's priority if the caller's owner may not use it (the
        submit route answers 422 naming the field; the scheduler also never
        ranks a job above what its owner may use)."""
        if caller is ANONYMOUS:
            return []
        allowed = self.policies.get(caller.owner, OwnerPolicy(admin=caller.admin)).allowed_priorities
        if request.priority in allowed:
            return []
        return [FieldError("priority", f"this key may use {', '.join(p for p in PRIORITIES if p in allowed)}")]

    def token_of(self, connection: ASGIConnection) -> str | None:
        """The bearer token sent, or None when none is; 400 for one longer than any key."""
        header = connection.headers.get("authorization", "")
        if len(header) > MAX_AUTHORIZATION_CHARS:
            raise _too_long("Authorization", MAX_AUTHORIZATION_CHARS)
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        # EventSource cannot set headers: event streams also take the key as a query parameter.
        if connection.scope.get("path", "").endswith("events"):
            token = connection.query_params.get("api_key")
            if token is not None and len(token) > MAX_TOKEN_CHARS:
                raise _too_long("api_key", MAX_TOKEN_CHARS)
            return token
        return None

    def known(self, token: str) -> Caller | None:
        return self.by_hash.get(hash_token(token))

    def caller_for(self, connection: ASGIConnection) -> Caller | None:
        """The caller, or None when the request must be refused."""
        token = self.token_of(connection)
        if token is None:
            return ANONYMOUS if self.allow_anonymous else None
        return self.known(token)


def _too_long(field: str, most: int) -> Exception:
    return invalid_fields([FieldError(field, f"at most {most} characters; no key is longer")], 400)
