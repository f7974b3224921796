"""What the API accepts from a client: every integer in a header, query or
cursor is ASCII digits within range, every header and string query it reads is
bounded, bodies are JSON, and the anonymous stack answers only to its own
names. Each refusal is a 4xx application/problem+json, never a 5xx."""

from __future__ import annotations

import base64
import socket

import httpx
import pytest

from conftest import SMALL, System
from mochi_api.bounds import INT64_MAX, MAX_HEADER_BYTES, ascii_int
from mochi_api.video_response import UNSATISFIABLE, parse_range
from test_bad_requests import assert_problem

JOB = {"prompt": "a cat", **SMALL}
JSON = {"content-type": "application/json"}


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
def system(tmp_path_factory, tiny_model):
    sys_ = System(root=tmp_path_factory.mktemp("bounds"), model_dir=tiny_model)
    sys_.start_nats()
    sys_.start_catalog()
    sys_.start_runner()
    sys_.start_api()
    yield sys_
    sys_.stop()


@pytest.fixture(scope="module")
def api(system):
    return system.api_url


@pytest.fixture(scope="module")
def video(system):
    """(url, bytes) of one completed job's MP4."""
    with system.client() as client:
        job = client.submit("waves on rocks", **SMALL)
        done = client.wait(job.id, timeout=180)
        assert done.status == "completed", done
        url = f"{system.api_url}/v1/jobs/{job.id}/video"
        return url, httpx.get(url).content


