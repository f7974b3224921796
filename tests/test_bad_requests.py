"""Every bad input is a 4xx application/problem+json naming the field; never a 500."""

from __future__ import annotations

import httpx
import pytest

BAD_BODIES = [
    (b"", "body", 422),
    (b"not json", "body", 400),
    (b"[1, 2]", "body", 422),
    (b"{}", "prompt", 422),
    (b'{"prompt": ""}', "prompt", 422),
    (b'{"prompt": "   "}', "prompt", 422),
    (b'{"prompt": 42}', "prompt", 422),
    (b'{"prompt": "x", "width": 100}', "width", 422),
    (b'{"prompt": "x", "width": "wide"}', "width", 422),
    (b'{"prompt": "x", "height": 4096}', "height", 422),
    (b'{"prompt": "x", "num_frames": 10}', "num_frames", 422),
    (b'{"prompt": "x", "num_frames": 169}', "num_frames", 422),
    (b'{"prompt": "x", "num_inference_steps": 0}', "num_inference_steps", 422),
    (b'{"prompt": "x", "guidance_scale": -1}', "guidance_scale", 422),
    (b'{"prompt": "x", "seed": -5}', "seed", 422),
    (b'{"prompt": "x", "fps": 1000}', "fps", 422),
    (b'{"prompt": "x", "negative_prompt": ["a"]}', "negative_prompt", 422),
    (b'{"prompt": "x", "colour": "red"}', "colour", 422),
    (b'{"prompt": "' + b"x" * 2001 + b'"}', "prompt", 422),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model):
    from conftest import System

    system = System(root=tmp_path_factory.mktemp("bad"), model_dir=tiny_model)
    system.start_nats()
    system.start_catalog()
    system.start_api()
    yield system.api_url
    system.stop()


def assert_problem(resp: httpx.Response, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == status and problem["title"]
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field], problem
        assert field in problem["detail"]
    return problem


@pytest.mark.parametrize(("body", "field", "status"), BAD_BODIES, ids=[f for _, f, _ in BAD_BODIES])
def test_bad_body_names_its_field(api, body, field, status):
    resp = httpx.post(f"{api}/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert_problem(resp, status, field)


def test_oversized_body_is_refused(api):
    resp = httpx.post(f"{api}/v1/jobs", content=b'{"prompt": "' + b"x" * 200_000 + b'"}',
                      headers={"content-type": "application/json"})
    assert_problem(resp, 413)


@pytest.mark.parametrize("job_id", ["0" * 32, "not-a-job", "a.b", "%2A"])
def test_unknown_job_is_404(api, job_id):
    for method, suffix in (("GET", ""), ("GET", "/video"), ("POST", "/cancel")):
        assert_problem(httpx.request(method, f"{api}/v1/jobs/{job_id}{suffix}"), 404)


@pytest.mark.parametrize(("query", "field"), [
    ("status=bogus", "status"), ("limit=0", "limit"), ("limit=1000", "limit"),
    ("limit=ten", "limit"), ("cursor=%%%", "cursor"), ("cursor=abc", "cursor")])
def test_bad_list_query_names_its_field(api, query, field):
    assert_problem(httpx.get(f"{api}/v1/jobs?{query}"), 422, field)


def test_video_of_a_queued_job_is_409(api):
    job = httpx.post(f"{api}/v1/jobs", json={"prompt": "x", "width": 64, "height": 64}).json()
    assert_problem(httpx.get(f"{api}/v1/jobs/{job['id']}/video"), 409)
    httpx.post(f"{api}/v1/jobs/{job['id']}/cancel")
    assert_problem(httpx.post(f"{api}/v1/jobs/{job['id']}/cancel"), 409)


def test_unknown_route_and_method_are_problems(api):
    assert_problem(httpx.get(f"{api}/v2/nothing"), 404)
    assert_problem(httpx.delete(f"{api}/v1/jobs"), 405)


def test_an_outage_is_a_503_problem_with_retry_after(system):
    """The catalog away, then NATS itself: reads answer 503 problem+json with Retry-After, never 500."""
    catalog = system.start_catalog()
    system.start_api()
    api = system.api_url
    assert httpx.get(f"{api}/v1/jobs").status_code == 200
    catalog.stop()
    for nats_up in (True, False):
        if not nats_up:
            system.nats.stop()
        resp = httpx.get(f"{api}/v1/jobs", timeout=30)
        problem = assert_problem(resp, 503)
        assert problem["type"].endswith("/unavailable"), problem
        assert int(resp.headers["retry-after"]) > 0
