"""A drill's timed expectations after the fault: detect, decide, plan, state, recover, calls.

Each is awaited in order against its own deadline counted from the fault; the first one not met fails
the drill and the rest are marked "not reached". Recovery runs alongside from the moment of the fault:
inbound calls to the host expected to serve after the fault are started every half second (a few at
once, each a SIPp process), and the first one answered gives the time to recover: the moment that call
started plus SIPp's own INVITE->200 time for it.

What it must not do: inject or undo anything (the runner does), or wait without a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from drills.model import DecideModel, DetectModel, PlanExpectModel, StateExpectModel, StateModel
from drills.target import ALL_PLANS

if TYPE_CHECKING:
    from drills.runner import DrillRunner

ATTEMPT_EVERY_S = 0.5
MAX_IN_FLIGHT = 4


class StepFailed(Exception):
    """A drill step or expectation that did not hold; the message says which and what was seen."""


def state_problems(status: dict[str, Any], m: StateModel, start_db: str | None) -> list[str]:
    """What in the controller's status differs from the expected state (empty: it holds)."""
    out = []
    if m.state is not None and status["state"] != m.state:
        out.append(f"state is {status['state']}, expected {m.state}")
    if m.active_host is not None and status["active_host"] != m.active_host:
        out.append(f"active host is {status['active_host']}, expected {m.active_host}")
    hosts = status["hosts"]
    for host, duty in m.duties.items():
        if hosts[host]["duty"] != duty:
            out.append(f"{host} is {hosts[host]['duty']}, expected {duty}")
    for host, isolated in m.board_isolated.items():
        if hosts[host]["board_isolated"] != isolated:
            out.append(f"{host}'s board is {'' if hosts[host]['board_isolated'] else 'not '}isolated")
    if m.active_db is not None and status["active_db"] != m.active_db:
        out.append(f"active database is {status['active_db']}, expected {m.active_db}")
    if m.active_db_changed is not None and (status["active_db"] != start_db) != m.active_db_changed:
        out.append(f"active database is {status['active_db']} (was {start_db}): expected it "
                   f"{'changed' if m.active_db_changed else 'unchanged'}")
    if m.min_channels is not None and status["capacity"]["channels"] < m.min_channels:
        out.append(f"capacity is {status['capacity']['channels']} channels, expected at least {m.min_channels}")
    return out


