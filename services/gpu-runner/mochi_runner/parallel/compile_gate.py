"""Keeps torch.compile's tracing away from models running in other threads.

Tracing (dynamo/AOTAutograd) patches `nn.Module.__call__` for the whole
process while it runs. A module called meanwhile from another thread goes
through the patch and fails ("Detected that you are using FX to symbolically
trace a dynamo-optimized function"; seen on the GPU machine when two device
threads compiled at once). Compilation happens on the first call of a model
with a new input signature, so such calls take the gate exclusively and all
other model calls take it shared: they run together, never beside a trace."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class CompileGate:
    """A readers-writer lock plus the set of signatures already run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._seen: set[Hashable] = set()

    @contextlib.contextmanager
    def call(self, key: Hashable) -> Iterator[None]:
        """Run one model call; exclusive if `key` (model + input signature) is new."""
        with self._cond:
            exclusive = key not in self._seen
        if exclusive:
            with self._exclusive():
                yield
                self._seen.add(key)
        else:
            with self._shared():
                yield

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """A call that never compiles (the VAE, T5): runs beside others, never beside a trace."""
        with self._shared():
            yield

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        with self._cond:
            # Writers first: a compile waits only for calls already running.
            self._cond.wait_for(lambda: not self._writer and not self._waiting_writers)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# One per process: tracing is process-wide.
GATE = CompileGate()
