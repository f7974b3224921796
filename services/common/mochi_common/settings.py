"""Typed settings read from the environment: field `foo_bar` is `MOCHI_FOO_BAR`.

All services share the `MOCHI_` prefix so one variable (MOCHI_NATS_URL) means
the same thing everywhere, and the deployment test can compare the manifests'
variables with exactly the fields each service reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import msgspec

PREFIX = "MOCHI_"
T = TypeVar("T", bound=msgspec.Struct)


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
