"""A persistent thread per device, so two devices run their forward passes at
the same time from one process.

Why threads and not processes: the runner loop, cancel-by-raising from the step
callback, heartbeats and OOM handling stay exactly as they are for one GPU;
the only traffic between devices is a device-to-device copy of the inputs and
of one noise prediction per step. CUDA kernels and most CPU ops release the
GIL, so two threads keep two devices busy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Make `device` current in this thread (CUDA keeps a current device per thread)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


class DeviceWorker:
    """One thread that runs every call for one device, in order."""

    def __init__(self, device: torch.device):
        self.device = device
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mochi-{device}")

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        # Grad mode is per thread: without this the worker would record
        # autograd graphs and hold every activation of the forward pass.
        with torch.inference_mode(), on_device(self.device):
            return fn(*args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def gather(futures: Sequence[Future[T]]) -> list[T]:
    """Wait for every call, then raise the first error: leaving one device
    still running while the caller moves on would race with the next step."""
    errors: list[BaseException] = []
    results: list[T] = []
    for fut in futures:
        try:
            results.append(fut.result())
        except BaseException as err:  # noqa: BLE001 - re-raised below, after all finished
            errors.append(err)
    if errors:
        raise errors[0]
    return results
