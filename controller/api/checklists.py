"""The checklist API: definitions, runs, operator ticks, rollbacks and reports, under /api/v1.

`checklist_router(engine, need)` is included by `create_app`; `need(role)` is create_app's own auth
dependency, so tokens and roles work exactly as on the other routes (viewer reads, operator acts, and
every change records who and why). Run ids may be `current` (the open run) or `latest`.
No `from __future__ import annotations` here, like controller/api/app.py: FastAPI resolves the
dependency annotations, which name `need(...)` results local to the factory, when routes are declared.
"""


import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ccfo.platform.auth import Principal, Role
from controller.api.models import Reason
from controller.checklists.model import Refused
from controller.checklists.report import MEDIA
from controller.checklists.runner import ChecklistRunner, InvalidChecklist, NotFound, runner_for_engine
from controller.checklists.views import checklist_detail, checklist_summary, run_summary

Note = Annotated[str, Field(max_length=2000, description="what was done or seen: recorded with the step")]
Id = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRunRequest(Body):
    reason: Reason
    rehearsal: bool = False
    plan_from: Annotated[str, Field(max_length=80, description="auto (the latest rehearsal), none, or a run id")] \
        = "auto"


class DoneRequest(Body):
    note: Note = ""


class FailRequest(Body):
    note: Annotated[str, Field(min_length=3, max_length=2000)]


class ReasonRequest(Body):
    reason: Reason


def checklist_router(engine: Any, need: Callable[[Role], Callable[..., Principal]],
                     runner: ChecklistRunner | None = None) -> APIRouter:
    runner = runner if runner is not None else runner_for_engine(engine)
    try:
        asyncio.get_running_loop()
        runner.start_soon()  # replay the journal now, not at the first request
    except RuntimeError:
        pass  # no loop yet: the first request starts it
    engine.checklists = runner  # the process that owns the engine (and tests) reach the runner here
    router = APIRouter(prefix="/api/v1", tags=["checklists"])
    Viewer = Annotated[Principal, Depends(need(Role.VIEWER))]
    Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]

    async def run_op(run: str, op: str, target: str, who: Principal, text: str) -> dict[str, Any]:
        try:
            state = await runner.operate(run, op, target, who.name, text)
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None
        except Refused as exc:
            raise HTTPException(409, str(exc)) from exc
        return runner.status(state.id)

    @router.get("/checklists")
    async def list_checklists(_: Viewer) -> dict[str, Any]:
        found, problems = await asyncio.to_thread(runner.checklists)
        return {"checklists": [checklist_summary(c) for c in found.values()], "problems": [str(p) for p in problems]}

    @router.get("/checklists/{name}")
    async def get_checklist(name: Id, _: Viewer) -> dict[str, Any]:
        found, problems = await asyncio.to_thread(runner.checklists)
        if name not in found:
            mine = [str(p) for p in problems if p.file.endswith(f"/{name}.yaml")]
            raise HTTPException(422 if mine else 404, {"message": f"checklist {name} is invalid", "problems": mine}
                                if mine else f"no checklist {name!r}")
        return checklist_detail(found[name])

    @router.post("/checklists/{name}/runs", status_code=201)
    async def start_run(name: Id, body: StartRunRequest, who: Operator) -> dict[str, Any]:
        try:
            state = await runner.start_run(name, who.name, body.reason, rehearsal=body.rehearsal,
                                           plan_from=body.plan_from)
        except InvalidChecklist as exc:
            raise HTTPException(422, {"message": f"checklist {name} is invalid",
                                      "problems": [str(p) for p in exc.problems]}) from exc
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None
        except Refused as exc:
            raise HTTPException(409, str(exc)) from exc
        return runner.status(state.id)

    @router.get("/checklist-runs")
    async def list_runs(_: Viewer, checklist: Annotated[str | None, Query(max_length=63)] = None) -> dict[str, Any]:
        await runner.ensure_started()
        now = runner.clock()
        runs = sorted((r for r in runner.runs.values() if checklist in (None, r.checklist.name)),
                      key=lambda r: r.started, reverse=True)
        return {"runs": [run_summary(r, now) for r in runs]}

    @router.get("/checklist-runs/{run}")
    async def get_run(run: str, _: Viewer) -> dict[str, Any]:
        await runner.ensure_started()
        try:
            return runner.status(run)
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None

    @router.get("/checklist-runs/{run}/report")
    async def get_report(run: str, _: Viewer,
                         fmt: Annotated[Literal["md", "html", "json"], Query(alias="format")] = "md",
                         envelope: bool = False) -> Response:
        try:
            text = await runner.report(run, fmt)
        except NotFound as exc:
            raise HTTPException(404, exc.args[0]) from None
        if envelope:  # for the CLI: the document inside JSON
            return JSONResponse({"format": fmt, "content": text})
        if fmt == "html":
            return HTMLResponse(text)
        if fmt == "json":
            return Response(text, media_type=MEDIA["json"])
        return PlainTextResponse(text, media_type=MEDIA["md"])

    @router.post("/checklist-runs/{run}/steps/{step}/done")
    async def step_done(run: str, step: Id, body: DoneRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "done", step, who, body.note)

    @router.post("/checklist-runs/{run}/steps/{step}/fail")
    async def step_fail(run: str, step: Id, body: FailRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "fail", step, who, body.note)

    @router.post("/checklist-runs/{run}/steps/{step}/skip")
    async def step_skip(run: str, step: Id, body: ReasonRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "skip", step, who, body.reason)

    @router.post("/checklist-runs/{run}/steps/{step}/retry")
    async def step_retry(run: str, step: Id, body: ReasonRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "retry", step, who, body.reason)

    @router.post("/checklist-runs/{run}/steps/{step}/confirm")
    async def step_confirm(run: str, step: Id, body: DoneRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "confirm", step, who, body.note)

    @router.post("/checklist-runs/{run}/phases/{phase}/rollback")
    async def phase_rollback(run: str, phase: Id, body: ReasonRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "rollback", phase, who, body.reason)

    @router.post("/checklist-runs/{run}/phases/{phase}/retry")
    async def phase_retry(run: str, phase: Id, body: ReasonRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "retry", phase, who, body.reason)

    @router.post("/checklist-runs/{run}/abort")
    async def abort_run(run: str, body: ReasonRequest, who: Operator) -> dict[str, Any]:
        return await run_op(run, "abort", "", who, body.reason)

    return router
