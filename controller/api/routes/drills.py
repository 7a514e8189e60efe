"""The drills API under /api/v1/drills: scenarios and their dry run, runs (the DrillManager of
drills.manager runs them in this process, one at a time), history (from the journal), schedules, and the
journal entry an external runner (`ccfo drill run`) records its run with."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator

from ccfo.config.yamlpos import ConfigError
from controller.api.deps import DrillsDep, EngineDep, Operator, Viewer
from controller.api.models import CRON, When
from controller.api.responses import (
    AUTH,
    DrillOut,
    DrillRunOut,
    DrillRunsOut,
    DrillsOut,
    JournalOut,
    RecordedOut,
    ScheduleOut,
    SchedulesOut,
    errors,
)
from controller.drill_host import DRILL_KINDS, EngineController
from controller.status import entry_dict
from drills import dryrun
from drills.model import ScheduleModel, load_scenario
from drills.schedule import ScheduleError, ScheduleNotFound

router = APIRouter(prefix="/api/v1/drills", tags=["drills"], responses=AUTH)
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
CRON_HELP = "minute hour day month weekday, each `*`, `*/N` or a list of values (drills.yaml takes any cron line)"


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drill: Annotated[str, Field(min_length=1, max_length=200)]


class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["drill_started", "drill_finished", "drill_skipped"]
    reason: Annotated[str, Field(max_length=2000)]
    status: Annotated[str, Field(max_length=32)] | None = None
    duration_s: Annotated[StrictFloat, Field(ge=0)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ScheduleRequest(BaseModel):
    """Exactly one of `cron` (a five-field crontab line) or `at` (one run at that time)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["cron"], "properties": {"cron": {"type": "string"}, "at": {"type": "null"}}},
                  {"required": ["at"], "properties": {"at": {"type": "string"}, "cron": {"type": "null"}}}]})
    id: Name
    drill: Name
    cron: Annotated[str, Field(max_length=100, pattern=CRON, description=CRON_HELP)] | None = None
    at: When | None = None
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _one_trigger(self) -> "ScheduleRequest":
        if (self.cron is None) == (self.at is None):
            raise ValueError("give exactly one of cron or at")
        return self


@router.get("", response_model=DrillsOut)
async def scenarios(_: Viewer, drills: DrillsDep) -> dict:
    await drills.ensure_started()
    out: list[dict[str, Any]] = []
    for name, path in drills.library().items():
        try:
            s = load_scenario(path, drills.cfg)
            out.append({"name": name, "description": s.description, "target": s.target,
                        "fault": s.fault.describe(), "source": s.source, "valid": True})
        except ConfigError as exc:
            out.append({"name": name, "valid": False, "problems": [str(p) for p in exc.problems]})
    return {"drills": out}


@router.get("/history", response_model=JournalOut)
async def history(_: Viewer, engine: EngineDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    entries = await asyncio.to_thread(engine.journal.query, kinds=DRILL_KINDS, limit=limit)
    return {"entries": [entry_dict(e) for e in entries]}


@router.get("/runs", response_model=DrillRunsOut)
async def runs(_: Viewer, drills: DrillsDep) -> dict:
    return {"runs": [{k: v for k, v in r.items() if k != "report"} for r in drills.runs.values()]}


@router.post("/runs", status_code=202, response_model=DrillRunOut, responses=errors(404, 409, 413))
async def start(body: RunRequest, who: Operator, drills: DrillsDep) -> dict:
    await drills.ensure_started()
    return await drills.start(body.drill, who.name)


@router.get("/runs/{run_id}", response_model=DrillRunOut, responses=errors(404))
async def run_status(run_id: Annotated[str, Path(max_length=200)], _: Viewer, drills: DrillsDep) -> dict:
    return drills.run(run_id)


@router.post("/journal", status_code=201, response_model=RecordedOut, responses=errors(413))
async def record(body: RecordRequest, who: Operator, engine: EngineDep) -> dict:
    await EngineController(engine, who.name).record(body.kind, reason=body.reason, status=body.status,
                                                    duration_s=body.duration_s, data=body.data)
    return {"recorded": body.kind}


@router.get("/schedules", response_model=SchedulesOut)
async def schedules(_: Viewer, drills: DrillsDep) -> dict:
    await drills.ensure_started()
    return {"schedules": drills.scheduler.list()}


@router.post("/schedules", status_code=201, response_model=ScheduleOut, responses=errors(404, 409, 413))
async def add_schedule(body: ScheduleRequest, who: Operator, drills: DrillsDep) -> dict:
    await drills.ensure_started()
    try:
        model = ScheduleModel(**body.model_dump())
    except ValueError as exc:  # what the body's schema cannot say (a cron line that names no time)
        raise HTTPException(422, str(exc)) from exc
    try:
        return await drills.scheduler.add(model, who.name)
    except ScheduleNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except ScheduleError as exc:  # the id is taken (by the API or drills.yaml)
        raise HTTPException(409, str(exc)) from exc


@router.delete("/schedules/{schedule_id}", status_code=204, response_class=Response, response_model=None,
                responses=errors(404, 409))
async def remove_schedule(schedule_id: Annotated[str, Path(max_length=63)], _: Operator, drills: DrillsDep) -> None:
    await drills.ensure_started()
    try:
        await drills.scheduler.remove(schedule_id)
    except ScheduleNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except ScheduleError as exc:  # from drills.yaml: change the file
        raise HTTPException(409, str(exc)) from exc


@router.get("/{name}", response_model=DrillOut, responses=errors(404))
async def scenario(name: Annotated[str, Path(max_length=200)], _: Viewer, drills: DrillsDep) -> dict:
    s = drills.scenario(name)
    return {"name": s.name, "scenario": s.model_dump(mode="json"), "dry_run": dryrun.text(s, drills.cfg),
            "expected_decision": dryrun.expected_decision(s, drills.cfg)}
