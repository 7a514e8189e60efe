"""The HTTP edge's answers to refusals, once: each layer's own exception becomes its status code here.

* 409 Conflict: the engine refuses (one plan at a time, a plan in the wrong state), a plan makes no sense
  in the site's state (`PlanRefused`), a checklist run refuses an operation, a drill is not started now.
* 404 Not Found: no such plan, checklist, run, step, drill, drill run or switch.
* 422: a checklist or drill that exists but does not validate (`{message, problems}` for checklists).
* 405: `Allow` lists the methods the OpenAPI document gives the path (ccfo.platform.allow).
Every body is `{"detail": ...}`, as FastAPI's own HTTPException answers are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ccfo.domain.plan import PlanRefused
from ccfo.platform import allow
from controller.checklists.model import Refused as ChecklistRefused
from controller.checklists.runner import InvalidChecklist
from controller.checklists.runner import NotFound as ChecklistNotFound
from controller.operations import PlanNotFound, Refused
from controller.operator_plans import UnknownSwitch
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
    UnknownSwitch: _answer(404),
    ChecklistNotFound: _answer(404, _first_arg),
    DrillNotFound: _answer(404),
    DrillInvalid: _answer(422),
    InvalidChecklist: _answer(422, _problems),
}


def install(app: FastAPI) -> None:
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    allow.install(app)  # 405 with every method of the path in `Allow`
