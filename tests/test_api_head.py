"""HEAD on every GET route but the event streams (RFC 9110 9.3.2): the status
and headers GET would send, no body, under the same access rules. Read over a
raw socket, so a body sent after a HEAD's headers would be seen (an HTTP
client drops it)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from conftest import SMALL, System
from mochi_api.api_keys import new_key
from waits import wait_until

ALICE, ALICE_LINE = new_key("alice")
BOB, BOB_LINE = new_key("bob")


@pytest.fixture(scope="module")
def system(tmp_path_factory, tiny_model):
    sys_ = System(root=tmp_path_factory.mktemp("head"), model_dir=tiny_model)
    keys = sys_.root / "keys.txt"
    keys.write_text(f"{ALICE_LINE}\n{BOB_LINE}\n")
    sys_.start_nats()
    sys_.start_catalog()
    sys_.start_runner()
    sys_.start_api(MOCHI_API_KEYS_FILE=str(keys), MOCHI_ALLOW_ANONYMOUS="false")
    yield sys_
    sys_.stop()


@pytest.fixture(scope="module")
def job_id(system) -> str:
    """Alice's completed job (video, poster and clip stored)."""
    code, _, body = request(system, "POST", "/v1/jobs", ALICE,
                            body=json.dumps({"prompt": "a lighthouse at dusk", **SMALL}).encode())
    assert code == 202, body
    jid = json.loads(body)["id"]
    wait_until(lambda: json.loads(request(system, "GET", f"/v1/jobs/{jid}", ALICE)[2])["status"] == "completed",
               timeout=180, every=0.5, what="the job completed")
    return jid


def request(system: System, method: str, path: str, key: str | None, headers: dict[str, str] | None = None,
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, every byte after the headers)."""
    url = urlsplit(system.api_url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    found: dict[str, str] = {}
    for field in fields:
        name, _, value = field.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status.split()[1]), found, rest


def compare(system: System, path: str, key: str | None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """GET and HEAD of one path: the same status and headers (but Date), and HEAD without a body."""
    got, got_headers, got_body = request(system, "GET", path, key, headers)
    head, head_headers, head_body = request(system, "HEAD", path, key, headers)
    assert head == got, (path, head, got)
    got_headers.pop("date", None)
    head_headers.pop("date", None)
    assert head_headers == got_headers, path
    assert head_body == b"", (path, head_body[:200])
    if "content-length" in got_headers:
        assert int(got_headers["content-length"]) == len(got_body) > 0, path
    return got, got_headers


@pytest.mark.parametrize(("route", "status", "content_type"), [
    ("/v1/jobs/{id}/video", 200, "video/mp4"),
    ("/v1/jobs/{id}/thumbnail", 200, "image/jpeg"),
    ("/v1/jobs/{id}/thumbnail/clip", 200, "video/mp4"),
    # Previews are deleted at a job's end: the problem's headers, alike.
    ("/v1/jobs/{id}/preview", 404, "application/problem+json"),
    ("/v1/jobs/{id}", 200, "application/json"),
    ("/v1/jobs/{id}/logs", 200, "application/json"),
    ("/v1/jobs", 200, "application/json"),
    ("/v1/jobs?status=completed&limit=5", 200, "application/json"),
])
def test_head_answers_what_get_would_without_the_body(system, job_id, route, status, content_type):
    code, headers = compare(system, route.format(id=job_id), ALICE)
    assert code == status
    assert headers["content-type"].startswith(content_type)
    if content_type in ("video/mp4", "image/jpeg"):
        assert headers["accept-ranges"] == "bytes"
    if "/thumbnail" in route:
        assert headers["cache-control"].startswith("private, max-age=")


def test_head_of_a_range_is_the_range_gets(system, job_id):
    path = f"/v1/jobs/{job_id}/video"
    code, headers = compare(system, path, ALICE, {"Range": "bytes=0-9"})
    assert code == 206 and headers["content-length"] == "10"
    assert headers["content-range"].startswith("bytes 0-9/")
    code, headers = compare(system, path, ALICE, {"Range": "bytes=99999999-"})
    assert code == 416 and headers["content-range"].startswith("bytes */")


def test_head_keeps_the_access_rules(system, job_id):
    for route in ("/v1/jobs/{id}", "/v1/jobs/{id}/video", "/v1/jobs/{id}/thumbnail",
                  "/v1/jobs/{id}/thumbnail/clip", "/v1/jobs/{id}/preview"):
        path = route.format(id=job_id)
        # Another owner's job is missing for bob; without a key, 401 with its challenge.
        assert compare(system, path, BOB)[0] == 404, path
        code, headers = compare(system, path, None)
        assert code == 401 and headers["www-authenticate"].startswith("Bearer"), path
    assert compare(system, "/v1/jobs/" + "0" * 32 + "/video", ALICE)[0] == 404
    assert compare(system, "/v1/jobs/not-a-job/thumbnail", ALICE)[0] == 404


def test_probes_answer_head(system):
    assert compare(system, "/healthz", None)[0] == 200
    assert compare(system, "/readyz", None)[0] == 200


def test_head_opens_no_event_stream(system, job_id):
    for path in (f"/v1/jobs/{job_id}/events", "/v1/events"):
        code, headers, body = request(system, "HEAD", path, ALICE)
        assert code == 405, (path, code)
        assert not headers.get("content-type", "").startswith("text/event-stream")
        assert "GET" in headers.get("allow", ""), headers
        assert body == b""


def test_get_keeps_its_operation_id_and_head_has_its_own(system):
    """A generated client names its calls by operationId: a GET route's must not
    change because it answers HEAD too, and HEAD's must be its own."""
    code, _, body = request(system, "GET", "/schema/openapi.json", ALICE)
    assert code == 200, body[:300]
    paths = json.loads(body)["paths"]
    job = paths["/v1/jobs/{job_id}"]
    assert job["get"]["operationId"] == "V1JobsJobIdGetJob", job["get"]["operationId"]
    assert job["head"]["operationId"] == "V1JobsJobIdHeadGetJob", job["head"]["operationId"]
    ids = [op["operationId"] for item in paths.values() for op in item.values() if isinstance(op, dict)]
    assert len(ids) == len(set(ids)), sorted(ids)
    for path, item in paths.items():
        if "head" in item:
            assert "Head" in item["head"]["operationId"] and "Head" not in item["get"]["operationId"], path
