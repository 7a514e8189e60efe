"""The checklist API under /api/v1: definitions, runs, operator ticks, rollbacks and reports.

The runner (controller.checklists.runner.ChecklistRunner) is built by the composition root
(controller.service) and reached through `app.state`. Run ids may be `current` (the open run) or
`latest`. Unknown checklists, runs, steps and phases are 404, refusals 409, invalid checklists 422
(controller.api.errors).
"""

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ccfo.platform.auth import Principal
from controller.api.deps import ChecklistsDep, Operator, Viewer
from controller.api.models import Reason
from controller.api.responses import (
    AUTH,
    ChecklistOut,
    ChecklistsOut,
    ReportEnvelopeOut,
    RunsOut,
    RunStatusOut,
    errors,
)
from controller.checklists.report import MEDIA
from controller.checklists.runner import ChecklistRunner
from controller.checklists.views import checklist_detail, checklist_summary, run_summary

router = APIRouter(prefix="/api/v1", tags=["checklists"], responses=AUTH)
ACT = errors(404, 409, 413)
Note = Annotated[str, Field(max_length=2000, description="what was done or seen: recorded with the step")]
ID = r"^[a-z][a-z0-9_.-]{0,62}$"
Id = Annotated[str, Path(pattern=ID)]
RunId = Annotated[str, Path(max_length=80, description="a run id, `current` (the open run) or `latest`")]
REPORT = {200: {"description": "the run's report, in the format asked for (or inside JSON with envelope=true)",
                "content": {"text/markdown": {"schema": {"type": "string"}},
                            "text/html": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/"
                                                                               "ReportEnvelopeOut"},
                                                                      {"type": "object"}]}}}}}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartRunRequest(Body):
    reason: Reason
    rehearsal: StrictBool = False
    plan_from: Annotated[str, Field(max_length=80, description="auto (the latest rehearsal), none, or a run id")] \
        = "auto"


class DoneRequest(Body):
    note: Note = ""


class FailRequest(Body):
    note: Annotated[str, Field(min_length=3, max_length=2000)]


class ReasonRequest(Body):
    reason: Reason


async def _op(runner: ChecklistRunner, run: str, op: str, target: str, who: Principal, text: str) -> dict:
    state = await runner.operate(run, op, target, who.name, text)
    return runner.status(state.id)


@router.get("/checklists", response_model=ChecklistsOut)
async def list_checklists(_: Viewer, runner: ChecklistsDep) -> dict:
    found, problems = await asyncio.to_thread(runner.checklists)
    return {"checklists": [checklist_summary(c) for c in found.values()], "problems": [str(p) for p in problems]}


@router.get("/checklists/{name}", response_model=ChecklistOut, responses=errors(404))
async def get_checklist(name: Id, _: Viewer, runner: ChecklistsDep) -> dict:
    found, problems = await asyncio.to_thread(runner.checklists)
    if name not in found:
        mine = [str(p) for p in problems if p.file.endswith(f"/{name}.yaml")]
        raise HTTPException(422 if mine else 404, {"message": f"checklist {name} is invalid", "problems": mine}
                            if mine else f"no checklist {name!r}")
    return checklist_detail(found[name])


@router.post("/checklists/{name}/runs", status_code=201, response_model=RunStatusOut, responses=ACT)
async def start_run(name: Id, body: StartRunRequest, who: Operator, runner: ChecklistsDep) -> dict:
    state = await runner.start_run(name, who.name, body.reason, rehearsal=body.rehearsal, plan_from=body.plan_from)
    return runner.status(state.id)


@router.get("/checklist-runs", response_model=RunsOut)
async def list_runs(_: Viewer, runner: ChecklistsDep,
                    checklist: Annotated[str | None, Query(max_length=63)] = None) -> dict:
    await runner.ensure_started()
    now = runner.clock()
    runs = sorted((r for r in runner.runs.values() if checklist in (None, r.checklist.name)),
                  key=lambda r: r.started, reverse=True)
    return {"runs": [run_summary(r, now) for r in runs]}


@router.get("/checklist-runs/{run}", response_model=RunStatusOut, responses=errors(404))
async def get_run(run: RunId, _: Viewer, runner: ChecklistsDep) -> dict:
    await runner.ensure_started()
    return runner.status(run)


@router.get("/checklist-runs/{run}/report", response_class=Response, response_model=None,
            responses=REPORT | errors(404))
async def get_report(run: RunId, _: Viewer, runner: ChecklistsDep,
                     fmt: Annotated[Literal["md", "html", "json"], Query(alias="format")] = "md",
                     envelope: bool = False) -> Response:
    text = await runner.report(run, fmt)
    if envelope:  # for the CLI: the document inside JSON
        return JSONResponse(ReportEnvelopeOut(format=fmt, content=text))
    if fmt == "html":
        return HTMLResponse(text)
    if fmt == "json":
        return Response(text, media_type=MEDIA["json"])
    return PlainTextResponse(text, media_type=MEDIA["md"])


@router.post("/checklist-runs/{run}/steps/{step}/done", response_model=RunStatusOut, responses=ACT)
async def step_done(run: RunId, step: Id, body: DoneRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "done", step, who, body.note)


@router.post("/checklist-runs/{run}/steps/{step}/fail", response_model=RunStatusOut, responses=ACT)
async def step_fail(run: RunId, step: Id, body: FailRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "fail", step, who, body.note)


@router.post("/checklist-runs/{run}/steps/{step}/skip", response_model=RunStatusOut, responses=ACT)
async def step_skip(run: RunId, step: Id, body: ReasonRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "skip", step, who, body.reason)


@router.post("/checklist-runs/{run}/steps/{step}/retry", response_model=RunStatusOut, responses=ACT)
async def step_retry(run: RunId, step: Id, body: ReasonRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "retry", step, who, body.reason)


@router.post("/checklist-runs/{run}/steps/{step}/confirm", response_model=RunStatusOut, responses=ACT)
async def step_confirm(run: RunId, step: Id, body: DoneRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "confirm", step, who, body.note)


@router.post("/checklist-runs/{run}/phases/{phase}/rollback", response_model=RunStatusOut, responses=ACT)
async def phase_rollback(run: RunId, phase: Id, body: ReasonRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "rollback", phase, who, body.reason)


@router.post("/checklist-runs/{run}/phases/{phase}/retry", response_model=RunStatusOut, responses=ACT)
async def phase_retry(run: RunId, phase: Id, body: ReasonRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "retry", phase, who, body.reason)


@router.post("/checklist-runs/{run}/abort", response_model=RunStatusOut, responses=ACT)
async def abort_run(run: RunId, body: ReasonRequest, who: Operator, runner: ChecklistsDep) -> dict:
    return await _op(runner, run, "abort", "", who, body.reason)
