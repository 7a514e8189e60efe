"""405 answers that name every method a path has (`Allow`), for the controller's API and the agent's.

Starlette's 405 names only the methods of the first route that matches the path, and GET and POST of one
path are two routes in FastAPI, so its `Allow` can leave out a method the path does have (HTTP requires
the full list; schemathesis's `unsupported_method` check reads it). The list comes from the app's own
OpenAPI document, by the most specific template (as OpenAPI says, /drills/journal before /drills/{name}).
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for `path` (templates compiled once per app)."""
    templates: list[tuple[re.Pattern[str], int, list[str]]] | None = getattr(app.state, "allow_templates", None)
    if templates is None:
        templates = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"), p.count("{"),
                      sorted(m.upper() for m in item)) for p, item in app.openapi().get("paths", {}).items()]
        app.state.allow_templates = templates
    found = [(params, methods) for regex, params, methods in templates if regex.match(path)]
    fewest = min((params for params, _ in found), default=0)
    return sorted({m for params, methods in found if params == fewest for m in methods})


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own HTTPException answer, with the full `Allow` on a 405."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.url.path)
        if allow:
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(allow)})
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)
