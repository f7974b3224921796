"""API keys, owner isolation, the submission rate limit and the queued-jobs cap."""

from __future__ import annotations

import httpx
import pytest

from conftest import SMALL
from mochi_api.api_keys import new_key
from sse_client import read_sse

ALICE, ALICE_LINE = new_key("alice")
BOB, BOB_LINE = new_key("bob")
ADMIN, ADMIN_LINE = new_key("ops", admin=True)


@pytest.fixture
def keyed(system):
    keys = system.root / "keys.txt"
    keys.write_text(f"# owner sha256 [admin]\n{ALICE_LINE}\n{BOB_LINE}\n{ADMIN_LINE}\n")
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
