"""The web app (web/ in the repository) served at /, beside the API's routes.

It is plain HTML, CSS and JavaScript modules, so there is nothing to build:
the files in the checkout are what the browser gets."""

from __future__ import annotations

from pathlib import Path

import structlog
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

log = structlog.get_logger()

# services/api/mochi_api/web.py -> the checkout's root, where an editable
# install (`make up`, the tests) finds web/. An installed wheel has no web/,
# so an image sets MOCHI_WEB_DIR to where it copied the files.
CHECKOUT_WEB = Path(__file__).resolve().parents[3] / "web"


def web_routes(web_dir: str) -> list[ControllerRouterHandler]:
    path = Path(web_dir) if web_dir else CHECKOUT_WEB
    if not (path / "index.html").is_file():
        if web_dir:
            # A directory someone named but that holds no app is a deployment mistake.
            raise SystemExit(f"MOCHI_WEB_DIR={web_dir} has no index.html")
        log.info("api.no_web_app", looked_in=str(path))
        return []
    # The modules are not fingerprinted, so browsers must revalidate to see an upgrade.
    return [create_static_files_router(path="/", directories=[path], html_mode=True, name="web",
                                       include_in_schema=False,
                                       cache_control=CacheControlHeader(no_cache=True))]
