"""API keys, owner isolation, the submission rate limit and the queued-jobs cap."""

from __future__ import annotations

import asyncio
import math
import secrets
import subprocess
import time

import httpx
import pytest

from conftest import SMALL
from mochi_api.api_keys import new_key
from mochi_api.caller import SweptMemoryStore
from mochi_cli.processes import spawn_service
from sse_client import read_sse
from test_bad_requests import assert_problem
from test_metrics import Scrape

ALICE, ALICE_LINE = new_key("alice")
ALICE_AGAIN, ALICE_AGAIN_LINE = new_key("alice")  # a second key of the same owner
BOB, BOB_LINE = new_key("bob")
ADMIN, ADMIN_LINE = new_key("ops", admin=True)


@pytest.fixture
def keyed(system):
    keys = system.root / "keys.txt"
    keys.write_text(f"# owner sha256 [admin]\n{ALICE_LINE}\n{ALICE_AGAIN_LINE}\n{BOB_LINE}\n{ADMIN_LINE}\n")
    system.start_catalog()
    system.start_api(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="false",
                     MOCHI_SUBMITS_PER_MINUTE="5", MOCHI_MAX_QUEUED_PER_OWNER="3")
    return system


def as_(key: str | None, system) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=system.api_url, headers=headers, timeout=30)


def test_without_a_valid_key_every_job_route_is_401(keyed):
    for key in (None, "msk_not-a-key"):
        with as_(key, keyed) as c:
            for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/" + "0" * 32),
                                 ("GET", "/v1/events")):
                resp = c.request(method, path, json={"prompt": "x"} if method == "POST" else None)
                assert resp.status_code == 401, (method, path)
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert resp.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{keyed.api_url}/healthz").status_code == 200


def test_owners_see_only_their_own_jobs_and_admin_sees_all(keyed):
    alice, bob, admin = as_(ALICE, keyed), as_(BOB, keyed), as_(ADMIN, keyed)
    job = alice.post("/v1/jobs", json={"prompt": "a cat", **SMALL}).json()
    jid = job["id"]
    assert alice.get(f"/v1/jobs/{jid}").status_code == 200
    # Someone else's job does not exist for bob: 404 on every route, never 403.
    for method, path in (("GET", f"/v1/jobs/{jid}"), ("GET", f"/v1/jobs/{jid}/video"),
                         ("POST", f"/v1/jobs/{jid}/cancel"), ("GET", f"/v1/jobs/{jid}/events")):
        assert bob.request(method, path).status_code == 404, path
    assert [j["id"] for j in bob.get("/v1/jobs").json()["jobs"]] == []
    assert jid in [j["id"] for j in admin.get("/v1/jobs").json()["jobs"]]
    assert admin.get(f"/v1/jobs/{jid}").status_code == 200
    # Event streams take the key as a query parameter too (EventSource cannot send headers).
    events = read_sse(f"{keyed.api_url}/v1/jobs/{jid}/events?api_key={ALICE}", timeout=5)
    assert next(events).event == "submitted"
    assert httpx.get(f"{keyed.api_url}/v1/jobs/{jid}/events?api_key={BOB}").status_code == 404
    assert bob.post(f"/v1/jobs/{jid}/cancel").status_code == 404
    assert alice.post(f"/v1/jobs/{jid}/cancel").json()["status"] == "cancelled"


def test_queued_jobs_are_capped_per_owner(keyed):
    alice, bob = as_(ALICE, keyed), as_(BOB, keyed)
    for _ in range(3):
        assert alice.post("/v1/jobs", json={"prompt": "a cat", **SMALL}).status_code == 202
    import time
    time.sleep(1.0)  # the catalog counts, a moment behind the stream
    refused = alice.post("/v1/jobs", json={"prompt": "a cat", **SMALL})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    assert refused.json()["type"].endswith("too-many-queued")
    assert bob.post("/v1/jobs", json={"prompt": "a dog", **SMALL}).status_code == 202