class Expectations:
    def __init__(self, runner: DrillRunner) -> None:
        self.r = runner
        self.t_fault = 0.0
        self.fault_ts: float | None = None
        self.records: list[dict[str, Any]] = []
        self.recovery: dict[str, Any] = {}
        self._ttr: float | None = None
        self._times: dict[str, float] = {}

    def _since(self) -> float:
        return round(time.monotonic() - self.t_fault, 3)

    def _record(self, key: str, name: str, limit_s: float | None) -> dict[str, Any]:
        rec = {"key": key, "name": name, "limit_s": limit_s, "measured_s": None, "status": "not reached",
               "detail": ""}
        self.records.append(rec)
        return rec

    def _unmet(self, rec: dict[str, Any], detail: str) -> StepFailed:
        rec["status"], rec["detail"] = "unmet", detail
        return StepFailed(f"expectation not met: {rec['name']}: {detail}")

    def _met(self, rec: dict[str, Any], detail: str) -> None:
        rec["status"], rec["measured_s"], rec["detail"] = "met", self._since(), detail
        self._times[rec["key"]] = rec["measured_s"]

    async def run(self) -> None:
        e, s = self.r.s.expect, self.r.s
        fault = e.detect.fault if e.detect and e.detect.fault else s.fault.fault_text(self.r.fault_db)
        plan = []
        if e.detect:
            plan.append((self._record("detect", f"the controller sees {fault}", e.detect.within_s), e.detect))
        if e.decide:
            plan.append((self._record("decide", f"decision: {e.decide.action.value}"
                                      + (f" by rule {e.decide.rule}" if e.decide.rule else ""), e.decide.within_s),
                         e.decide))
        if e.plan:
            plan.append((self._record("plan", "the plan has finished", e.plan.within_s), e.plan))
        if e.state:
            plan.append((self._record("state", "the site state after the fault", e.state.within_s), e.state))
        recover = self._record("recover", f"an inbound call is answered by {s.recover_host() or 'the active host'}",
                               e.recover.within_s)
        calls = self._record("calls", "verification calls: " + (", ".join(c.value for c in e.verify_calls) or "none"),
                             None)
        recovering = asyncio.create_task(self._recover(), name="drill-recovery")
        try:
            for rec, model in plan:
                await self._one(rec, model, fault or "")
            await recovering
            if self._ttr is None or self._ttr > e.recover.within_s:
                raise self._unmet(recover, f"no inbound call answered by {self.recovery.get('host')} within "
                                           f"{e.recover.within_s:g} s ({len(self.recovery.get('attempts', []))} tried)")
            recover.update(status="met", measured_s=round(self._ttr, 3),
                           detail=f"answered {self._ttr:.2f} s after the fault")
            failed = await self.r.calls("drill", e.verify_calls)
            if failed:
                raise self._unmet(calls, "; ".join(failed))
            calls.update(status="met", measured_s=self._since(), detail="all passed")
        finally:
            if not recovering.done():
                recovering.cancel()
            with contextlib.suppress(BaseException):
                await recovering

    async def _one(self, rec: dict[str, Any], model: Any, fault: str) -> None:
        deadline = self.t_fault + model.within_s
        if isinstance(model, DetectModel):
            await self._detect(rec, fault, deadline)
        elif isinstance(model, DecideModel):
            await self._decide(rec, model, deadline)
        elif isinstance(model, PlanExpectModel):
            await self._plan(rec, model, deadline)
        elif isinstance(model, StateExpectModel):
            await self._state(rec, model, deadline)

    async def _detect(self, rec: dict[str, Any], fault: str, deadline: float) -> None:
        seen: list[str] = []

        async def present() -> bool:
            nonlocal seen
            seen = [f["fault"] for f in (await self.r.ctl.status())["faults"]]
            return fault in seen

        if not await self.r.poll(present, deadline):
            raise self._unmet(rec, f"not shown within {rec['limit_s']:g} s; faults seen: {seen or 'none'}")
        self._met(rec, f"shown {self._since():.2f} s after the fault")

    def _new_plans(self, plans: list[dict[str, Any]], action: str | None) -> list[dict[str, Any]]:
        return [p for p in plans if p["id"] not in self.r.known_plans and (action is None or p["action"] == action)]

    async def _decide(self, rec: dict[str, Any], m: DecideModel, deadline: float) -> None:
        last = "no decision"

        async def decided() -> bool:
            nonlocal last
            d = (await self.r.ctl.status()).get("decision") or {}
            last = d.get("reason") or last
            if d.get("action") == m.action.value and d.get("disposition") != "none" and m.rule in (None, d.get("rule")):
                return True
            plans = self._new_plans(await self.r.ctl.plans(ALL_PLANS), m.action.value)
            return any(m.rule in (None, p.get("source")) for p in plans)

        if not await self.r.poll(decided, deadline):
            raise self._unmet(rec, f"not decided within {rec['limit_s']:g} s; last decision: {last}")
        self._met(rec, f"decided {self._since():.2f} s after the fault")

    async def _plan(self, rec: dict[str, Any], m: PlanExpectModel, deadline: float) -> None:
        action = self.r.s.expect.decide.action.value if self.r.s.expect.decide else None
        plan_id = next((p for p, role in self.r.plan_roles.items() if role == "fault"), None)
        last = "no plan proposed or started yet"

        async def finished() -> bool:
            nonlocal plan_id, last
            if plan_id is None:
                fresh = [p for p in self._new_plans(await self.r.ctl.plans(ALL_PLANS), action)
                         if p["status"] not in ("superseded", "rejected")]
                if not fresh:
                    return False
                plan_id = max(fresh, key=lambda p: p["created"])["id"]
                self.r.plan_roles[plan_id] = "fault"
            p = await self.r.ctl.plan(plan_id)
            last = f"plan {plan_id} ({p['title']}) {p['status']} at step {p['next_step'] + 1}/{len(p['steps'])}"
            if p["status"] == "proposed" and m.approve:
                await self.r.ctl.approve(plan_id, f"{self.r.reason}: the operator on duty approves")
                self._times.setdefault("approved", self._since())
                last = f"plan {plan_id} ({p['title']}) approved {self._since():.2f} s after the fault, running"
            elif p["status"] == "superseded":
                self.r.plan_roles.pop(plan_id, None)
                plan_id = None
            elif p["status"] in ("failed", "aborted", "rejected"):
                raise StepFailed(f"plan {plan_id} {p['status']}: {p.get('error')}")
            return p["status"] == "finished"

        try:
            ok = await self.r.poll(finished, deadline)
        except StepFailed as exc:
            raise self._unmet(rec, str(exc)) from exc
        if not ok:
            raise self._unmet(rec, f"not finished within {rec['limit_s']:g} s; {last}")
        self._met(rec, f"plan {plan_id} finished {self._since():.2f} s after the fault")

    async def _state(self, rec: dict[str, Any], m: StateExpectModel, deadline: float) -> None:
        last: list[str] = []

        async def holds() -> bool:
            nonlocal last
            last = state_problems(await self.r.ctl.status(), m, self.r.start_db)
            return not last

        if not await self.r.poll(holds, deadline):
            raise self._unmet(rec, f"not reached within {rec['limit_s']:g} s: {'; '.join(last)}")
        self._met(rec, "reached")

    async def _recover(self) -> None:
        host = self.r.s.recover_host() or (await self.r.ctl.status()).get("active_host")
        deadline = self.t_fault + self.r.s.expect.recover.within_s
        attempts: list[dict[str, Any]] = []
        self.recovery = {"host": host, "attempts": attempts}
        sip = self.r.sip
        if sip is None or host is None or host not in sip.plan.endpoints:
            self.recovery["method"] = "controller status (no SIP plan)"

            async def serving() -> bool:
                st = await self.r.ctl.status()
                return bool(st["active_host"] == host and st["hosts"][host]["services"].get("ivr") == "active")

            if await self.r.poll(serving, deadline):
                self._ttr = self._since()
            return
        pending: set[asyncio.Task[Any]] = set()

        async def attempt() -> tuple[float, Any]:
            t0 = time.monotonic()
            try:
                return t0, await sip.inbound_one(host)
            except Exception as exc:  # SIPp could not start: a failed attempt, not a dead drill
                return t0, exc

        next_at = time.monotonic()
        try:
            while self._ttr is None and time.monotonic() < deadline:
                if time.monotonic() >= next_at and len(pending) < MAX_IN_FLIGHT:
                    pending.add(asyncio.create_task(attempt()))
                    next_at = time.monotonic() + ATTEMPT_EVERY_S
                wait_s = max(0.05, next_at - time.monotonic())
                if not pending:
                    await asyncio.sleep(wait_s)
                    continue
                done, pending = await asyncio.wait(pending, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self._note(attempts, *task.result())
            for task in asyncio.as_completed(pending):  # let the calls in flight end: they count too
                self._note(attempts, *(await task))
            pending = set()
            attempts.sort(key=lambda a: a["offset_s"])
        finally:
            for task in pending:
                task.cancel()

    def _note(self, attempts: list[dict[str, Any]], t0: float, outcome: Any) -> None:
        if isinstance(outcome, Exception):
            attempts.append({"offset_s": round(t0 - self.t_fault, 3), "passed": False, "error": str(outcome)})
            return
        ok = outcome.stats.succeeded >= 1
        answered = t0 + (outcome.stats.setup_ms or 0.0) / 1000.0 - self.t_fault
        sip = self.r.sip
        by = [(sip.plan.host_at(b) if sip else None) or b for b in outcome.fates.answered.values()]
        attempts.append({"offset_s": round(t0 - self.t_fault, 3), "passed": ok, "setup_ms": outcome.stats.setup_ms,
                         "answered_s": round(answered, 3) if ok else None, "exit_code": outcome.returncode,
                         "stat_file": outcome.files["csv"], "answered_by": by})
        if ok and (self._ttr is None or answered < self._ttr):
            self._ttr = answered

    def call_figures(self, phase: str, figures: dict[str, Any], limits: Any) -> None:
        """`expect.calls` limits on the steady load's refused, cut and held calls in `phase`."""
        where = "during the drill" if phase == "drill" else "on the way back"
        for key, limit in limits.items():
            got = figures.get(f"calls_{key}")
            rec = self._record(f"calls_{key}_{phase}", f"at most {limit} call(s) {key} {where} (calls_{key})", None)
            if got is None or got > limit:
                self.r.failures.append(str(self._unmet(rec, f"calls_{key} {where}: {got}, limit {limit}")))
            else:
                rec.update(status="met", detail=f"{got}")

    def max_failed(self, failed: int, limit: int) -> None:
        rec = self._record("max_failed_calls", f"at most {limit} call(s) of the steady load fail during the drill",
                           None)
        if failed > limit:
            self.r.failures.append(str(self._unmet(rec, f"{failed} failed")))
        else:
            rec.update(status="met", detail=f"{failed} failed")

    def figures(self) -> dict[str, Any]:
        t = self._times
        return {"time_to_detect_s": t.get("detect"), "time_to_decide_s": t.get("decide"),
                "time_to_approve_s": t.get("approved"), "time_to_plan_finished_s": t.get("plan"),
                "time_to_state_s": t.get("state"),
                "time_to_recover_s": round(self._ttr, 3) if self._ttr is not None else None}
