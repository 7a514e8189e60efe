"""Runs one drill: steady state, steady load, fault, timed expectations, verification calls, the way back
(always, once the fault is in), steady state again; measures and reports.

Timings are taken against the moment the fault was injected: time to detect (the controller's status
shows the fault), time to decide (its decision, or a plan, names the expected action), time to recover
(the first inbound call answered by the host expected to serve after the fault; SIPp's own INVITE->200
time included), the plan's and every drill step's duration, and the calls attempted and failed by the
steady load, read from SIPp's statistics files. The first expectation not met fails the drill; those after
it are "not reached"; the way back still runs. The run is journaled (drill_started, drill_finished with
the whole report) and written as Markdown, JSON and JUnit XML (drills.report).

What it must not do: touch the site except through its ports (drills.target), leave a SIPp process
behind, or approve a plan it did not cause (only plans created after the drill started are its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ccfo.config.loader import LoadedConfig
from drills import report
from drills.expect import Expectations, StepFailed, state_problems
from drills.load import Load
from drills.model import CallKind, FaultKind, ScenarioModel
from drills.sipp import CallCheck, Sip, SippError
from drills.target import ALL_PLANS, ControllerError, ControllerPort, Target, TargetError
from drills.wayback import WayBack

log = logging.getLogger("ccfo.drills")
POLL_S = 0.2


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{uuid.uuid4().hex[:4]}"


def why_not_now(status: dict[str, Any], proposed: list[dict[str, Any]], steady: str | None = "normal") -> str | None:
    """Why a drill must not start now (a plan running or proposed, the site not in its steady state)."""
    if status.get("running_plan"):
        p = status["running_plan"]
        return f"plan {p['id']} ({p.get('title')}) is running"
    if proposed:
        return f"plan {proposed[0]['id']} ({proposed[0].get('title')}) is waiting for approval"
    if steady and status.get("state") != steady:
        return f"the site is {status.get('state')}, not {steady}"
    return None


def drill_in_progress(entries: list[dict[str, Any]], now: float, own: str | None = None,
                      max_age_s: float = 3600.0) -> str | None:
    """A drill started (journal `drill_started`) within `max_age_s` and not yet finished or skipped."""
    ended = {(e.get("data") or {}).get("run_id") for e in entries if e["kind"] != "drill_started"}
    for e in entries:
        run_id = (e.get("data") or {}).get("run_id")
        if e["kind"] == "drill_started" and run_id not in ended and run_id != own and now - e["ts"] < max_age_s:
            return f"drill run {run_id} ({e['data'].get('drill')}) is in progress"
    return None


class DrillRunner:
    def __init__(self, scenario: ScenarioModel, controller: ControllerPort, target: Target, cfg: LoadedConfig,
                 sip: Sip | None, *, run_id: str, reports_dir: Path, who: str = "drill runner") -> None:
        self.s, self.ctl, self.target, self.cfg, self.sip = scenario, controller, target, cfg, sip
        self.run_id, self.reports_dir, self.who = run_id, reports_dir, who
        self.steps: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.plan_roles: dict[str, str] = {}
        self.known_plans: set[str] = set()
        self.start_db: str | None = None
        self.fault_db: str | None = None
        self.injected = False
        self.load: Load | None = None
        self.exp = Expectations(self)
        self.sip_note = "no SIP plan (drills.yaml `sip`, or the lab's)"
        self._tasks: list[asyncio.Task[Any]] = []
        self.doc: dict[str, Any] = {}

    @property
    def reason(self) -> str:
        return f"drill {self.s.name} (run {self.run_id})"

    # --- the run ----------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started, t0 = time.time(), time.monotonic()
        status, why = "passed", None
        await self._record("drill_started", f"{self.reason} started: {self.s.fault.describe()}",
                           data={"run_id": self.run_id, "drill": self.s.name, "target": self.s.target})
        try:
            why = await self._step("preflight", self._preflight)
            if why:
                status = "skipped"
            else:
                await self._body()
        except StepFailed as exc:  # before the fault: the steady state did not hold, or no controller
            self.failures.append(str(exc))
        except asyncio.CancelledError:
            status, why = "cancelled", "the drill was cancelled (controller stopping?)"
            raise
        except Exception as exc:  # a bug or a dead dependency: the drill reports it, never hides it
            log.exception("drill %s failed with an error", self.run_id)
            status, why = "error", f"{type(exc).__name__}: {exc}"
        finally:
            await self._finish(started, time.monotonic() - t0, status, why)
        return self.doc

    async def _body(self) -> None:
        await self._step("steady state before", self._steady_before)
        try:
            if self.s.load.rate_cps > 0 and self.sip is not None:
                await self._step("start the steady load", self._start_load)
            await self._step("inject the fault", self._inject)
            await self.exp.run()
        except StepFailed as exc:
            self.failures.append(str(exc))
        finally:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the process is stopping: nothing can run now
                self.failures.append("cancelled before the way back: check the site and fail back by hand")
            else:
                await self._after()

    async def _after(self) -> None:
        if self.injected:
            await self._guarded("way back", WayBack(self).run)
        if self.load is not None:
            await self._guarded("stop the steady load", self._stop_load)
        await self._guarded("steady state after", self._steady_after)

    async def _guarded(self, name: str, fn: Callable[[], Awaitable[str]]) -> None:
        try:
            await self._step(name, fn)
        except StepFailed as exc:
            self.failures.append(str(exc))

    async def _finish(self, started: float, duration: float, status: str, why: str | None) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.load is not None and status != "cancelled":  # cancelled: no waiting, close() kills
            with contextlib.suppress(Exception):
                await self.load.stop()
        if self.sip is not None:
            await self.sip.close()
        if status == "passed" and self.failures:
            status, why = "failed", self.failures[0]
        self.doc = await self._document(started, duration, status, why)
        directory = self.reports_dir / self.run_id
        try:
            self.doc["files"] = report.write(self.doc, directory)
        except OSError as exc:
            log.error("drill %s: cannot write the report in %s: %s", self.run_id, directory, exc)
        kind = "drill_skipped" if status == "skipped" else "drill_finished"
        await self._record(kind, f"{self.reason} {status}" + (f": {why}" if why else ""), status=status,
                           duration_s=duration, data=self.doc)
        log.info("%s", report.summary_line(self.doc))

    async def _record(self, kind: str, reason: str, **kw: Any) -> None:
        try:
            await self.ctl.record(kind, reason=reason, **kw)
        except Exception:  # the journal is an observer of the drill: it never breaks it
            log.exception("drill %s: cannot journal %s", self.run_id, kind)

    async def _step(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        rec: dict[str, Any] = {"name": name, "started": time.time(), "status": "running", "detail": ""}
        self.steps.append(rec)
        t0 = time.monotonic()
        try:
            out = await fn()
            rec["status"], rec["detail"] = "ok", out if isinstance(out, str) else ""
            return out
        except (StepFailed, TargetError, ControllerError, SippError) as exc:
            rec["status"], rec["detail"] = "failed", str(exc)
            raise StepFailed(f"{name}: {exc}") from exc
        finally:
            rec["duration_s"] = round(time.monotonic() - t0, 3)
            log.info("drill %s step %s: %s (%.2f s) %s", self.run_id, name, rec["status"], rec["duration_s"],
                     rec["detail"])

    # --- steady state -----------------------------------------------------------------------------

    async def _preflight(self) -> str | None:
        status = await self.ctl.status()
        self.start_db = status.get("active_db")
        self.known_plans = {p["id"] for p in await self.ctl.plans(ALL_PLANS)}
        return why_not_now(status, await self.ctl.plans("proposed"), self.s.steady_state.state) or \
            drill_in_progress(await self.ctl.history(50), time.time(), own=self.run_id)

    async def _steady_before(self) -> str:
        status = await self.ctl.status()
        problems = state_problems(status, self.s.steady_state, self.start_db)
        if problems:
            raise StepFailed("; ".join(problems))
        failed = await self.calls("before", self.s.steady_state.calls)
        if failed:
            raise StepFailed("; ".join(failed))
        return f"{status['state']}, active host {status['active_host']}; calls passed"

    async def _steady_after(self) -> str:
        steady = self.s.steady_state
        last: list[str] = []

        async def holds() -> bool:
            nonlocal last
            await self.reject_own_proposals()
            status = await self.ctl.status()
            last = state_problems(status, steady, self.start_db)
            if status.get("running_plan"):
                last.append("a plan is running")
            return not last

        if not await self.poll(holds, time.monotonic() + steady.within_s):
            raise StepFailed(f"not back within {steady.within_s:g} s: {'; '.join(last)}")
        failed = await self.calls("after", steady.calls)
        if failed:
            raise StepFailed("; ".join(failed))
        return "steady state holds again; calls passed"

    async def poll(self, predicate: Callable[[], Awaitable[bool]], deadline: float) -> bool:
        """Poll until `predicate` holds or `deadline` (monotonic) passes; a controller hiccup is a no."""
        while True:
            try:
                if await predicate():
                    return True
            except (ControllerError, TargetError) as exc:
                log.info("drill %s: poll: %s", self.run_id, exc)
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    # --- calls and load -----------------------------------------------------------------------------

    async def calls(self, phase: str, kinds: list[CallKind]) -> list[str]:
        """Run the verification calls against the active host; return what failed."""
        active = (await self.ctl.status()).get("active_host")
        failed = []
        for kind in kinds:
            check = await self._call(kind, active)
            self.checks.append({"phase": phase, **check.to_dict()})
            if not check.passed:
                failed.append(f"{kind.value} call failed: {check.detail}")
        return failed

    async def _call(self, kind: CallKind, active: str | None) -> CallCheck:
        t0, started = time.monotonic(), time.time()
        if kind is CallKind.LINE_TEST or self.sip is None or active is None:
            if kind is not CallKind.LINE_TEST or active is None:
                why = "no active host" if active is None else self.sip_note
                return CallCheck(kind.value, active, False, why, started, 0.0)
            try:
                detail, ok = await self.target.line_test(active), True
            except TargetError as exc:
                detail, ok = str(exc), False
            return CallCheck(kind.value, active, ok, detail, started, time.monotonic() - t0)
        if kind is CallKind.INBOUND:
            return await self.sip.inbound(active)
        if kind is CallKind.AGENT_ANSWER:
            return await self.sip.agent_answer(active)
        return await self.sip.outbound(active)

    async def _start_load(self) -> str:
        assert self.sip is not None
        self.load = Load(self.sip, self.s.load.rate_cps, self.s.budget_s())
        await self.load.enter("drill")
        front = self.sip.plan.front
        return f"{self.s.load.rate_cps:g} calls/s through the SIP front {front[0]}:{front[1]}" if front else ""

    async def _stop_load(self) -> str:
        assert self.load is not None
        await self.load.stop()
        drill, back = self.load.figures("drill"), self.load.figures("way_back")
        limit = self.s.expect.max_failed_calls
        if limit is not None:
            self.exp.max_failed(drill["failed"], limit)
        limits = self.s.expect.call_limits
        if limits is not None:
            self.exp.call_figures("drill", drill, limits.limits("drill"))
            if self.injected:
                self.exp.call_figures("way_back", back, limits.limits("way_back"))

        def fates(f: dict[str, Any]) -> str:
            return (f"{f['attempted']} calls: {f['calls_refused']} refused, {f['calls_cut']} cut, "
                    f"{f['calls_held']} held")
        return f"drill: {fates(drill)}; way back: {fates(back)}"

    # --- fault --------------------------------------------------------------------------------------

    async def _inject(self) -> str:
        f, t = self.s.fault, self.target
        self.fault_db = self.start_db if f.db_site == "active" else f.db_site
        self.injected = True
        self.exp.t_fault, self.exp.fault_ts = time.monotonic(), time.time()
        match f.kind:
            case FaultKind.SERVICE_CRASH | FaultKind.SERVICE_STOP:
                return await t.service(f.host or "", f.service or "",
                                       "crash" if f.kind is FaultKind.SERVICE_CRASH else "stop")
            case FaultKind.SERVICE_HANG:
                return await t.service(f.host or "", f.service or "", "hang")
            case FaultKind.SPAN_ALARM:
                return await t.span(f.host or "", f.span or 1, f.alarm)
            case FaultKind.BOARD_DOWN:
                return await t.board(f.host or "", up=False)
            case FaultKind.HOST_UNREACHABLE:
                return await t.reachable(f.host or "", up=False)
            case FaultKind.DB_DOWN:
                return await t.db(self.fault_db or "", up=False)
        return await self._switchover()

    async def _switchover(self) -> str:
        f = self.s.fault
        active = (await self.ctl.status()).get("active_host") or ""
        calls = f.calls_in_progress
        if calls is not None:
            await self.target.calls(active, calls.ivr, calls.agent)
        plan = await self.ctl.switchover(f.to or "", f"{self.reason}: planned switchover", f.drain_timeout_s)
        self.plan_roles[plan["id"]] = "fault"
        if calls is not None:
            self._tasks.append(asyncio.create_task(self._hang_up(active, calls.hang_up_after_s)))
        return f"switchover to {f.to} started (plan {plan['id']})" + (
            f" with {calls.ivr} IVR and {calls.agent} agent call(s) up on {active}" if calls else "")

    async def _hang_up(self, host: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        await self.target.calls(host, 0, 0)

    # --- the way back -------------------------------------------------------------------------------

    async def reject_own_proposals(self) -> list[str]:
        done = []
        for p in await self.ctl.plans("proposed"):
            if p["id"] not in self.known_plans:
                with contextlib.suppress(ControllerError):
                    await self.ctl.reject(p["id"], f"{self.reason}: way back, no longer wanted")
                    self.plan_roles.setdefault(p["id"], "rejected")
                    done.append(f"rejected proposal {p['id']} ({p.get('title')})")
        return done

    # --- the document -------------------------------------------------------------------------------

    async def _plans(self) -> list[dict[str, Any]]:
        out = []
        for plan_id, role in self.plan_roles.items():
            try:
                plan = await self.ctl.plan(plan_id)
                steps = await self.ctl.plan_steps(plan_id)
            except ControllerError as exc:
                out.append({"id": plan_id, "role": role, "status": "unknown", "error": str(exc), "steps": []})
                continue
            out.append({"id": plan_id, "role": role, "title": plan.get("title"), "status": plan.get("status"),
                        "action": plan.get("action"), "source": plan.get("source"),
                        "steps": [{"text": e["data"].get("text"), "duration_s": e.get("duration_s"),
                                   "status": e.get("status")} for e in steps]})
        return out

    async def _document(self, started: float, duration: float, status: str, why: str | None) -> dict[str, Any]:
        plans = await self._plans()
        load = {phase: self.load.figures(phase) for phase in ("drill", "way_back")} if self.load else {}
        fault_plan = next((p for p in plans if p["role"] == "fault"), None)
        figures = {**self.exp.figures(),
                   "plan_duration_s": round(sum(s["duration_s"] or 0 for s in fault_plan["steps"]), 3)
                   if fault_plan else None,
                   "calls_attempted": load.get("drill", {}).get("attempted"),
                   "calls_succeeded": load.get("drill", {}).get("succeeded"),
                   "calls_failed": load.get("drill", {}).get("failed"),
                   "calls_refused": load.get("drill", {}).get("calls_refused"),
                   "calls_cut": load.get("drill", {}).get("calls_cut"),
                   "calls_held": load.get("drill", {}).get("calls_held"),
                   "way_back_calls_attempted": load.get("way_back", {}).get("attempted"),
                   "way_back_calls_failed": load.get("way_back", {}).get("failed"),
                   "way_back_calls_refused": load.get("way_back", {}).get("calls_refused"),
                   "way_back_calls_cut": load.get("way_back", {}).get("calls_cut"),
                   "way_back_calls_held": load.get("way_back", {}).get("calls_held"),
                   "duration_s": round(duration, 3)}
        return {"run_id": self.run_id, "drill": self.s.name, "description": self.s.description,
                "source": self.s.source, "target": self.s.target, "status": status, "reason": why,
                "started": started, "ended": time.time(), "by": self.who,
                "fault": {"describe": self.s.fault.describe(), "text": self.s.fault.fault_text(self.fault_db),
                          "injected_at": self.exp.fault_ts},
                "figures": figures, "steps": self.steps, "expectations": self.exp.records,
                "checks": self.checks, "recovery": self.exp.recovery, "plans": plans, "load": load,
                "failures": self.failures}


def make_runner(scenario: ScenarioModel, cfg: LoadedConfig, controller: ControllerPort, agents: Any, fencer: Any,
                *, lab_dir: Path | None, reports_dir: Path | None = None, who: str = "drill runner",
                run_id: str | None = None) -> DrillRunner:
    """Wire a runner: the SIP plan (drills.yaml, else the lab's), the target (lab control API or agents),
    the reports directory (drills.yaml `reports_dir`, else `reports_dir`, else reports/drills)."""
    from drills.model import load_drills_config
    from drills.sipp import sip_plan, workdir_for
    from drills.target import LabControl

    run_id = run_id or new_run_id(scenario.name)
    drills_cfg = load_drills_config(cfg.directory)
    reports = Path(drills_cfg.reports_dir) if drills_cfg.reports_dir else (reports_dir or Path("reports/drills"))
    plan = sip_plan(cfg, drills_cfg)
    sip, note = None, None
    if plan is not None:
        try:
            sip = Sip(plan, workdir_for(reports, run_id))
        except SippError as exc:
            log.warning("drill %s runs without SIP calls: %s", run_id, exc)
            note = str(exc)
    lab = None
    if scenario.lab:
        lab = LabControl.from_lab_dir(lab_dir or cfg.directory.parent)
    target = Target(agents, fencer if getattr(fencer, "available", False) else None, lab, run_id)
    runner = DrillRunner(scenario, controller, target, cfg, sip, run_id=run_id, reports_dir=reports, who=who)
    if note:
        runner.sip_note = note
    return runner
