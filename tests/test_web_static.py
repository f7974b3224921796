"""The API serves the web app at / with nothing built, and keeps its own
routes; the one rule the app states itself agrees with the contracts."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from mochi_api.web import CHECKOUT_WEB, web_routes
from mochi_contracts.jobs import FRAME_STRIDE

WEB = Path(__file__).resolve().parents[1] / "web"


def test_api_serves_the_app_beside_its_routes(system) -> None:
    system.start_catalog()
    system.start_api()
    http = httpx.Client(base_url=system.api_url, timeout=10)
    index = http.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in index.text
    # Every module the page imports is served, as JavaScript, and revalidated.
    modules = {"main.js"} | {m for f in (WEB / "js").glob("*.js")
                             for m in re.findall(r'from "\./([a-z_]+\.js)"', f.read_text())}
    for name in sorted(modules):
        resp = http.get(f"/js/{name}")
        assert resp.status_code == 200, name
        assert "javascript" in resp.headers["content-type"], name
        assert "no-cache" in resp.headers.get("cache-control", ""), name
    assert http.get("/styles.css").headers["content-type"].startswith("text/css")

    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    assert http.get("/v1/jobs").status_code == 200
    schema = http.get("/schema/openapi.json").json()
    assert "JobRequest" in schema["components"]["schemas"]
    assert all(p.startswith(("/v1/", "/healthz", "/readyz", "/metrics")) for p in schema["paths"]), schema["paths"]
    missing = http.get("/no-such-file.js")
    assert missing.status_code == 404


def test_web_dir_default_and_a_wrong_setting() -> None:
    assert CHECKOUT_WEB == WEB
    assert len(web_routes("")) == 1
    with pytest.raises(SystemExit, match="has no index.html"):
        web_routes("/nonexistent/web")


def test_frame_stride_in_the_app_is_the_contracts() -> None:
    # The schema states every other bound; this one the app has to know.
    found = re.search(r"export const FRAME_STRIDE = (\d+);", (WEB / "js" / "bounds.js").read_text())
    assert found and int(found.group(1)) == FRAME_STRIDE
