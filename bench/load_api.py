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
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from mochi_cli.processes import Stack, free_port, spawn_service, start_nats, wait_for_http


def event_loop_run(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)

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


async def run_load(url: str, rate: float, seconds: float, seed_jobs: int) -> dict[str, list]:
    results: dict[str, list] = defaultdict(list)  # name -> [(latency_s, ok)]
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as http:
        ids = [(await http.post("/v1/jobs", json=BODY)).json()["id"] for _ in range(seed_jobs)]
        rng = random.Random(7)
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]

        async def one(name: str, scheduled: float) -> None:
            try:
                if name == "submit":
                    resp = await http.post("/v1/jobs", json=BODY)
                    ok = resp.status_code == 202
                    if ok:
                        ids.append(resp.json()["id"])
                elif name == "get":
                    resp = await http.get(f"/v1/jobs/{rng.choice(ids)}")
                    ok = resp.status_code == 200
                else:
                    resp = await http.get("/v1/jobs", params={"limit": 20})
                    ok = resp.status_code == 200
            except httpx.HTTPError:
                ok = False
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
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def report(results: dict[str, list], rate: float) -> None:
    elapsed = results.pop("_elapsed")[0][0]
    print(f"\n{rate:.0f} req/s offered for {elapsed:.1f} s on loopback (constant arrival rate)")
    print(f"{'endpoint':<8} {'count':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, rows in sorted(results.items()):
        lat = [r[0] * 1000 for r in rows]
        errors = sum(1 for r in rows if not r[1])
        print(f"{name:<8} {len(rows):>7} {len(rows) / elapsed:>8.1f} {pct(lat, 0.5):>8.2f} "
              f"{pct(lat, 0.99):>8.2f} {max(lat):>8.2f} {errors:>7}")


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
