"""The controller's side of drills run in the controller process: the adapters the drills package needs.

* `EngineController` is the drill runner's `ControllerPort` (drills.target) on the engine itself, acting
  as `who`: the status read model, the plans, approvals, operator plans (built by
  controller.operator_plans, as the API builds them) and the journal.
* `EngineDrillHost` is the `DrillHost` a `drills.manager.DrillManager` runs drills on: the config, the
  agents and PDU the executor already has, where drill reports and schedules live, notifications.
Drills never import the controller (`.importlinter`: drills-below-controller); the controller hands them
these adapters instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path
from typing import Any

from ccfo.domain.plan import PlanRefused
from ccfo.ports import Claim
from controller.admission import claim_drill
from controller.engine import Engine
from controller.operations import PlanNotFound, Refused
from controller.operator_plans import OperatorAction, operator_plan
from controller.status import entry_dict
from controller.status import status as status_view
from controller.store import PlanStatus
from drills.target import ControllerError

DRILL_KINDS = ("drill_started", "drill_finished", "drill_skipped")


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

    async def _op(self, op: Any, plan_id: str, reason: str) -> dict[str, Any]:
        try:
            return (await op(plan_id, self.who, reason)).to_dict()  # type: ignore[no-any-return]
        except (PlanNotFound, Refused) as exc:
            raise ControllerError(str(exc)) from exc

    async def approve(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._op(functools.partial(self.engine.approve, within=self.claim), plan_id, reason)

    async def reject(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._op(self.engine.reject, plan_id, reason)

    async def _submit(self, action: OperatorAction, reason: str, **kw: Any) -> dict[str, Any]:
        try:
            plan = operator_plan(self.engine, action, f"{self.who}: {reason}", **kw)
            return (await self.engine.submit(plan, self.who, reason, within=self.claim)).to_dict()
        except (PlanRefused, Refused) as exc:
            raise ControllerError(str(exc)) from exc

    async def failback(self, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        return await self._submit(OperatorAction.FAILBACK, reason, drain_timeout_s=drain_timeout_s)

    async def switchover(self, to: str, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        return await self._submit(OperatorAction.SWITCHOVER, reason, to=to, drain_timeout_s=drain_timeout_s)

    async def plan_steps(self, plan_id: str) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.engine.journal.query, kinds=("step_finished", "step_failed"),
                                          plan_id=plan_id, limit=None, newest_first=False)
        return [entry_dict(e) for e in entries]

    async def history(self, limit: int) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.engine.journal.query, kinds=DRILL_KINDS, limit=limit)
        return [entry_dict(e) for e in entries]

    async def record(self, kind: str, *, reason: str, status: str | None = None, duration_s: float | None = None,
                     data: dict[str, Any] | None = None) -> None:
        await self.engine.record(kind, actor=self.who, reason=reason, status=status, duration_s=duration_s,
                                 data=data or {})

    async def aclose(self) -> None:
        return None


class EngineDrillHost:
    """The DrillHost (drills.manager) of a controller process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cfg = engine.cfg
        self.agents, self.fencer = engine.executor.agents, engine.executor.fencer
        self.data_dir = Path(engine.journal.path).parent  # drills.sqlite and reports/drills live beside the journal

    def controller(self, who: str, claim: Claim | None = None) -> EngineController:
        return EngineController(self.engine, who, claim)

    async def claim(self, run_id: str, drill: str, who: str) -> tuple[Claim | None, str | None]:
        return await claim_drill(self.engine.claims, run_id, drill, who)

    async def release(self, claim: Claim) -> None:
        await self.engine.claims.release(claim)

    async def notify(self, event: str, message: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a notifier never breaks the caller
            await self.engine.executor.notifier.notify(event, message, data)
