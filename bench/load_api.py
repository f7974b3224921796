"""Load generator for the API on loopback: a constant arrival rate of mixed
submits, gets and lists, for a fixed time.

Latency is measured from each request's scheduled start, so a stalled server
cannot hide its queueing (no coordinated omission). Starts its own stack
(nats-server, catalog, API; no runner: the jobs stay queued).

    .venv/bin/python bench/load_api.py --rate 500 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mochi_cli.processes import Stack, free_port, spawn_service, start_nats, wait_for_http


def event_loop_run(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)

KEEP_ALIVE_REUSE_S = 3.0
MIX = (("submit", 0.1), ("get", 0.6), ("list", 0.3))
BODY = {"prompt": "load test", "width": 64, "height": 64, "num_frames": 7, "num_inference_steps": 2}


def start_stack(root: Path) -> tuple[Stack, str]:
    stack = Stack()
    nats_port, api_port = free_port(), free_port()
    env = {"MOCHI_NATS_URL": f"nats://127.0.0.1:{nats_port}", "MOCHI_STORE_URL": f"file://{root / 'videos'}",
           "MOCHI_LOG_LEVEL": "warning"}
    stack.add(start_nats(root / "nats", nats_port, root / "logs"))
    stack.add(spawn_service("catalog", {**env, "MOCHI_DB_PATH": str(root / "catalog.db")}, root / "logs"))
    api = stack.add(spawn_service("api", {
        **env, "MOCHI_PORT": str(api_port), "MOCHI_ALLOW_ANONYMOUS": "true",
        # The load is the point here: no per-key limits in the way.
        "MOCHI_SUBMITS_PER_MINUTE": "100000000", "MOCHI_MAX_QUEUED_PER_OWNER": "0"}, root / "logs"))
    url = f"http://127.0.0.1:{api_port}"
    wait_for_http(f"{url}/readyz", proc=api.popen)
    time.sleep(1.0)  # the catalog registers its endpoints once caught up
    return stack, url


class RawHttp:
    """A minimal HTTP/1.1 client over keep-alive loopback connections.

    Hand-written because httpx costs about as much CPU per request as the API
    it measures, and on two shared cores the generator's own CPU time shows up
    as the server's latency. Requests are pre-encoded bytes; a response is read
    by its Content-Length (every API answer measured here has one)."""

    def __init__(self, url: str):
        host_port = url.split("://", 1)[1]
        self.host, port = host_port.split(":")
        self.port = int(port)
        # (reader, writer, last used); the newest idle connection is reused first.
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        now = time.perf_counter()
        # uvicorn closes a keep-alive connection after 5 idle seconds; one
        # reused just then fails before any response byte. Like a browser's
        # pool, never reuse a connection idle for longer than a safe margin.
        while self.idle and now - self.idle[0][2] > KEEP_ALIVE_REUSE_S:
            self.idle.pop(0)[1].close()
        if self.idle:
            reader, writer, _ = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer, time.perf_counter()))
        return status, body

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


async def run_load(url: str, rate: float, seconds: float, seed_jobs: int) -> dict[str, list]:
    results: dict[str, list] = defaultdict(list)  # name -> [(latency_s, ok)]
    http = RawHttp(url)
    submit = http.request("POST", "/v1/jobs", json.dumps(BODY).encode())
    listing = http.request("GET", "/v1/jobs?limit=20")
    ids = []
    for _ in range(seed_jobs):
        status, body = await http.send(submit)
        ids.append(json.loads(body)["id"])
    gets = [http.request("GET", f"/v1/jobs/{job_id}") for job_id in ids]
    rng = random.Random(7)
    names = [n for n, _ in MIX]
    weights = [w for _, w in MIX]

    async def one(name: str, scheduled: float) -> None:
        status = 0
        try:
            if name == "submit":
                status, body = await http.send(submit)
                ok = status == 202
                if ok:
                    gets.append(http.request("GET", f"/v1/jobs/{json.loads(body)['id']}"))
            elif name == "get":
                status, _ = await http.send(rng.choice(gets))
                ok = status == 200
            else:
                status, _ = await http.send(listing)
                ok = status == 200
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            ok = False
            results["_errors"].append((0.0, f"{name}: {type(err).__name__}: {err}"))
        if not ok and status:
            results["_errors"].append((0.0, f"{name}: HTTP {status}"))
        results[name].append((time.perf_counter() - scheduled, ok))

    start = time.perf_counter()
    tasks = []
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(rng.choices(names, weights)[0], scheduled)))
    await asyncio.gather(*tasks)
    results["_elapsed"] = [(time.perf_counter() - start, True)]
    http.close()
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def report(results: dict[str, list], rate: float) -> None:
    elapsed = results.pop("_elapsed")[0][0]
    failures = results.pop("_errors", [])
    print(f"\n{rate:.0f} req/s offered for {elapsed:.1f} s on loopback (constant arrival rate)")
    print(f"{'endpoint':<8} {'count':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, rows in sorted(results.items()):
        lat = [r[0] * 1000 for r in rows]
        errors = sum(1 for r in rows if not r[1])
        print(f"{name:<8} {len(rows):>7} {len(rows) / elapsed:>8.1f} {pct(lat, 0.5):>8.2f} "
              f"{pct(lat, 0.99):>8.2f} {max(lat):>8.2f} {errors:>7}")
    for _, what in failures[:10]:
        print(f"  error: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed-jobs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mochi-load-") as tmp:
        stack, url = start_stack(Path(tmp))
        try:
            # uvloop: the generator must cost less CPU than the server it measures.
            report(event_loop_run(run_load(url, args.rate, args.seconds, args.seed_jobs)), args.rate)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
