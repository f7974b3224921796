"""Keeps the unit tier pure: a test here may not ask for the fixtures of
tests/conftest.py that start servers, nor start a process of its own."""

from __future__ import annotations

import subprocess

import pytest

# The fixtures in tests/conftest.py that start nats-server, services or build a model.
_STARTING = frozenset({"system", "stack", "tiny_model", "clustered"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here) and _STARTING & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} is a unit test but asks for a fixture that starts servers")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a unit test started a process: {args[:1]!r}")

    # Where every Popen (subprocess.run, asyncio's) starts its child; failing there unwinds cleanly.
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
