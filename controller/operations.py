"""The operator's decisions on plans: submit, approve, reject, resume, abort (a part of the Engine).

Every one that starts a plan goes through `Engine._admit`, the one admission of work (a claim on the
site, released when the plan ends). Decisions on one plan are serialized, so the second of two requests
that arrive together reads the state the first left and is refused naming it (HTTP 409). Kept apart
from the control loop (controller.engine) only for size; it is the Engine's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ccfo.domain.plan import Plan
from ccfo.domain.proposals import Change, Declined, Supersede, changed_footing, situation
from ccfo.domain.rules import Decision
from ccfo.domain.state import Mode, SiteState
from ccfo.ports import Claim, Clock, Work, WorkClaim, WorkKind
from controller.journal import EntryKind
from controller.store import PlanRecord, PlanStatus, Store, new_plan_id

log = logging.getLogger("ccfo.engine")


class Refused(Exception):
    """An operator request that cannot be carried out now; the message says why (HTTP 409)."""


class PlanNotFound(KeyError):
    """No plan with this id (HTTP 404). A KeyError, as before, for callers that catch that."""

    def __str__(self) -> str:
        return f"no plan {self.args[0]}"


class PlanOperations:
    """The Engine's operator actions on plans; the attributes below are the Engine's."""

    store: Store
    clock: Clock
    claims: WorkClaim
    state: SiteState
    decision: Decision | None
    _declined: Declined | None
    _plan_locks: weakref.WeakValueDictionary[str, asyncio.Lock]

    async def _admit(self, work: Work, within: Claim | None,
                     prepare: Callable[[], Awaitable[PlanRecord]]) -> PlanRecord:
        raise NotImplementedError  # controller.engine.Engine._admit

    async def _journal(self, kind: str, **fields: Any) -> None:
        raise NotImplementedError  # controller.engine.Engine._journal

    def _must_act(self) -> None:
        raise NotImplementedError  # controller.engine.Engine._must_act: Refused on a follower

    async def _carry_out(self, change: Change, now: float) -> None:
        raise NotImplementedError  # controller.engine.Engine._carry_out


    @contextlib.asynccontextmanager
    async def _deciding(self, plan_id: str) -> AsyncIterator[None]:
        """Decisions on one plan (approve, reject, resume, abort) one at a time: the second request reads
        the state the first left and is refused naming it."""
        lock = self._plan_locks.setdefault(plan_id, asyncio.Lock())
        async with lock:
            yield

    async def submit(self, plan: Plan, who: str, reason: str, *, within: Claim | None = None) -> PlanRecord:
        """Operator-requested plan (failover, switchover, failback): runs at once, approval is implicit."""
        if self.state.mode is Mode.MAINTENANCE:
            log.info("operator %s runs %s in maintenance mode", who, plan.title)
        plan_id = new_plan_id()

        async def prepare() -> PlanRecord:
            rec = await asyncio.to_thread(self.store.add_plan, plan, status=PlanStatus.RUNNING, source="operator",
                                          requested_by=who, reason=reason, now=self.clock.now(), plan_id=plan_id)
            await self._journal(EntryKind.OPERATOR_ACTION, plan_id=rec.id, actor=who, reason=reason,
                                data={"action": plan.action.value, "title": plan.title})
            await self._journal(EntryKind.PLAN_STARTED, plan_id=rec.id, actor=who, reason=reason,
                                data=rec.to_dict())
            return rec
        return await self._admit(Work(WorkKind.PLAN, plan_id, plan.title, who), within, prepare)

    async def approve(self, plan_id: str, who: str, reason: str, *, within: Claim | None = None) -> PlanRecord:
        async with self._deciding(plan_id):
            proposed = self._plan(plan_id, {PlanStatus.PROPOSED})

            async def prepare() -> PlanRecord:
                rec = self._plan(plan_id, {PlanStatus.PROPOSED}, claimed=True)
                stale = changed_footing(rec.plan, self.state)
                if stale is not None:  # its steps are for roles the site no longer has: never run them
                    await self._carry_out(Supersede(plan_id, stale), self.clock.now())
                    raise Refused(f"plan {plan_id} is not run: {stale}; it is withdrawn, and the controller "
                                  "proposes a new plan if the situation still needs one")
                rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(),
                                              status=PlanStatus.RUNNING, decided_by=who, decided_reason=reason)
                await self._journal(EntryKind.PLAN_APPROVED, plan_id=rec.id, actor=who, reason=reason)
                await self._journal(EntryKind.PLAN_STARTED, plan_id=rec.id, actor=who, reason=reason,
                                    data=rec.to_dict())
                return rec
            return await self._admit(Work(WorkKind.PLAN, plan_id, proposed.plan.title, who), within, prepare)

    async def reject(self, plan_id: str, who: str, reason: str) -> PlanRecord:
        async with self._deciding(plan_id):
            self._must_act()
            rec = self._plan(plan_id, {PlanStatus.PROPOSED})
            rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.REJECTED,
                                          decided_by=who, decided_reason=reason)
            # not proposed again until the situation changes
            self._declined = Declined(situation(self.decision), rec.plan.steps) if self.decision else None
            await self._journal(EntryKind.PLAN_REJECTED, plan_id=rec.id, actor=who, reason=reason)
            return rec

    async def resume(self, plan_id: str, who: str, reason: str, *, within: Claim | None = None) -> PlanRecord:
        allowed = {PlanStatus.INTERRUPTED, PlanStatus.FAILED}
        async with self._deciding(plan_id):
            stopped = self._plan(plan_id, allowed)

            async def prepare() -> PlanRecord:
                rec = self._plan(plan_id, allowed, claimed=True)
                await self._journal(EntryKind.PLAN_RESUMED, plan_id=rec.id, actor=who, reason=reason,
                                    data={"from_step": rec.next_step})
                if rec.status is PlanStatus.FAILED:  # retry the failed step, with fresh agent action ids
                    rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(),
                                                  next_step=max(0, rec.next_step - 1), attempt=rec.attempt + 1)
                return rec
            return await self._admit(Work(WorkKind.PLAN, plan_id, stopped.plan.title, who), within, prepare)

    async def abort(self, plan_id: str, who: str, reason: str) -> PlanRecord:
        async with self._deciding(plan_id):
            self._must_act()
            rec = self._plan(plan_id, {PlanStatus.INTERRUPTED, PlanStatus.FAILED, PlanStatus.PROPOSED})
            rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.ABORTED,
                                          decided_by=who, decided_reason=reason)
            await self._journal(EntryKind.PLAN_ABORTED, plan_id=rec.id, actor=who, reason=reason)
            return rec

    def _plan(self, plan_id: str, allowed: set[PlanStatus], *, claimed: bool = False) -> PlanRecord:
        """The plan, if its status allows the operation; `claimed`: the caller holds its claim."""
        rec = self.store.get_plan(plan_id)
        if rec is None:
            raise PlanNotFound(plan_id)
        if not claimed and any(w.kind is WorkKind.PLAN and w.id == plan_id for w in self.claims.holders()):
            raise Refused(f"plan {plan_id} ({rec.plan.title}) is running; this needs it "
                          + " or ".join(sorted(s.value for s in allowed)))
        if rec.status not in allowed:
            raise Refused(f"plan {plan_id} is {rec.status.value}; this needs it "
                          + " or ".join(sorted(s.value for s in allowed)))
        return rec