# (label, method, path, headers, body, status): hostile inputs of every kind.
HOSTILE = [
    ("range-5000-digits", "GET", "{video}", {"range": "bytes=" + "9" * 5000 + "-"}, None, 416),
    ("range-arabic-digits", "GET", "{video}", {"range": "bytes=١-٢".encode()}, None, 416),
    ("range-fullwidth-digits", "GET", "{video}", {"range": "bytes=-５".encode()}, None, 416),
    ("range-no-numbers", "GET", "{video}", {"range": "bytes=-"}, None, 416),
    ("cursor-2^63", "GET", "/v1/jobs?cursor=" + b64(f"s{2**63}"), {}, None, 422),
    ("cursor-2^64", "GET", "/v1/jobs?cursor=" + b64(f"s{2**64}"), {}, None, 422),
    ("cursor-5000-digits", "GET", "/v1/jobs?cursor=" + b64("s" + "9" * 5000), {}, None, 422),
    ("cursor-arabic-digits", "GET", "/v1/jobs?cursor=" + b64("s١٢"), {}, None, 422),
    ("cursor-not-base64", "GET", "/v1/jobs?cursor=s%00%FF", {}, None, 422),
    ("cursor-non-ascii", "GET", "/v1/jobs?cursor=%D9%A1%D9%A2", {}, None, 422),
    ("cursor-padded", "GET", "/v1/jobs?cursor=" + b64("s5") + "==", {}, None, 422),
    ("cursor-stray-chars", "GET", "/v1/jobs?cursor=" + b64("s5")[:2] + "!!" + b64("s5")[2:], {}, None, 422),
    ("cursor-zero", "GET", "/v1/jobs?cursor=" + b64("s0"), {}, None, 422),
    ("cursor-negative", "GET", "/v1/jobs?cursor=" + b64("s-5"), {}, None, 422),
    ("limit-5000-digits", "GET", "/v1/jobs?limit=" + "9" * 5000, {}, None, 422),
    ("limit-arabic-digits", "GET", "/v1/jobs?limit=%D9%A1%D9%A0", {}, None, 422),
    ("limit-plus", "GET", "/v1/jobs?limit=%2B5", {}, None, 422),
    ("limit-2^64", "GET", f"/v1/jobs?limit={2**64}", {}, None, 422),
    ("status-17-values", "GET", "/v1/jobs?" + "&".join(["status=queued"] * 17), {}, None, 422),
    ("status-40k", "GET", "/v1/jobs?status=" + "x" * 40_000, {}, None, 422),
    ("body-text-plain", "POST", "/v1/jobs", {"content-type": "text/plain"}, JOB, 415),
    ("body-form", "POST", "/v1/jobs", {"content-type": "application/x-www-form-urlencoded"}, JOB, 415),
    ("body-multipart", "POST", "/v1/jobs", {"content-type": "multipart/form-data; boundary=x"}, JOB, 415),
    ("body-no-type", "POST", "/v1/jobs", {}, JOB, 415),
    ("body-json-lookalike", "POST", "/v1/jobs", {"content-type": "application/jsonx"}, JOB, 415),
    ("cancel-with-text-body", "POST", "/v1/jobs/{job}/cancel", {"content-type": "text/plain"}, JOB, 415),
    ("body-width-as-string", "POST", "/v1/jobs", JSON, {**JOB, "width": "64"}, 422),
    ("body-seed-as-string", "POST", "/v1/jobs", JSON, {**JOB, "seed": "5"}, 422),
    ("body-event-not-a-string", "POST", "/v1/jobs", JSON, {**JOB, "webhook_events": ["started", 1]}, 422),
    ("idempotency-key-256", "POST", "/v1/jobs", {**JSON, "idempotency-key": "k" * 256}, JOB, 422),
    ("idempotency-key-empty", "POST", "/v1/jobs", {**JSON, "idempotency-key": ""}, JOB, 422),
    ("cancel-after-33", "POST", "/v1/jobs", {**JSON, "cancel-after": "1" * 33}, JOB, 422),
    ("cancel-after-digits", "POST", "/v1/jobs", {**JSON, "cancel-after": "9" * 32}, JOB, 422),
    ("cancel-after-arabic", "POST", "/v1/jobs", {**JSON, "cancel-after": "١٢m".encode()}, JOB, 422),
    ("cancel-after-exponent", "POST", "/v1/jobs", {**JSON, "cancel-after": "1e9s"}, JOB, 422),
    ("authorization-600", "GET", "/v1/jobs", {"authorization": "Bearer " + "a" * 600}, None, 400),
    ("api-key-query-300", "GET", "/v1/events?api_key=" + "a" * 300, {}, None, 400),
    ("headers-over-budget", "GET", "/v1/jobs", {"x-junk": "a" * (MAX_HEADER_BYTES + 1)}, None, 431),
    ("job-id-5000-chars", "GET", "/v1/jobs/" + "a" * 5000, {}, None, 404),
    ("job-id-trailing-newline", "GET", "/v1/jobs/{job}%0A", {}, None, 404),
    ("cancel-id-trailing-newline", "POST", "/v1/jobs/{job}%0A/cancel", {}, None, 404),
    ("events-id-trailing-newline", "GET", "/v1/jobs/{job}%0A/events", {}, None, 404),
    ("video-id-trailing-newline", "GET", "/v1/jobs/{job}%0A/video", {}, None, 404),
    ("preview-id-not-hex", "GET", "/v1/jobs/" + "z" * 32 + "/preview", {}, None, 404),
    ("thumbnail-id-5000-chars", "GET", "/v1/jobs/" + "a" * 5000 + "/thumbnail", {}, None, 404),
    ("thumbnail-clip-traversal", "GET", "/v1/jobs/..%2F..%2Fetc/thumbnail/clip", {}, None, 404),
    ("preview-still-not-a-bool", "GET", "/v1/jobs/{job}/preview?still=maybe", {}, None, 422),
    ("preview-step-negative", "GET", "/v1/jobs/{job}/preview?step=-1", {}, None, 422),
    ("estimate-width-as-string", "POST", "/v1/estimates", JSON, {**JOB, "width": "64"}, 422),
    ("estimate-text-plain", "POST", "/v1/estimates", {"content-type": "text/plain"}, JOB, 415),
    ("estimate-frames-off-grid", "POST", "/v1/estimates", JSON, {**JOB, "num_frames": 8}, 422),
    ("host-rebinding", "GET", "/v1/jobs", {"host": "evil.example:8000"}, None, 421),
    ("host-rebinding-web", "GET", "/", {"host": "evil.example"}, None, 421),
    ("host-rebinding-submit", "POST", "/v1/jobs", {**JSON, "host": "127.0.0.1.evil.example"}, JOB, 421),
    ("host-missing-name", "GET", "/healthz", {"host": ":8000"}, None, 421),
    ("host-port-not-digits", "GET", "/v1/jobs", {"host": "localhost:abc"}, None, 400),
    ("host-port-past-65535", "GET", "/v1/jobs", {"host": "localhost:" + "9" * 20}, None, 400),
    ("host-port-arabic-digits", "GET", "/healthz", {"host": "localhost:٨٠".encode()}, None, 400),
    ("host-bare-ipv6", "GET", "/v1/jobs", {"host": "::1"}, None, 400),
    ("host-text-after-ipv6", "GET", "/", {"host": "[::1]evil.example"}, None, 400),
    ("host-with-userinfo", "GET", "/v1/jobs", {"host": "me@localhost"}, None, 400),
]


