"""The HTTP edge's answers to refusals, once: each layer's own exception becomes its status code here.

* 409 Conflict: the engine refuses (one plan at a time, a plan in the wrong state), a plan makes no sense
  in the site's state (`PlanRefused`), a checklist run refuses an operation, a drill is not started now.
* 404 Not Found: no such plan, checklist, run, step, drill or drill run.
* 422: a checklist or drill that exists but does not validate (`{message, problems}` for checklists).
* 405: `Allow` lists the methods the OpenAPI document gives the path (Starlette names only those of the
  first route that matches it, and GET and POST of one path are two routes here).
Every body is `{"detail": ...}`, as FastAPI's own HTTPException answers are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ccfo.domain.plan import PlanRefused
from controller.checklists.model import Refused as ChecklistRefused
from controller.checklists.runner import InvalidChecklist
from controller.checklists.runner import NotFound as ChecklistNotFound
from controller.operations import PlanNotFound, Refused
from drills.manager import DrillInvalid, DrillNotFound, DrillNotStarted


def _answer(status: int, detail: Callable[[Exception], Any] = str) -> Callable[[Request, Exception], Any]:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": detail(exc)}, status_code=status)

    return handler


def _first_arg(exc: Exception) -> Any:
    return exc.args[0] if exc.args else str(exc)


def _problems(exc: Exception) -> dict[str, Any]:
    assert isinstance(exc, InvalidChecklist)
    return {"message": "the checklist is invalid", "problems": [str(p) for p in exc.problems]}


HANDLERS: dict[type[Exception], Callable[[Request, Exception], Any]] = {
    Refused: _answer(409),
    PlanRefused: _answer(409),
    ChecklistRefused: _answer(409),
    DrillNotStarted: _answer(409),
    PlanNotFound: _answer(404),
    ChecklistNotFound: _answer(404, _first_arg),
    DrillNotFound: _answer(404),
    DrillInvalid: _answer(422),
    InvalidChecklist: _answer(422, _problems),
}


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for `path`, by its most specific template (as OpenAPI says,
    /drills/journal before /drills/{name})."""
    templates: list[tuple[re.Pattern[str], int, list[str]]] | None = getattr(app.state, "allow_templates", None)
    if templates is None:
        templates = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"), p.count("{"),
                      sorted(m.upper() for m in item)) for p, item in app.openapi().get("paths", {}).items()]
        app.state.allow_templates = templates
    found = [(params, methods) for regex, params, methods in templates if regex.match(path)]
    fewest = min((params for params, _ in found), default=0)
    return sorted({m for params, methods in found if params == fewest for m in methods})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = allowed_methods(request.app, request.url.path)
        if allow:
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(allow)})
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    app.add_exception_handler(StarletteHTTPException, _http_error)
