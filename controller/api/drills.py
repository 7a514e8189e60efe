"""The drills API under /api/v1/drills: scenarios and their dry run, runs (started here as background
tasks this module owns, one at a time), history (from the journal), schedules, and the journal entry an
external runner (`ccfo drill run`) records its run with.

A run started here drives the controller in-process (`EngineController`: the engine's own status, plans,
approvals and journal), the site through the agents and the PDU the executor already has, and, for a lab
drill, the lab's control API found next to the config directory (`ccfo lab up` writes lab.json there).
No `from __future__ import annotations`: FastAPI resolves the dependency annotations at declaration.
"""

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from ccfo.config.yamlpos import ConfigError
from ccfo.domain.plan import PlanRefused, build_failback, build_switchover
from ccfo.platform.auth import Principal, Role
from ccfo.ports import Claim
from controller.admission import claim_drill
from controller.api.views import status as status_view
from controller.engine import Engine, Refused
from controller.store import PlanStatus
from drills import dryrun
from drills.model import ScenarioModel, ScheduleModel, find, library, load_drills_config, load_scenario
from drills.runner import drill_in_progress, make_runner, new_run_id, why_not_now
from drills.schedule import DrillScheduler, ScheduleError
from drills.target import ControllerError

log = logging.getLogger("ccfo.api.drills")
DRILL_KINDS = ("drill_started", "drill_finished", "drill_skipped")
_MANAGERS: "weakref.WeakKeyDictionary[Engine, DrillManager]" = weakref.WeakKeyDictionary()


def manager_for(engine: Engine) -> "DrillManager":
    """The drill manager serving this engine's API (its runs and schedules)."""
    return _MANAGERS[engine]


