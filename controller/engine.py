"""The control loop: snapshot -> faults -> decide -> propose or execute, one cycle at a time.

A cycle never dies and returns a typed Decision with one human sentence (logged once when it changes,
shown on the dashboard); a cycle that fails says so ("cycle failed: ... (see log)") and the loop lives
on. Proposal bookkeeping is decided purely (ccfo.domain.proposals.reconcile); the engine carries it out.
Agent reports and SNMP notifications wake the loop early; polling is the safety net. One piece of work
at a time: every start of a plan, the engine's own included, claims the site through the WorkClaim
port (`_admit`), and a second request is refused naming the work that holds it. The engine and its
executor read time from one injected Clock. Modes act like Patroni's pause: the engine always observes
and decides, and acts only when the mode allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ccfo.domain.faults import Fault, FaultTracker
from ccfo.domain.health import HostHealth, SiteSnapshot, faults, snapshot
from ccfo.domain.plan import Action, Plan
from ccfo.domain.proposals import (
    Change,
    Declined,
    ForgetDeclined,
    OpenProposal,
    Propose,
    Supersede,
    Withdraw,
    on_footing,
    reconcile,
)
from ccfo.domain.rules import Decision, Disposition, evaluate
from ccfo.domain.state import Mode, SiteState
from ccfo.ports import Claim, Clock, Leadership, NotActing, Work, WorkClaim, WorkKind, WorkRefused
from controller.claims import LocalWorkClaim
from controller.events import EventBus
from controller.executor import Executor
from controller.journal import EntryKind, Journal
from controller.operations import PlanOperations, Refused
from controller.store import PlanRecord, PlanStatus, Store, new_plan_id

log = logging.getLogger("ccfo.engine")


class Engine(PlanOperations):
    def __init__(self, cfg: Any, store: Store, journal: Journal, executor: Executor, events: EventBus,
                 claims: WorkClaim | None = None, leadership: Leadership | None = None) -> None:
        self.cfg, self.site, self.policy = cfg, cfg.site, cfg.policy
        self.heartbeat_s = cfg.site_model.controller.heartbeat_s
        self.missed = cfg.site_model.controller.missed_heartbeats
        self.poll_s = cfg.site_model.controller.poll_interval_s
        self.store, self.journal, self.executor, self.events = store, journal, executor, events
        self.clock: Clock = executor.clock  # one clock for the engine and the executor
        self.state: SiteState = store.load_state() or SiteState.normal(self.site, cfg.site_model.controller.mode)
        self.tracker = FaultTracker.empty(cfg.flap)
        self.reports: dict[str, HostHealth] = {}
        # the managed servers' last reports and job lists: shown in the status, not (yet) judged by the rules
        self.server_reports: dict[str, tuple[HostHealth, list[dict[str, Any]]]] = {}
        self.db_down: frozenset[str] = frozenset()
        self.decision: Decision | None = None
        self._failing: str | None = None  # the sentence of the failing cycle, while cycles fail
        self._failing_after: tuple[str, str, str] | None = None  # the decision reached before they did
        self._declined: Declined | None = None  # the plan an operator rejected, for this situation
        self.snap: SiteSnapshot | None = None
        self.running: PlanRecord | None = None
        # Controller HA: a follower observes and answers reads, it never decides, claims work or runs a step.
        self.leadership: Leadership = leadership or executor.leadership
        executor.leadership = self.leadership
        self.claims: WorkClaim = claims or LocalWorkClaim(self.leadership)  # admission: one piece of work at a time
        self._plan_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._run_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.cycles = 0
        self.started_at = self.clock.now()
        self._stopping = False
        self._to_resume: list[str] = []  # plans a new leader resumes by itself (automatic mode)
        # (since, why): decide only on reports received after this (a plan ended, this member began to act)
        self._settle: tuple[float, str] | None = None
        self._behind_logged: frozenset[str] = frozenset()
        self._was_acting = False
        executor.progress = self._progress

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self, *, loop: bool = True) -> None:
        """Recover from the last run (plans found running are interrupted) and, unless `loop` is False
        (unit tests call `cycle()` themselves), start the control loop."""
        self.started_at = self.clock.now()
        await asyncio.to_thread(self.store.save_state, self.state)
        for rec in self.store.plans({PlanStatus.RUNNING}):
            why = "the controller stopped while this plan ran"
            rec = await asyncio.to_thread(self.store.update_plan, rec, self.clock.now(),
                                          status=PlanStatus.INTERRUPTED, error=why)
            await self._journal(EntryKind.PLAN_INTERRUPTED, plan_id=rec.id, status="interrupted",
                                reason=f"found running at start-up at step {rec.next_step + 1}; resume or abort")
        if loop:
            self._loop_task = asyncio.create_task(self._loop(), name="ccfo-engine")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._loop_task, self._run_task):
            if task:
                task.cancel()
        for task in (self._loop_task, self._run_task):
            if task:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def wake(self) -> None:
        self._wake.set()

    @property
    def looping(self) -> bool:
        """Whether the control loop runs (started, not stopped, not crashed): the controller's readiness."""
        return self._loop_task is not None and not self._loop_task.done() and not self._stopping

    async def _loop(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races with the
        # inner wait finishing, and the loop would never stop. The flag makes stop() certain either way.
        while not self._stopping:
            try:
                async with asyncio.timeout(min(self.poll_s, self.heartbeat_s)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.cycle()
            except Exception:  # a cycle never kills the loop
                log.exception("cycle failed")

    # --- inputs -------------------------------------------------------------------------------

    def ingest(self, health: HostHealth) -> None:
        previous = self.reports.get(health.host)
        self.reports[health.host] = health
        if previous is None or _differs(previous, health):
            self.wake()

    def ingest_server(self, health: HostHealth, jobs: list[dict[str, Any]]) -> None:
        """A managed server's heartbeat (site.yaml servers): kept for the status view; it wakes no cycle."""
        self.server_reports[health.host] = (health, jobs)

    def set_db_down(self, down: frozenset[str]) -> None:
        if down != self.db_down:
            self.db_down = down
            self.wake()

    # --- one cycle ----------------------------------------------------------------------------

    async def cycle(self) -> Decision:
        """One cycle; it never raises: a failure becomes the decision "cycle failed: ... (see log)"."""
        async with self._lock:
            try:
                return await self._cycle()
            except Exception as exc:
                return await self._cycle_failed(exc)

    async def _cycle(self) -> Decision:
        now = self.clock.now()
        self.cycles += 1
        self.snap = snapshot(self.site, self.reports, now, self.heartbeat_s, self.missed, self.db_down)
        starting = self._starting(now)
        if starting:
            self.decision = Decision(None, Action.NONE, Disposition.NONE, starting)
            return self.decision
        if not self.leadership.is_acting():  # observe only: the leader decides, journals and acts
            self._was_acting = False
            # the faults seen now, for this member's status and dashboard (not journaled, not judged): a
            # member that stopped leading while cut off kept the faults it saw then, "both hosts unreachable",
            # long after the heal; one that never led showed none
            self.tracker = self.tracker.observe(faults(self.site, self.state, self.snap), now)
            self.decision = Decision(None, Action.NONE, Disposition.NONE,
                                     f"not acting: {self.leadership.describe()}")
            await self.events.publish("status", {"cycle": self.cycles})
            return self.decision
        if not self._was_acting:
            self._was_acting = True
            if self.cycles > 1:  # a follower became the leader: its reports may be older than the world
                self._settle = (now, "this member began to act")
        if self._to_resume and not self.claims.holders():
            await self._resume_taken_over(self._to_resume.pop(0))  # its steps need no report: at once
        present = faults(self.site, self.state, self.snap)
        behind = self._behind(now)
        if behind:  # no fault is judged on a report older than the last change this controller made
            present = frozenset(f for f in present if f.host not in behind)
        await self._journal_fault_changes(set(self.tracker.present()), present, now)
        self.tracker = self.tracker.observe(present, now)
        waiting = self._not_deciding(now)
        if waiting:  # observe and journal faults, but do not decide
            self.decision = Decision(None, Action.NONE, Disposition.NONE, waiting)
            await self.events.publish("status", {"cycle": self.cycles})
            return self.decision
        decision = evaluate(self.site, self.state, self.tracker, self.policy, now)
        # after a failed cycle, the decision it had reached is not journaled again at every retry
        quiet = self._failing is not None and _sentence(decision) == self._failing_after
        if not quiet and (self.decision is None or _sentence(decision) != _sentence(self.decision)):
            log.info("decision: %s", decision.reason)
            if decision.disposition is not Disposition.NONE or self.decision is not None:
                await self._journal(EntryKind.DECISION, reason=decision.reason, status=decision.disposition.value,
                                    data=decision.to_dict())
        self.decision = decision
        await self._act(decision, now)
        await self.events.publish("status", {"cycle": self.cycles})
        if self._failing is not None:  # the cycle works again: the journal's last word is this decision
            self._failing = None
            log.info("cycle %d completed again: %s", self.cycles, decision.reason)
            if quiet:
                await self._journal(EntryKind.DECISION, reason=decision.reason, status=decision.disposition.value,
                                    data=decision.to_dict())
        return decision

    async def _cycle_failed(self, exc: Exception) -> Decision:
        """Patroni's "Unexpected exception raised, please report it as a BUG": say so, once, and live on."""
        log.exception("cycle %d failed", self.cycles)
        failed = Decision(None, Action.NONE, Disposition.NONE, f"cycle failed: {type(exc).__name__}: {exc} (see log)")
        if self._failing is None:
            self._failing_after = _sentence(self.decision) if self.decision else None
        first = self._failing != failed.reason
        self._failing = failed.reason
        self.decision = failed
        if first:
            try:
                await self._journal(EntryKind.DECISION, reason=failed.reason, status="failed", data=failed.to_dict())
            except Exception:  # the journal may be what failed: the log has it
                log.exception("cannot journal the failed cycle")
        try:
            await self.events.publish("status", {"cycle": self.cycles, "failed": failed.reason})
        except Exception:
            log.exception("cannot publish the failed cycle")
        return failed

    def _not_deciding(self, now: float) -> str | None:
        """Why this cycle must not decide: a plan is changing the world (its own stops look like faults),
        or the controller has just started and not every agent has reported yet."""
        plan = next((w for w in self.claims.holders() if w.kind is WorkKind.PLAN), None)
        if plan is not None:
            return f"plan {plan.id} running: {plan.title}"
        return None

    def _behind(self, now: float) -> frozenset[str]:
        """Hosts whose faults are not judged yet: after a plan ended (or this member began to act), a
        report received before that describes the world before the plan's last steps (a host just started
        would look down, and in automatic mode that "fault" would move the site back). Each such host is
        judged again from its next report; the other hosts are judged as usual (a hang elsewhere is not
        held up), and a host that stays silent for the missed-heartbeat span is judged unreachable."""
        if self._settle is None:
            return frozenset()
        since, why = self._settle
        span = self.missed * self.heartbeat_s
        behind = frozenset(h for h in self.site.host_ids
                           if (r := self.reports.get(h)) is not None and r.received_at < since
                           and now - r.received_at < span)
        if not behind:
            self._settle = None
        elif behind != self._behind_logged:
            log.info("not judging %s until a report received after %s", ", ".join(sorted(behind)), why)
        self._behind_logged = behind
        return behind

    def _starting(self, now: float) -> str | None:
        silent = [h for h in self.site.host_ids if h not in self.reports]
        if silent and now - self.started_at < self.missed * self.heartbeat_s:
            return f"starting: waiting for the first report from {', '.join(silent)}"
        return None

    async def _journal_fault_changes(self, before: set[Fault], now_present: frozenset[Fault], now: float) -> None:
        for f in sorted(now_present - before):
            await self._journal(EntryKind.FAULT_SEEN, host=f.host, reason=str(f), data=_fault_data(f))
        for f in sorted(before - now_present):
            await self._journal(EntryKind.FAULT_CLEARED, host=f.host, reason=str(f), data=_fault_data(f))

    async def _act(self, d: Decision, now: float) -> None:
        if d.plan is not None and d.disposition is Disposition.EXECUTE:
            await self._start_automatic(d, d.plan, now)
            return
        proposed = await asyncio.to_thread(self.store.plans, {PlanStatus.PROPOSED}, 500)
        open_ = tuple(OpenProposal(r.id, r.plan.steps, r.requested_by == "controller") for r in proposed)
        for change in reconcile(d, open_, self._declined):
            await self._carry_out(change, now)

    async def _start_automatic(self, d: Decision, plan: Plan, now: float) -> None:
        """Automatic mode: the rule's plan runs now, through the same admission as an operator's (inside
        a drill's claim when a drill runs: the drill is testing exactly this)."""
        plan_id = new_plan_id()
        top = self.claims.current()
        within = top if top is not None and top.work.kind is WorkKind.DRILL else None

        async def prepare() -> PlanRecord:
            rec = await asyncio.to_thread(self.store.add_plan, plan, status=PlanStatus.RUNNING,
                                          source=d.rule or "rule", requested_by="controller", reason=d.reason,
                                          now=now, plan_id=plan_id)
            self.state = replace(self.state, last_automatic_at=now)
            await asyncio.to_thread(self.store.save_state, self.state)
            await self._journal(EntryKind.PLAN_STARTED, plan_id=rec.id, actor="controller", reason=d.reason,
                                data=rec.to_dict())
            return rec
        try:
            await self._admit(Work(WorkKind.PLAN, plan_id, plan.title, "controller"), within, prepare)
        except Refused as exc:  # an operator's plan got there first; the next cycle sees it running
            log.info("automatic plan not started: %s", exc)

    async def _carry_out(self, change: Change, now: float) -> None:
        """Apply one change `reconcile` decided: the store, the journal and the event stream."""
        match change:
            case ForgetDeclined():
                self._declined = None
            case Withdraw(plan_id, why) | Supersede(plan_id, why):
                rec = self.store.get_plan(plan_id)
                if rec is None or rec.status is not PlanStatus.PROPOSED:
                    return  # an operator decided it meanwhile
                await asyncio.to_thread(self.store.update_plan, rec, now, status=PlanStatus.SUPERSEDED, error=why)
                await self._journal(EntryKind.PLAN_REJECTED, plan_id=rec.id, actor="controller", reason=why,
                                    status=PlanStatus.SUPERSEDED.value)
                await self.events.publish("plan", {"id": rec.id, "status": PlanStatus.SUPERSEDED.value, "error": why})
            case Propose(plan, rule, reason):
                plan = on_footing(plan, self.state)
                rec = await asyncio.to_thread(self.store.add_plan, plan, status=PlanStatus.PROPOSED, source=rule,
                                              requested_by="controller", reason=reason, now=now)
                await self._journal(EntryKind.PLAN_PROPOSED, plan_id=rec.id, actor="controller", reason=reason,
                                    data=rec.to_dict())
                await self.events.publish("plan", rec.to_dict())

    # --- running plans ------------------------------------------------------------------------

    async def _admit(self, work: Work, within: Claim | None,
                     prepare: Callable[[], Awaitable[PlanRecord]]) -> PlanRecord:
        """The one way a plan starts: claim the site for `work` (WorkBusy or NotActing becomes Refused,
        naming the work that holds it or who leads), prepare the plan's record (store, journal), run it.
        The claim ends with the plan, or at once if preparing fails."""
        try:
            claim = await self.claims.acquire(work, within=within)
        except WorkRefused as exc:
            raise Refused(str(exc)) from exc
        try:
            rec = await prepare()
        except BaseException:
            await self.claims.release(claim)
            raise
        self.running = rec
        self._run_task = asyncio.create_task(self._execute(rec, claim), name=f"ccfo-plan-{rec.id}")
        return rec

    async def _execute(self, rec: PlanRecord, claim: Claim) -> None:
        try:
            outcome = await self.executor.run(rec, self.state, self._set_state)
            await self.events.publish("plan", {"id": rec.id, "status": outcome.status.value, "error": outcome.error})
        except Exception as exc:  # no plan stays RUNNING silently
            await self._executor_crashed(rec, exc)
        finally:
            self.running = None
            self.tracker = FaultTracker.empty(self.tracker.flap)  # faults are re-seen against the new roles
            self._settle = (self.clock.now(), f"plan {rec.id} ended")  # ... on reports made after it
            await self.claims.release(claim)
            self.wake()

    async def _executor_crashed(self, rec: PlanRecord, exc: Exception) -> None:
        log.exception("plan %s: the executor crashed", rec.id)
        error = f"internal error in the executor: {type(exc).__name__}: {exc} (see log)"
        try:
            latest = await asyncio.to_thread(self.store.get_plan, rec.id) or rec
            await asyncio.to_thread(self.store.update_plan, latest, self.clock.now(), status=PlanStatus.FAILED,
                                    error=error)
            await self._journal(EntryKind.PLAN_FAILED, plan_id=rec.id, status="failed", reason=error,
                                data={"step": latest.next_step, "internal": True})
            await self.events.publish("plan", {"id": rec.id, "status": PlanStatus.FAILED.value, "error": error})
        except Exception:
            log.exception("plan %s: cannot record the executor's crash", rec.id)

    async def _set_state(self, state: SiteState) -> None:
        """A plan's new site state. The plan owns the roles, boards and databases; the mode is the
        operator's: a mode set while the plan ran stays (the plan's copy was taken when it started)."""
        state = replace(state, mode=self.state.mode)
        self.state = state
        await asyncio.to_thread(self.store.save_state, state)
        await self.events.publish("state", state.to_dict())

    async def _progress(self, rec: PlanRecord, index: int, status: str) -> None:
        await self.events.publish("step", {"plan_id": rec.id, "index": index, "status": status,
                                           "text": rec.plan.steps[index].describe()})

    async def wait_idle(self, timeout: float) -> None:
        task = self._run_task
        if task is not None and not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout)

    # --- operator actions on the site (those on plans: controller.operations) -------------------

    async def set_mode(self, mode: Mode, who: str, reason: str) -> SiteState:
        self._must_act()
        old = self.state.mode
        self.state = replace(self.state, mode=mode)
        await asyncio.to_thread(self.store.save_state, self.state)
        await self._journal(EntryKind.MODE_CHANGED, actor=who, reason=reason,
                            data={"from": old.value, "to": mode.value})
        await self.events.publish("state", self.state.to_dict())
        self.wake()
        return self.state

    def set_leadership(self, leadership: Leadership) -> None:
        """Controller HA: who may act, for the engine, its executor and its work claim alike."""
        self.leadership = self.executor.leadership = leadership
        if isinstance(self.claims, LocalWorkClaim):
            self.claims.leadership = leadership

    async def mirror(self, state: SiteState) -> None:
        """Controller HA, on a follower: the site state the leader wrote on etcd, for reads (status, the
        dashboard); a follower decides nothing, and a member that acts keeps its own."""
        if self.leadership.is_acting() or state == self.state:
            return
        self.state = state  # before any await: the caller checked the term just before
        await self.events.publish("state", state.to_dict())

    async def adopt(self, state: SiteState, interrupted: list[PlanRecord]) -> None:
        """Controller HA: this member has become leader and taken the site state over from etcd
        (controller/cluster/statesync.py); the plans the old leader was running are interrupted."""
        self.state = state
        self.tracker = FaultTracker.empty(self.tracker.flap)
        for rec in interrupted:
            await self._journal(EntryKind.PLAN_INTERRUPTED, plan_id=rec.id, status="interrupted", reason=rec.error,
                                data={"from_step": rec.next_step})
        if state.mode is Mode.AUTOMATIC:  # every step is idempotent by its agent action id: go on at once
            self._to_resume = [rec.id for rec in interrupted]
        await self.events.publish("state", self.state.to_dict())
        self.wake()

    async def _resume_taken_over(self, plan_id: str) -> None:
        try:
            await self.resume(plan_id, "controller", "resumed by the new leader (automatic mode)")
            log.warning("plan %s resumed by the new leader (automatic mode)", plan_id)
        except Refused as exc:  # aborted meanwhile, or another plan holds the site: an operator decides
            log.warning("plan %s not resumed: %s", plan_id, exc)

    def _must_act(self) -> None:
        if not self.leadership.is_acting():
            raise Refused(str(NotActing(self.leadership.describe())))

    async def confirm_off(self, plan_id: str, host: str, who: str, reason: str) -> None:
        self._must_act()
        if not self.executor.confirm_off(plan_id, host):
            raise Refused(f"plan {plan_id} is not waiting for a confirmation that {host} is off")
        await self._journal(EntryKind.OPERATOR_ACTION, plan_id=plan_id, host=host, actor=who, reason=reason,
                            data={"action": "confirm_off"})

    async def record(self, kind: str, **fields: Any) -> None:
        """Journal an entry for another part of the controller (drills, checklists) and announce it on the
        event stream, as the engine's own entries are, so the dashboard shows it without polling."""
        await self._journal(kind, **fields)

    async def _journal(self, kind: str, **fields: Any) -> None:
        entry = await asyncio.to_thread(self.journal.append, kind, ts=self.clock.now(), **fields)
        await self.events.publish("journal", {"id": entry.id, "kind": entry.kind, "ts": entry.ts, "host": entry.host,
                                              "plan_id": entry.plan_id, "reason": entry.reason,
                                              "status": entry.status})


def _fault_data(f: Fault) -> dict[str, str]:
    """The journal's host column holds host ids only: a database site fault names its site here."""
    return {"kind": f.kind.value} | ({"db_site": f.db_site} if f.db_site else {})


def _sentence(d: Decision) -> tuple[str, str, str]:
    return (d.action.value, d.disposition.value, d.reason)


def _differs(a: HostHealth, b: HostHealth) -> bool:
    return replace(a, received_at=0.0) != replace(b, received_at=0.0)
