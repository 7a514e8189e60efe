"""The executor: the only code in the controller that changes the world.

It carries a stored plan out step by step through the agents' control APIs (and the PDU for fencing),
verifies each step against a fresh agent report, and journals every step before and after (start,
end, duration, status, output, error; end and duration in `finally`). It stops at the first failed step
that is not best-effort, leaving the plan failed with what was and was not done. It advances the
plan's `next_step` in the store after every step, so a controller killed mid-plan can resume exactly
there; agent actions carry an id derived from (plan, step), so a step the agent already ran before the
crash is not run twice.

Controller HA: no step starts unless this controller acts now (`Leadership.is_acting()`), and every agent
action carries the leader's term. A leader that lost its lease, or whose term an agent refuses (it has
seen a newer leader's), stops before the next step: the plan is left INTERRUPTED, saying why, for the
acting leader to resume or abort. Nothing is started by a deposed leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ccfo.domain.checks import checks_hold, service_is
from ccfo.domain.health import HostHealth, ServiceState
from ccfo.domain.plan import Step, StepKind
from ccfo.domain.state import SiteState
from ccfo.platform.clock import SYSTEM_CLOCK
from ccfo.ports import (
    AgentActionFailed,
    AgentClient,
    AgentUnreachable,
    Clock,
    FenceFailed,
    Fencer,
    InboundRouter,
    Leadership,
    Notifier,
    RouteFailed,
    TermRefused,
)
from controller.journal import EntryKind, Journal
from controller.leadership import SoleController
from controller.store import PlanRecord, PlanStatus, Store

log = logging.getLogger("ccfo.executor")

POLL_S = 0.05


class StepFailed(Exception):
    """A step did not reach its goal; the message says what was seen."""


class Deposed(Exception):
    """This controller may no longer act (lease lapsed, or an agent has seen a newer leader's term)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: PlanStatus
    state: SiteState
    error: str | None = None


class Executor:
    def __init__(self, agents: AgentClient, fencer: Fencer, notifier: Notifier, journal: Journal, store: Store,
                 clock: Clock = SYSTEM_CLOCK, host_ids: tuple[str, ...] = (),
                 router: InboundRouter | None = None, leadership: Leadership | None = None) -> None:
        self.agents, self.fencer, self.notifier = agents, fencer, notifier
        self.leadership: Leadership = leadership or SoleController()
        self.journal, self.store, self.clock = journal, store, clock
        self.host_ids = host_ids
        self.router = router  # routing.method kamailio: the SIP front; None: each agent's AstDB
        self._confirmations: dict[tuple[str, str], asyncio.Event] = {}
        self._attempt = 0
        self.progress: Callable[[PlanRecord, int, str], Awaitable[None]] | None = None

    def confirm_off(self, plan_id: str, host: str) -> bool:
        """An operator says the host is powered off (fencing without a PDU). True if a step was waiting."""
        event = self._confirmations.get((plan_id, host))
        if event is None:
            return False
        event.set()
        return True

    def waiting_confirmation(self) -> list[tuple[str, str]]:
        return [k for k, e in self._confirmations.items() if not e.is_set()]

    async def _journal(self, kind: str, **fields: object) -> None:
        await asyncio.to_thread(self.journal.append, kind, ts=self.clock.now(), **fields)  # type: ignore[arg-type]

    async def run(self, rec: PlanRecord, state: SiteState,
                  on_state: Callable[[SiteState], Awaitable[None]]) -> Outcome:
        """Run `rec` from its next step. Returns the final status and the site state it left."""
        rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.RUNNING)
        self._attempt = rec.attempt
        for index in range(rec.next_step, len(rec.plan.steps)):
            step = rec.plan.steps[index]
            try:
                if not self.leadership.is_acting():
                    raise Deposed(f"this controller does not act now: {self.leadership.describe()}")
                ok, detail = await self._run_step(rec, index, step)
            except Deposed as exc:
                return await self._interrupted(rec, index, state, str(exc))
            if ok and step.kind is StepKind.SET_STATE and step.state:
                state = state.apply(step.state)
                await on_state(state)
            rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), next_step=index + 1)
            if self.progress:
                await self.progress(rec, index, "finished" if ok else "failed")
            if not ok and not step.best_effort:
                error = f"step {index + 1} ({step.describe()}) failed: {detail}"
                await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.FAILED,
                                        error=error)
                await self._journal(EntryKind.PLAN_FAILED, plan_id=rec.id, status="failed", reason=error,
                                    data={"step": index, "done": index, "not_done": len(rec.plan.steps) - index})
                await self._notify("plan_failed", error, {"plan_id": rec.id})
                return Outcome(PlanStatus.FAILED, state, error)
        await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.FINISHED)
        await self._journal(EntryKind.PLAN_FINISHED, plan_id=rec.id, status="finished", data={"title": rec.plan.title})
        return Outcome(PlanStatus.FINISHED, state)

    async def _interrupted(self, rec: PlanRecord, index: int, state: SiteState, why: str) -> Outcome:
        error = f"stopped before step {index + 1} ({rec.plan.steps[index].describe()}): {why}"
        log.warning("plan %s %s", rec.id, error)
        await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(), status=PlanStatus.INTERRUPTED,
                                error=error)
        await self._journal(EntryKind.PLAN_INTERRUPTED, plan_id=rec.id, status="interrupted", reason=error,
                            data={"step": index, "done": index, "not_done": len(rec.plan.steps) - index})
        await self._notify("plan_interrupted", error, {"plan_id": rec.id})
        return Outcome(PlanStatus.INTERRUPTED, state, error)

    async def _run_step(self, rec: PlanRecord, index: int, step: Step) -> tuple[bool, str]:
        started = self.clock.now()
        t0 = self.clock.monotonic()
        await self._journal(EntryKind.STEP_STARTED, plan_id=rec.id, step=index, host=step.host,
                            data={"step": step.to_dict(), "text": step.describe()})
        if self.progress:
            await self.progress(rec, index, "running")
        ok, detail = False, ""
        deposed: TermRefused | None = None
        try:
            budget = (step.timeout_s or 30.0) + 5.0
            async with asyncio.timeout(budget):
                detail = await self._do(rec.id, index, step)
            ok = True
        except TermRefused as exc:  # an agent has seen a newer leader: we are deposed
            deposed, detail = exc, f"TermRefused: {exc}"
        except (StepFailed, AgentUnreachable, AgentActionFailed, FenceFailed) as exc:
            detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StepFailed) else str(exc)
        except TimeoutError:
            detail = f"timed out after {step.timeout_s or 30.0:g} s"
        except Exception as exc:  # the executor never dies on a step: the plan fails, visibly
            log.exception("plan %s step %d crashed", rec.id, index + 1)
            detail = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            duration = self.clock.monotonic() - t0
            kind = EntryKind.STEP_FINISHED if ok else EntryKind.STEP_FAILED
            status = "ok" if ok else ("failed (best effort, continuing)" if step.best_effort else "failed")
            await self._journal(kind, plan_id=rec.id, step=index, host=step.host, status=status,
                                duration_s=duration, data={"output": detail, "started": started,
                                                           "text": step.describe()})
            log.info("plan=%s step=%d host=%s %s: %s (%.2fs) %s", rec.id, index + 1, step.host, step.kind.value,
                     status, duration, detail)
        if deposed is not None:
            raise Deposed(str(deposed))
        return ok, detail

    def _token(self) -> dict[str, Any]:
        """The fencing token every agent action carries: the term, and the end of the acting window."""
        return {"term": self.leadership.term, "valid_until": self.leadership.valid_until()}

    async def _do(self, plan_id: str, index: int, step: Step) -> str:
        action_id = f"{plan_id}-{index}-{self._attempt}"
        host = step.host or ""
        timeout = step.timeout_s or 30.0
        match step.kind:
            case StepKind.STOP | StepKind.START | StepKind.RESTART:
                res = await self.agents.action(host, action_id, step.kind.value, service=step.service,
                                               timeout_s=timeout, **self._token())
                want = ServiceState.INACTIVE if step.kind is StepKind.STOP else ServiceState.ACTIVE
                await self._until(host, lambda h: service_is(h, step.service or "", want), timeout,
                                  f"{step.service} {want.value}")
                return res.detail or f"{step.service} {want.value}"
            case StepKind.ISOLATE_BOARD | StepKind.RESTORE_BOARD:
                res = await self.agents.action(host, action_id, step.kind.value, timeout_s=timeout,
                                               **self._token())
                return res.detail
            case StepKind.REPOINT_DB:
                res = await self.agents.action(host, action_id, "repoint_db", to_site=step.target, timeout_s=timeout,
                                               **self._token())
                return res.detail
            case StepKind.JOB_ENABLE | StepKind.JOB_DISABLE:  # the agent reads the job's state back
                res = await self.agents.action(host, action_id, step.kind.value, job=step.job, timeout_s=timeout,
                                               **self._token())
                return res.detail
            case StepKind.SET_FILE:  # the agent verifies the file and runs its reload command
                res = await self.agents.action(host, action_id, "set_file", file=step.file, value=step.target,
                                               timeout_s=timeout, **self._token())
                return res.detail
            case StepKind.ROUTE_INBOUND:
                return await self._route(action_id, step, timeout)
            case StepKind.VERIFY:
                what = ", ".join(map(str, step.checks))
                await self._until(host, lambda h: checks_hold(h, step.checks), timeout, what)
                return "verified: " + what
            case StepKind.FENCE:
                return await self._fence(plan_id, step, timeout)
            case StepKind.WAIT_DRAINED:
                return await self._drain(host, timeout)
            case StepKind.SET_STATE:
                return "recorded"
            case StepKind.NOTIFY:
                await self._notify("plan_notice", step.message or "", {"plan_id": plan_id})
                return "notified"
        raise StepFailed(f"unknown step kind {step.kind}")

    async def _until(self, host: str, predicate: Callable[[HostHealth], bool], timeout: float, what: str) -> HostHealth:
        """Poll the agent's fresh report until `predicate` holds; fail with the last state seen."""
        deadline = self.clock.monotonic() + timeout
        last: object = None
        while True:
            try:
                report = await self.agents.report(host)
                if predicate(report):
                    return report
                last = _summary(report)
            except AgentUnreachable as exc:
                last = f"agent unreachable: {exc}"
            if self.clock.monotonic() >= deadline:
                raise StepFailed(f"{what} not reached on {host} within {timeout:g} s; last seen: {last}")
            await self.clock.sleep(POLL_S)

    async def _route(self, action_id: str, step: Step, timeout: float) -> str:
        targets = list(step.targets)
        if self.router is not None:  # the SIP front (routing.method: kamailio)
            try:
                return await self.router.route(tuple(targets))
            except RouteFailed as exc:
                raise StepFailed(f"the SIP front was not set: {exc}") from exc
        done, skipped = [], []
        for host in self.host_ids or tuple(targets):
            try:
                await self.agents.action(host, f"{action_id}-{host}", "route_inbound", hosts=targets, timeout_s=timeout,
                                         **self._token())
                done.append(host)
            except (AgentUnreachable, AgentActionFailed) as exc:
                if host in targets:
                    raise
                skipped.append(f"{host} ({exc})")
        return f"inbound calls to {', '.join(targets)}; set on {', '.join(done)}" + (
            f"; not set on {', '.join(skipped)}" if skipped else "")

    async def _fence(self, plan_id: str, step: Step, timeout: float) -> str:
        host = step.host or ""
        required = [c.arg for c in step.checks]
        try:
            report = await self.agents.report(host)
            if checks_hold(report, step.checks):
                return f"{', '.join(required)} confirmed stopped by the agent"
            seen = "still running per its agent"
        except AgentUnreachable as exc:
            seen = f"agent unreachable ({exc})"
        if self.fencer.available:
            await self.fencer.power_off(host)
            return f"{host} {seen}: {getattr(self.fencer, 'done_text', 'powered off at the PDU (read back: off)')}"
        event = self._confirmations.setdefault((plan_id, host), asyncio.Event())
        await self._journal(EntryKind.NOTE, plan_id=plan_id, host=host, status="waiting",
                            reason=f"{host} {seen}; waiting for an operator to confirm it is powered off")
        await self._notify("fence_confirmation_needed", f"confirm {host} is off to continue plan {plan_id}",
                           {"plan_id": plan_id, "host": host})
        try:
            if not await self._wait(event, timeout):
                raise StepFailed(f"{host} {seen}; no operator confirmation within {timeout:g} s")
        finally:
            self._confirmations.pop((plan_id, host), None)
        return f"{host} {seen}: an operator confirmed it is powered off"

    async def _wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for `event` at most `timeout` seconds of the executor's clock; True if it was set."""
        waiter = asyncio.ensure_future(event.wait())
        timer = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, timer):
                task.cancel()
            await asyncio.gather(waiter, timer, return_exceptions=True)
        return event.is_set()

    async def _drain(self, host: str, timeout: float) -> str:
        deadline = self.clock.monotonic() + timeout
        calls = -1
        while True:
            try:
                report = await self.agents.report(host)
                calls = report.ivr_calls + report.agent_calls
                if calls == 0:
                    return f"{host} drained"
            except AgentUnreachable:
                return f"{host} unreachable: nothing left to drain there"
            if self.clock.monotonic() >= deadline:
                return f"drain timeout: {calls} call(s) still up on {host} after {timeout:g} s"
            await self.clock.sleep(POLL_S * 4)

    async def _notify(self, event: str, message: str, data: dict[str, object]) -> None:
        try:
            await self.notifier.notify(event, message, data)
        except Exception:  # observers never break the executor
            log.exception("notifier failed for %s", event)


def _summary(report: HostHealth) -> str:
    services = ", ".join(f"{k}={v.value}" for k, v in sorted(report.services.items()))
    return f"driver={report.driver.value} services: {services} db={report.db_site}"
