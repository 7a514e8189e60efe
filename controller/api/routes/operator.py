"""The operator's actions on the site: failover, switchover, failback, the named switches of the managed
servers (each with `?dry_run=true`, which answers the plan built from the live state and runs nothing) and
the mode (admin).

Plans come from controller.operator_plans, where the drills and the checklists get theirs too. A plan
that makes no sense now, or a plan already running, is a 409 (controller.api.errors).
"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from ccfo.domain.plan import Plan
from ccfo.platform.auth import Principal
from controller.api.deps import Admin, EngineDep, Operator, Viewer, known_host
from controller.api.models import (
    FailbackRequest,
    FailoverRequest,
    ModeRequest,
    SwitchName,
    SwitchoverRequest,
    SwitchRequest,
)
from controller.api.responses import AUTH, DryRunOut, ModeOut, PlanRecordOut, SwitchesOut, errors
from controller.engine import Engine
from controller.operator_plans import OperatorAction, operator_plan, switch_plan, switches

router = APIRouter(prefix="/api/v1", tags=["operator"], responses=AUTH | errors(413))
DRY_RUN = TypeAdapter(DryRunOut)
DryRun = Annotated[bool, Query(description="answer the plan that would run now (200) and run nothing")]
ACTION_ANSWERS: dict[int | str, dict] = {
    200: {"model": DryRunOut, "description": "dry run: the plan that would run now; nothing was run"},
    202: {"model": PlanRecordOut, "description": "the plan started"},
} | errors(409)


async def _act(engine: Engine, who: Principal, reason: str, plan: Plan, dry_run: bool) -> dict | JSONResponse:
    if dry_run:  # 200 and its own body: checked against DryRunOut here, as FastAPI checks the 202 one
        answer = DRY_RUN.validate_python({"dry_run": True, "site": engine.site.name, "plan": plan.to_dict()})
        return JSONResponse(DRY_RUN.dump_python(answer, mode="json"), status_code=200)
    return (await engine.submit(plan, who.name, reason)).to_dict()


def _why(who: Principal, reason: str) -> str:
    return f"operator {who.name}: {reason}"


@router.post("/failover", status_code=202, response_model=PlanRecordOut, responses=ACTION_ANSWERS)
async def failover(body: FailoverRequest, who: Operator, engine: EngineDep,
                   dry_run: DryRun = False) -> dict | JSONResponse:
    plan = operator_plan(engine, OperatorAction.FAILOVER, _why(who, body.reason), to=known_host(engine, body.to))
    return await _act(engine, who, body.reason, plan, dry_run)


@router.post("/switchover", status_code=202, response_model=PlanRecordOut, responses=ACTION_ANSWERS)
async def switchover(body: SwitchoverRequest, who: Operator, engine: EngineDep,
                     dry_run: DryRun = False) -> dict | JSONResponse:
    plan = operator_plan(engine, OperatorAction.SWITCHOVER, _why(who, body.reason), to=known_host(engine, body.to),
                         drain_timeout_s=body.drain_timeout_s)
    return await _act(engine, who, body.reason, plan, dry_run)


@router.post("/failback", status_code=202, response_model=PlanRecordOut, responses=ACTION_ANSWERS)
async def failback(body: FailbackRequest, who: Operator, engine: EngineDep,
                   dry_run: DryRun = False) -> dict | JSONResponse:
    plan = operator_plan(engine, OperatorAction.FAILBACK, _why(who, body.reason),
                         drain_timeout_s=body.drain_timeout_s)
    return await _act(engine, who, body.reason, plan, dry_run)


@router.get("/switches", response_model=SwitchesOut)
async def list_switches(who: Viewer, engine: EngineDep) -> dict:
    """The named switches (switches.yaml): each direction's steps as the plan that would run now."""
    out = []
    for s in switches(engine):
        plans = {d: switch_plan(engine, s.id, "listing", inverse=d == "inverse").to_dict()
                 for d in ("forward", "inverse")}
        out.append({"id": s.id, "description": s.description, "inverse_description": s.title(inverse=True),
                    "source": s.source, "steps": plans["forward"]["steps"], "inverse": plans["inverse"]["steps"]})
    return {"switches": out}


@router.post("/switches/{name}", status_code=202, response_model=PlanRecordOut,
             responses=ACTION_ANSWERS | errors(404))
async def run_switch(name: SwitchName, body: SwitchRequest, who: Operator, engine: EngineDep,
                     dry_run: DryRun = False) -> dict | JSONResponse:
    """Run a named switch (or its inverse) as a plan: journaled like a failover, one plan at a time."""
    plan = switch_plan(engine, name, _why(who, body.reason), inverse=body.inverse)
    return await _act(engine, who, body.reason, plan, dry_run)


@router.put("/mode", response_model=ModeOut)
async def set_mode(body: ModeRequest, who: Admin, engine: EngineDep) -> dict:
    state = await engine.set_mode(body.mode, who.name, body.reason)
    return {"mode": state.mode.value}
