"""API keys: bearer tokens checked against hashes read from a file.

The file (a Kubernetes Secret mounted as a file, say) holds one key a line:
    <owner> <sha256 of the token, hex> [admin]
Tokens are long random strings (`mochi keys new`), so a plain SHA-256 is
enough to keep them out of the file; a slow password hash would cost every
request milliseconds and protect nothing more."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from litestar.connection import ASGIConnection

from mochi_api.bounds import MAX_AUTHORIZATION_CHARS, MAX_TOKEN_CHARS
from mochi_api.context import Caller
from mochi_api.problems import invalid_fields
from mochi_common.settings import SettingsError
from mochi_contracts.jobs import FieldError

ANONYMOUS = Caller(owner="anonymous", admin=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key(owner: str, admin: bool = False) -> tuple[str, str]:
    """A fresh token and the line for the keys file."""
    token = "msk_" + secrets.token_urlsafe(32)
    return token, f"{owner} {hash_token(token)}{' admin' if admin else ''}"


class KeyFileError(SystemExit):
    pass


@dataclass(frozen=True)
class ApiKeys:
    by_hash: dict[str, Caller]
    allow_anonymous: bool

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
        by_hash: dict[str, Caller] = {}
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) not in (2, 3) or len(parts[1]) != 64 or (len(parts) == 3 and parts[2] != "admin"):
                raise KeyFileError(f"{path}:{number}: expected '<owner> <sha256 hex> [admin]'")
            by_hash[parts[1].lower()] = Caller(owner=parts[0], admin=len(parts) == 3)
        return cls(by_hash, allow_anonymous)

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
