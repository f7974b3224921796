"""Typed settings read from the environment: field `foo_bar` is `MOCHI_FOO_BAR`.

All services share the `MOCHI_` prefix so one variable (MOCHI_NATS_URL) means
the same thing everywhere, and the deployment test can compare the manifests'
variables with exactly the fields each service reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from mochi_contracts.streams import JetStreamSettings

PREFIX = "MOCHI_"
T = TypeVar("T", bound=msgspec.Struct)


class ServiceSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What every service reads, defined once: each service's settings extend it."""

    nats_url: str = "nats://127.0.0.1:4222"
    # Replicas of every stream and consumer a service creates (3 in production).
    jetstream_replicas: int = 1
    log_level: str = "info"
    # /healthz, /readyz and /metrics of the services without an HTTP API of their
    # own (the API answers them on its port); 0 turns the endpoint off.
    health_host: str = "0.0.0.0"
    health_port: int = 0

    def jetstream(self, **knobs: float) -> JetStreamSettings:
        """The JetStream settings this service creates its streams with."""
        return JetStreamSettings(replicas=self.jetstream_replicas, **knobs)  # type: ignore[arg-type]  # knobs are JetStreamSettings' own float and int fields


class SettingsError(SystemExit):
    """A bad setting stops the service at start, naming the variable."""


def env_name(field: str) -> str:
    return PREFIX + field.upper()


def env_names(cls: type[msgspec.Struct]) -> set[str]:
    return {env_name(f.name) for f in msgspec.structs.fields(cls)}


def load_settings(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field in msgspec.structs.fields(cls):
        value = environ.get(env_name(field.name))
        if value is None:
            continue
        # Lists are comma-separated in the environment.
        if "list" in str(field.type) and isinstance(value, str):
            raw[field.name] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            raw[field.name] = value
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as err:
        raise SettingsError(f"bad setting for {cls.__name__}: {err} "
                            f"(variables are {PREFIX}<FIELD>)") from None