class EngineController:
    """The runner's ControllerPort on the engine itself, acting as `who`."""

    def __init__(self, engine: Engine, who: str, claim: Claim | None = None) -> None:
        self.engine, self.who = engine, who
        self.claim = claim  # the drill run's claim: the plans it starts run inside it

    async def status(self) -> dict[str, Any]:
        return status_view(self.engine)

    async def plans(self, statuses: str) -> list[dict[str, Any]]:
        wanted = {PlanStatus(s) for s in statuses.split(",")} if statuses else None
        return [p.to_dict() for p in await asyncio.to_thread(self.engine.store.plans, wanted, 100)]

    async def plan(self, plan_id: str) -> dict[str, Any]:
        rec = self.engine.store.get_plan(plan_id)
        if rec is None:
            raise ControllerError(f"no plan {plan_id}")
        return rec.to_dict()

    async def _op(self, op: Callable[..., Any], plan_id: str, reason: str) -> dict[str, Any]:
        try:
            return (await op(plan_id, self.who, reason)).to_dict()  # type: ignore[no-any-return]
        except (KeyError, Refused) as exc:
            raise ControllerError(str(exc)) from exc

    async def approve(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._op(functools.partial(self.engine.approve, within=self.claim), plan_id, reason)

    async def reject(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._op(self.engine.reject, plan_id, reason)

    async def _submit(self, build: Callable[[], Any], reason: str) -> dict[str, Any]:
        try:
            return (await self.engine.submit(build(), self.who, reason, within=self.claim)).to_dict()
        except (PlanRefused, Refused) as exc:
            raise ControllerError(str(exc)) from exc

    async def failback(self, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        e = self.engine
        return await self._submit(lambda: build_failback(e.site, e.state, drain_timeout_s, f"{self.who}: {reason}"),
                                  reason)

    async def switchover(self, to: str, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        e = self.engine
        return await self._submit(lambda: build_switchover(e.site, e.state, to, drain_timeout_s,
                                                           f"{self.who}: {reason}"), reason)

    async def plan_steps(self, plan_id: str) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.engine.journal.query, kinds=("step_finished", "step_failed"),
                                          plan_id=plan_id, limit=None, newest_first=False)
        return [_entry(e) for e in entries]

    async def history(self, limit: int) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.engine.journal.query, kinds=DRILL_KINDS, limit=limit)
        return [_entry(e) for e in entries]

    async def record(self, kind: str, *, reason: str, status: str | None = None, duration_s: float | None = None,
                     data: dict[str, Any] | None = None) -> None:
        await self.engine.record(kind, actor=self.who, reason=reason, status=status, duration_s=duration_s,
                                 data=data or {})

    async def aclose(self) -> None:
        return None


def _entry(e: Any) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "kind": e.kind, "actor": e.actor, "reason": e.reason, "status": e.status,
            "duration_s": e.duration_s, "plan_id": e.plan_id, "step": e.step, "data": e.data}


class DrillManager:
    """Runs drills in the controller process (one at a time) and fires their schedules."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.cfg = engine, engine.cfg
        self.runs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        try:
            schedules = load_drills_config(self.cfg.directory).schedules
        except ConfigError as exc:
            log.error("drills.yaml ignored: %s", exc)
            schedules = []
        self.extra = [Path(self.cfg.directory) / "drills"]  # a site's own drills: CONFIG/drills/*.yaml
        store = Path(engine.journal.path).with_name("drills.sqlite")
        self.scheduler = DrillScheduler(schedules, store, self.fire, lambda name: name in library(self.extra))
        self._started = False
        self._lock = asyncio.Lock()
        self._start_task: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # in the controller's loop: schedules run from start-up
            self._start_task = asyncio.get_running_loop().create_task(self.ensure_started())

    async def ensure_started(self) -> None:
        if not self._started:
            self._started = True
            try:
                await self.scheduler.start()
            except Exception:  # the API keeps serving; the schedules say why in the log
                log.exception("drill schedules not started")

    def library(self) -> dict[str, Path]:
        return library(self.extra)

    def scenario(self, name: str) -> ScenarioModel:
        try:
            return load_scenario(find(name, self.extra), self.cfg)
        except ConfigError as exc:
            raise HTTPException(404 if "no drill named" in str(exc) else 422, str(exc)) from exc

    async def guard(self, scenario: ScenarioModel) -> str | None:
        proposed = await asyncio.to_thread(self.engine.store.plans, {PlanStatus.PROPOSED}, 5)
        why = why_not_now(status_view(self.engine), [p.to_dict() for p in proposed], scenario.steady_state.state)
        other = drill_in_progress(await EngineController(self.engine, "guard").history(50), time.time())
        mine = next((f"drill run {run_id} is running" for run_id in self.tasks), None)
        return why or mine or other

    async def skip(self, name: str, why: str, who: str) -> None:
        reason = f"drill {name} skipped: {why}"
        await EngineController(self.engine, who).record("drill_skipped", reason=reason, status="skipped",
                                                        data={"drill": name, "why": why})
        with contextlib.suppress(Exception):  # a notifier never breaks the caller
            await self.engine.executor.notifier.notify("drill_skipped", reason, {"drill": name})

    async def start(self, name: str, who: str) -> dict[str, Any]:
        scenario = self.scenario(name)
        run_id = new_run_id(name)
        why = await self.guard(scenario)  # a drill that cannot run now does not hold the site, even briefly
        claim, why = await claim_drill(self.engine.claims, run_id, name, who) if not why else (None, why)
        async with self._lock:  # the guard and the start, as one: two requests cannot both pass
            why = why or await self.guard(scenario)  # again, holding the claim
            ex = self.engine.executor
            try:
                runner = None if why else make_runner(
                    scenario, self.cfg, EngineController(self.engine, who, claim), ex.agents, ex.fencer,
                    lab_dir=None, reports_dir=Path(self.engine.journal.path).parent / "reports" / "drills", who=who,
                    run_id=run_id)
            except Exception as exc:  # no lab running, unreadable drills.yaml: say so, start nothing
                why = f"{type(exc).__name__}: {exc}"
            if why or runner is None or claim is None:
                if claim is not None:
                    await self.engine.claims.release(claim)
                await self.skip(name, why or "not startable", who)
                raise HTTPException(409, f"drill {name} not started: {why}")
            rec = {"id": run_id, "drill": name, "status": "running", "by": who, "report": None}
            self.runs[run_id] = rec
            self.tasks[run_id] = asyncio.create_task(self._run(rec, runner, claim), name=f"drill-{run_id}")
        return rec

    async def _run(self, rec: dict[str, Any], runner: Any, claim: Claim) -> None:
        try:
            doc = await runner.run()
            rec.update(status=doc["status"], report=doc)
        except asyncio.CancelledError:
            rec["status"] = "cancelled"
            raise
        except Exception as exc:
            log.exception("drill run %s crashed", rec["id"])
            rec.update(status="error", error=str(exc))
        finally:
            self.tasks.pop(rec["id"], None)
            await self.engine.claims.release(claim)
            with contextlib.suppress(Exception):
                await runner.target.aclose()

    async def stop(self) -> None:
        """Cancel the runs in progress (their runners kill their SIPp processes) and the schedules."""
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await task
        if self._start_task is not None:
            with contextlib.suppress(BaseException):
                await self._start_task
        await self.scheduler.stop()

    async def fire(self, schedule: ScheduleModel) -> None:
        who = f"schedule {schedule.id}"
        try:
            await self.start(schedule.drill, who)
        except HTTPException as exc:  # skipped (journaled and notified by start) or not startable
            log.warning("scheduled drill %s (%s): %s", schedule.drill, schedule.id, exc.detail)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drill: Annotated[str, Field(min_length=1, max_length=200)]


class RecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["drill_started", "drill_finished", "drill_skipped"]
    reason: Annotated[str, Field(max_length=2000)]
    status: Annotated[str, Field(max_length=32)] | None = None
    duration_s: Annotated[float, Field(ge=0)] | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
    drill: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
    cron: Annotated[str, Field(max_length=100)] | None = None
    at: datetime | None = None
    enabled: bool = True


def router(engine: Engine, need: Callable[[Role], Callable[..., Principal]]) -> APIRouter:
    """The drills routes; `need(role)` is the app's role check (controller.api.app)."""
    api = APIRouter(prefix="/api/v1/drills", tags=["drills"])
    manager = DrillManager(engine)
    _MANAGERS[engine] = manager
    Viewer = Annotated[Principal, Depends(need(Role.VIEWER))]
    Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]

    @api.get("")
    async def scenarios(_: Viewer) -> dict[str, Any]:
        await manager.ensure_started()
        out = []
        for name, path in manager.library().items():
            try:
                s = load_scenario(path, engine.cfg)
                out.append({"name": name, "description": s.description, "target": s.target,
                            "fault": s.fault.describe(), "source": s.source, "valid": True})
            except ConfigError as exc:
                out.append({"name": name, "valid": False, "problems": [str(p) for p in exc.problems]})
        return {"drills": out}

    @api.get("/history")
    async def history(_: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        entries = await asyncio.to_thread(engine.journal.query, kinds=DRILL_KINDS, limit=limit)
        return {"entries": [_entry(e) for e in entries]}

    @api.get("/runs")
    async def runs(_: Viewer) -> dict[str, Any]:
        return {"runs": [{k: v for k, v in r.items() if k != "report"} for r in manager.runs.values()]}

    @api.post("/runs", status_code=202)
    async def start(body: RunRequest, who: Operator) -> dict[str, Any]:
        await manager.ensure_started()
        return await manager.start(body.drill, who.name)

    @api.get("/runs/{run_id}")
    async def run_status(run_id: str, _: Viewer) -> dict[str, Any]:
        if run_id not in manager.runs:
            raise HTTPException(404, f"no drill run {run_id} in this controller process")
        return manager.runs[run_id]

    @api.post("/journal", status_code=201)
    async def record(body: RecordRequest, who: Operator) -> dict[str, str]:
        await EngineController(engine, who.name).record(body.kind, reason=body.reason, status=body.status,
                                                        duration_s=body.duration_s, data=body.data)
        return {"recorded": body.kind}

    @api.get("/schedules")
    async def schedules(_: Viewer) -> dict[str, Any]:
        await manager.ensure_started()
        return {"schedules": manager.scheduler.list()}

    @api.post("/schedules", status_code=201)
    async def add_schedule(body: ScheduleRequest, who: Operator) -> dict[str, Any]:
        await manager.ensure_started()
        try:
            model = ScheduleModel(**body.model_dump())
            return await manager.scheduler.add(model, who.name)
        except (ScheduleError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc

    @api.delete("/schedules/{schedule_id}", status_code=204)
    async def remove_schedule(schedule_id: str, _: Operator) -> None:
        await manager.ensure_started()
        try:
            await manager.scheduler.remove(schedule_id)
        except ScheduleError as exc:
            raise HTTPException(404, str(exc)) from exc

    @api.get("/{name}")
    async def scenario(name: str, _: Viewer) -> dict[str, Any]:
        s = manager.scenario(name)
        return {"name": s.name, "scenario": s.model_dump(mode="json"), "dry_run": dryrun.text(s, engine.cfg),
                "expected_decision": dryrun.expected_decision(s, engine.cfg)}

    return api
