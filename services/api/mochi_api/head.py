"""GET routes that answer HEAD too (RFC 9110 9.3.2: a general-purpose server
supports HEAD). One handler serves both methods, so HEAD gets what GET would
(the same caller dependency and owner rule, status and headers) and no body:
uvicorn sends none to a HEAD (a JSON body is still rendered, for its
Content-Length), and a file streamed by video_response.py is not even read.

Event streams stay GET only: HEAD must not open an SSE stream (405)."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.types import Method
from litestar.types.internal_types import PathParameterDefinition

GET_AND_HEAD = [HttpMethod.GET, HttpMethod.HEAD]
# Litestar's own id maker, read from OpenAPIConfig's public default rather
# than imported from its private litestar._openapi module.
_LITESTAR_IDS = OpenAPIConfig(title="", version="").operation_id_creator


def _operation_id(handler: HTTPRouteHandler, method: Method,
                  components: list[str | PathParameterDefinition]) -> str:
    # Litestar's ids (path, then handler name) name the method too for a
    # handler of several methods; GET keeps the id it had as a GET-only route
    # (a generated client names its calls by them), HEAD's says Head.
    made = _LITESTAR_IDS(handler, method, components)
    # A handler's name is a Python identifier: "_" is the only separator Litestar strips from it.
    name = handler.handler_name.title().replace("_", "")
    if method == HttpMethod.GET and made.endswith("Get" + name):
        return made[:-len("Get" + name)] + name
    return made


def get_and_head(path: str, **kwargs: Any) -> HTTPRouteHandler:
    """`@get(path, ...)` that answers HEAD as well."""
    return route(path, http_method=GET_AND_HEAD, operation_id=_operation_id, **kwargs)


def presign_method(request: Request[Any, Any, Any]) -> Literal["GET", "HEAD"]:
    """The method a redirect to the object store is signed for: S3 signs the
    method, so a HEAD sent on to a GET-signed URL meets a signature error."""
    return "HEAD" if request.method == HttpMethod.HEAD else "GET"
