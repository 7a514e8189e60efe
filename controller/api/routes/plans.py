"""The plans: list and read them, and the operator's decisions on one (approve, reject, resume, abort,
confirm that a host is off). Refusals (409) and unknown plans (404) come from controller.api.errors."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from controller.api.deps import EngineDep, Operator, Viewer, known_host
from controller.api.models import PLAN_STATUSES, ConfirmOffRequest, DecisionRequest, PlanId
from controller.api.responses import AUTH, ConfirmedOut, PlanRecordOut, PlansOut, errors
from controller.operations import PlanNotFound
from controller.store import PlanStatus

router = APIRouter(prefix="/api/v1/plans", tags=["plans"], responses=AUTH)
DECIDE = errors(404, 409, 413)


@router.get("", response_model=PlansOut)
async def list_plans(_: Viewer, engine: EngineDep,
                     status_: Annotated[str | None, Query(alias="status", max_length=200, pattern=PLAN_STATUSES,
                                                          description="plan statuses, comma-separated")] = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    wanted = {PlanStatus(s) for s in status_.split(",")} if status_ else None
    plans = await asyncio.to_thread(engine.store.plans, wanted, limit)
    return {"plans": [p.to_dict() for p in plans]}


@router.get("/{plan_id}", response_model=PlanRecordOut, responses=errors(404))
async def get_plan(plan_id: PlanId, _: Viewer, engine: EngineDep) -> dict:
    rec = engine.store.get_plan(plan_id)
    if rec is None:
        raise PlanNotFound(plan_id)
    return rec.to_dict()


@router.post("/{plan_id}/approve", response_model=PlanRecordOut, responses=DECIDE)
async def approve(plan_id: PlanId, body: DecisionRequest, who: Operator, engine: EngineDep) -> dict:
    return (await engine.approve(plan_id, who.name, body.reason)).to_dict()


@router.post("/{plan_id}/reject", response_model=PlanRecordOut, responses=DECIDE)
async def reject(plan_id: PlanId, body: DecisionRequest, who: Operator, engine: EngineDep) -> dict:
    return (await engine.reject(plan_id, who.name, body.reason)).to_dict()


@router.post("/{plan_id}/resume", response_model=PlanRecordOut, responses=DECIDE)
async def resume(plan_id: PlanId, body: DecisionRequest, who: Operator, engine: EngineDep) -> dict:
    return (await engine.resume(plan_id, who.name, body.reason)).to_dict()


@router.post("/{plan_id}/abort", response_model=PlanRecordOut, responses=DECIDE)
async def abort(plan_id: PlanId, body: DecisionRequest, who: Operator, engine: EngineDep) -> dict:
    return (await engine.abort(plan_id, who.name, body.reason)).to_dict()


@router.post("/{plan_id}/confirm-off", response_model=ConfirmedOut, responses=DECIDE)
async def confirm_off(plan_id: PlanId, body: ConfirmOffRequest, who: Operator, engine: EngineDep) -> dict:
    await engine.confirm_off(plan_id, known_host(engine, body.host), who.name, body.reason)
    return {"confirmed": body.host}