@pytest.mark.parametrize(("label", "method", "path", "headers", "body", "status"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_a_4xx_problem(api, video, label, method, path, headers, body, status):
    if "{job}" in path:
        job = httpx.post(f"{api}/v1/jobs", json=JOB).json()
        path = path.format(job=job["id"])
    url = video[0] if path == "{video}" else api + path
    content = None if body is None else httpx.Request("POST", "/", json=body).content
    resp = httpx.request(method, url, headers=headers, content=content, timeout=30)
    problem = assert_problem(resp, status)
    assert problem["type"].startswith("https://mochi-serve.dev/problems/"), problem
    assert len(resp.content) < 4096, "a refusal does not echo the input back"


def test_ranges_past_any_file_are_read_without_reading_every_digit(video):
    url, whole = video
    size = len(whole)
    huge = "9" * 5000
    # A last position past the end is cut to the end (RFC 9110 14.1.2), however long.
    part = httpx.get(url, headers={"range": f"bytes=10-{huge}"})
    assert part.status_code == 206 and part.content == whole[10:]
    assert part.headers["content-range"] == f"bytes 10-{size - 1}/{size}"
    # A suffix longer than the file is the whole file.
    tail = httpx.get(url, headers={"range": f"bytes=-{huge}"})
    assert tail.status_code == 206 and tail.content == whole
    # A first position past the end is unsatisfiable, with the size to retry with.
    beyond = httpx.get(url, headers={"range": f"bytes={huge}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    # Several ranges or another unit: ignored, the whole file (RFC 9110 14.2).
    for header in ("bytes=0-1,5-9", "items=0-5"):
        resp = httpx.get(url, headers={"range": header})
        assert resp.status_code == 200 and resp.content == whole, header


def test_parse_range_reads_only_ascii_digits():
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=-5", 100) == (95, 99)
    assert parse_range("Bytes = 1-", 100) == (1, 99)
    assert parse_range("bytes=١-٢", 100) == UNSATISFIABLE  # Python's int() would read 1 and 2
    assert parse_range("bytes=" + "9" * 10_000 + "-", 100) == UNSATISFIABLE
    assert parse_range("bytes=5-2", 100) == UNSATISFIABLE
    assert parse_range("bytes=-1", 0) == UNSATISFIABLE


def test_ascii_int_bounds():
    assert ascii_int("0") == 0 and ascii_int(str(INT64_MAX)) == INT64_MAX
    for text in ("", str(INT64_MAX + 1), "9" * 5000, "١٢", "٣", "+1", "-1", " 1", "1_000", "²"):
        assert ascii_int(text) is None, text
    assert ascii_int("101", maximum=100) is None


def test_a_handed_out_cursor_still_pages(api):
    for _ in range(3):
        assert httpx.post(f"{api}/v1/jobs", json=JOB).status_code == 202
    from waits import wait_until

    first = wait_until(lambda: (p := httpx.get(f"{api}/v1/jobs?limit=1").json())["next_cursor"] and p,
                       what="a page with a next cursor")
    second = httpx.get(f"{api}/v1/jobs", params={"limit": 1, "cursor": first["next_cursor"]})
    assert second.status_code == 200, second.text
    assert second.json()["jobs"] and second.json()["jobs"][0]["id"] != first["jobs"][0]["id"]


def test_json_bodies_are_accepted_however_the_type_is_spelled(api, system):
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        resp = httpx.post(f"{api}/v1/jobs", content=httpx.Request("POST", "/", json=JOB).content,
                          headers={"content-type": content_type})
        assert resp.status_code == 202, (content_type, resp.text)
    # The Python client sends its JSON as such.
    with system.client() as client:
        assert client.submit("from the client", **SMALL).status == "queued"
    # A cancel has no body and needs no type.
    job = httpx.post(f"{api}/v1/jobs", json=JOB).json()
    assert httpx.post(f"{api}/v1/jobs/{job['id']}/cancel").status_code == 202


def test_refused_bodies_publish_nothing(api, system):
    before = len(system.events("mochi.jobs.*.submitted"))
    resp = httpx.post(f"{api}/v1/jobs", content=b'{"prompt": "cross-site"}', headers={"content-type": "text/plain"})
    assert_problem(resp, 415)
    assert resp.headers["accept-post"] == "application/json"
    assert len(system.events("mochi.jobs.*.submitted")) == before


def test_anonymous_stack_answers_to_its_own_names(api, system):
    port = api.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert httpx.get(f"{api}/v1/jobs", headers={"host": host}).status_code == 200, host
    for host in (f"evil.example:{port}", f"localhost.evil.example:{port}", "127.0.0.2", "[::2]", ""):
        assert_problem(httpx.get(f"{api}/v1/jobs", headers={"host": host}), 421)

    # A name listed in MOCHI_ALLOWED_HOSTS is served too.
    listed = system.start_api(name="api-listed", MOCHI_ALLOWED_HOSTS="mochi.lan, box.local")
    try:
        other = system.api_url
        assert httpx.get(f"{other}/v1/jobs", headers={"host": "mochi.lan:8000"}).status_code == 200
        assert httpx.get(f"{other}/healthz", headers={"host": "box.local"}).status_code == 200
        assert_problem(httpx.get(f"{other}/v1/jobs", headers={"host": "evil.example"}), 421)
    finally:
        listed.stop()
        system.api_url = api


def _raw_request(api: str, lines: list[bytes], body: bytes = b"") -> tuple[int, bytes]:
    """Status and body of a request written byte for byte (httpx will not send
    two Host lines)."""
    host, port = api.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"\r\n".join([*lines, b"Content-Length: %d" % len(body), b"Connection: close", b"", body]))
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower() or head.split(b" ")[1] == b"202", head
    return int(head.split(b" ")[1]), rest


def test_two_host_lines_are_a_400(api):
    port = api.rsplit(":", 1)[1].encode()
    # RFC 9112 3.2: whichever of them is this API's.
    for hosts in ([b"127.0.0.1:" + port, b"evil.example"], [b"evil.example", b"127.0.0.1:" + port]):
        status, _ = _raw_request(api, [b"GET /v1/jobs HTTP/1.1", *(b"Host: " + h for h in hosts)])
        assert status == 400, hosts


def test_a_body_typed_twice_is_not_json(api, system):
    host = b"Host: " + api.removeprefix("http://").encode()
    before = len(system.events("mochi.jobs.*.submitted"))
    body = httpx.Request("POST", "/", json=JOB).content
    for types in ([b"application/json", b"text/plain"], [b"text/plain", b"application/json"],
                  [b"application/json", b"application/json"]):
        status, _ = _raw_request(api, [b"POST /v1/jobs HTTP/1.1", host, *(b"Content-Type: " + t for t in types)],
                                 body)
        assert status == 415, types
    assert len(system.events("mochi.jobs.*.submitted")) == before
    status, _ = _raw_request(api, [b"POST /v1/jobs HTTP/1.1", host, b"Content-Type: application/json"], body)
    assert status == 202  # the same request typed once


def test_header_fields_are_named_in_refusals(api):
    resp = httpx.post(f"{api}/v1/jobs", json=JOB, headers={"idempotency-key": "k" * 256})
    assert_problem(resp, 422, "Idempotency-Key")
    resp = httpx.post(f"{api}/v1/jobs", json=JOB, headers={"cancel-after": "١٢m".encode()})
    assert_problem(resp, 422, "Cancel-After")
    resp = httpx.get(f"{api}/v1/jobs", headers={"authorization": "Bearer " + "a" * 600})
    assert_problem(resp, 400, "Authorization")
    # Bodies are decoded strictly: a number sent as a string is not read as one.
    resp = httpx.post(f"{api}/v1/jobs", json={**JOB, "width": "64"})
    assert_problem(resp, 422, "width")