def test_submissions_are_rate_limited_per_key(keyed):
    bob, admin = as_(BOB, keyed), as_(ADMIN, keyed)
    codes = [bob.post("/v1/jobs", json={"prompt": "x" * 3000}).status_code for _ in range(6)]
    assert codes[:5] == [422] * 5 and codes[5] == 429
    limited = bob.post("/v1/jobs", json={"prompt": "x"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert limited.headers["content-type"].startswith("application/problem+json")
    # Another key has its own budget, and reads are not limited.
    assert admin.post("/v1/jobs", json={"prompt": "x" * 3000}).status_code == 422
    assert bob.get("/v1/jobs").status_code == 200


def test_anonymous_beside_a_keys_file_is_refused_at_start(system):
    keys = system.root / "keys.txt"
    keys.write_text(f"{ALICE_LINE}\n")
    proc = spawn_service("api", system.env(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="true"),
                         system.logs, name="api-both")
    try:
        code = proc.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.stop()
        raise AssertionError("the API started with anonymous callers beside API keys") from None
    assert code != 0
    assert "MOCHI_ALLOW_ANONYMOUS=true and MOCHI_API_KEYS_FILE" in proc.log(), proc.log()[-2000:]


def test_a_keys_limit_holds_whatever_the_token_spelling(keyed):
    bad = {"prompt": "x" * 3000}  # refused (422) after the limiter has counted it
    spellings = [f"Bearer {ALICE}", f"bearer {ALICE}", f"BEARER {ALICE}", f"Bearer   {ALICE}",
                 f"Bearer {ALICE_AGAIN}"]
    codes = [httpx.post(f"{keyed.api_url}/v1/jobs", json=bad, headers={"authorization": a}).status_code
             for a in spellings]
    assert codes == [422] * 5
    # The owner's budget is spent, whichever of its keys and however written.
    for auth in (f"bEaReR {ALICE}", f"Bearer {ALICE_AGAIN}"):
        resp = httpx.post(f"{keyed.api_url}/v1/jobs", json=bad, headers={"authorization": auth})
        assert resp.status_code == 429, auth
    with as_(BOB, keyed) as bob:
        assert bob.post("/v1/jobs", json=bad).status_code == 422


def test_unknown_tokens_do_not_grow_the_limiter(keyed):
    """10,000 submissions with made-up tokens: one limiter entry (the client's
    address), not one per token; they spend no key's budget."""
    began = time.monotonic()
    with httpx.Client(base_url=keyed.api_url, timeout=30) as c:
        codes: dict[int, int] = {}
        for _ in range(10_000):
            resp = c.post("/v1/jobs", json={"prompt": "x"},
                          headers={"authorization": f"Bearer msk_{secrets.token_urlsafe(32)}"})
            codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
    # 5 a minute from this address reach the key check, in each minute window
    # the loop touched (a loaded machine takes longer); the rest are limited.
    windows = math.ceil((time.monotonic() - began) / 60) + 1
    assert set(codes) == {401, 429} and codes[401] <= 5 * windows, (codes, windows)
    entries = Scrape(keyed.api_url).get("mochi_api_rate_limit_entries")
    assert entries == 1, entries
    with as_(ALICE, keyed) as alice:
        assert alice.post("/v1/jobs", json={"prompt": "a cat", **SMALL}).status_code == 202
    assert Scrape(keyed.api_url).get("mochi_api_rate_limit_entries") == entries + 1


def test_limiter_store_drops_expired_entries():
    async def fill_then_sweep() -> int:
        store = SweptMemoryStore(sweep_every_s=0.5)
        for i in range(1000):
            await store.set(f"addr:{i}", b"{}", expires_in=1)
        await asyncio.sleep(1.1)
        await store.set("owner:alice", b"{}", expires_in=60)
        return len(store._store)

    assert asyncio.run(fill_then_sweep()) == 1


def test_a_keyed_api_does_not_check_host(keyed):
    # Without the anonymous stack a page has no key to send: Host names any proxy in front.
    with as_(ALICE, keyed) as alice:
        assert alice.get("/v1/jobs", headers={"host": "mochi.example.com"}).status_code == 200
        # A Host that is no authority is still a 400 problem, not a 500 from parsing its port.
        for host in ("mochi.example.com:abc", "mochi.example.com:99999999999", "::1"):
            assert_problem(alice.get("/v1/jobs", headers={"host": host}), 400)


def test_a_key_submits_only_the_priorities_its_owner_may_use(system):
    carol, carol_line = new_key("carol")
    dave, dave_line = new_key("dave")
    keys = system.root / "keys.txt"
    keys.write_text(f"{carol_line}\n{dave_line} priorities=high,normal\n")
    system.start_catalog()
    system.start_api(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="false")
    refused = as_(carol, system).post("/v1/jobs", json={"prompt": "a cat", **SMALL, "priority": "high"})
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["priority"]
    assert as_(carol, system).post("/v1/jobs", json={"prompt": "a cat", **SMALL, "priority": "low"}).status_code == 202
    assert as_(dave, system).post("/v1/jobs", json={"prompt": "a cat", **SMALL, "priority": "high"}).status_code == 202
