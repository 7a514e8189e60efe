"""The checklist runner: records every run event in the journal and carries out the automatic steps.

State is the fold of the journal's checklist events (`store.replay`), so a new runner over the same
journal has every run exactly as it was; automatic work that was under way when the controller stopped
is recorded as interrupted (failed, retry it). Every change goes through `_emit`: validated against the
run first (an event that does not fit is never written), journaled, then applied and published. After
each event `_drive` asks the pure machine what to do next: start ready steps (manual ones are then the
operator's; automatic ones run in an owned task), run a rollback, enter or leave maintenance mode (the
previous mode is journaled with the hold and restored after), finish the run.

One lock serialises every change. One open run at a time: a rehearsal and the real run follow each
other (two runs driving the same site at once would fight over its plans and its mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ccfo.config.yamlpos import Problem
from controller.checklists.checks import evaluate
from controller.checklists.machine import (
    Command,
    CommandKind,
    RunState,
    decide,
    interruption_events,
    operator_event,
    start_event,
)
from controller.checklists.model import Checklist, Event, EventKind, Refused, StepKind
from controller.checklists.ports import CallTestPort, DrillPort, SitePort
from controller.checklists.report import render
from controller.checklists.schedule import planned_from_rehearsal
from controller.checklists.specs import ActionSpec, CallTestSpec, CheckKind, CheckSpec, DrillSpec, Spec
from controller.checklists.store import ChecklistJournal, replay
from controller.checklists.views import run_status
from controller.journal import Journal

log = logging.getLogger("ccfo.checklists")
RUNNER = "runner"
Library = Callable[[], tuple[dict[str, Checklist], list[Problem]]]


class NotFound(KeyError):
    """No such checklist, run, step or phase."""


class InvalidChecklist(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ChecklistRunner:
    def __init__(self, journal: Journal, site: SitePort, drills: DrillPort, calls: CallTestPort, library: Library,
                 *, clock: Callable[[], float] = time.time, events: Any = None, poll_s: float = 0.2) -> None:
        self.store = ChecklistJournal(journal)
        self.site, self.drills, self.calls, self.library = site, drills, calls, library
        self.clock, self.events, self.poll_s = clock, events, poll_s
        self.runs: dict[str, RunState] = {}
        self.problems: list[str] = []
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._start_task: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay the journal, record interrupted work, re-assert maintenance holds, carry on driving."""
        async with self._lock:
            if self._started:
                return
            self.runs, self.problems = replay(await asyncio.to_thread(self.store.events))
            for problem in self.problems:
                log.error("checklist journal: %s", problem)
            for run in [r for r in self.runs.values() if r.open]:
                for ev in interruption_events(run, self.clock(), RUNNER):
                    await self._emit(ev)
                hold = self.runs[run.id].maintenance
                if hold and self.site.mode != "maintenance":
                    await self.site.set_mode("maintenance", f"checklist:{run.id}",
                                             f"checklist {run.id}: phase {hold.phase} holds maintenance (restart)")
                await self._drive(run.id)
            self._started = True

    def start_soon(self) -> None:
        """Start in the background (from code that cannot await); the task is owned and closed by `close`.
        A failure is logged, and the next request tries again (`ensure_started`)."""
        if self._start_task is None:
            self._start_task = asyncio.get_running_loop().create_task(self._start_logged(),
                                                                      name="ccfo-checklists-start")

    async def _start_logged(self) -> None:
        try:
            await self.start()
        except Exception:
            log.exception("checklists: cannot replay the journal now; the next request tries again")

    async def ensure_started(self) -> None:
        if not self._started:
            await self.start()

    async def close(self) -> None:
        tasks = [t for t in (self._start_task, *self._tasks.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    # --- queries ------------------------------------------------------------------------------

    def checklists(self) -> tuple[dict[str, Checklist], list[Problem]]:
        return self.library()

    def run(self, run_id: str) -> RunState:
        if run_id in ("current", "latest"):
            candidates = [r for r in self.runs.values() if r.open or run_id == "latest"]
            if not candidates:
                raise NotFound("no open checklist run" if run_id == "current" else "no checklist run yet")
            return max(candidates, key=lambda r: r.started)
        if run_id not in self.runs:
            raise NotFound(f"no checklist run {run_id!r}")
        return self.runs[run_id]

    def open_run(self) -> RunState | None:
        return next((r for r in self.runs.values() if r.open), None)

    def status(self, run_id: str) -> dict[str, Any]:
        return run_status(self.run(run_id), self.clock())

    async def report(self, run_id: str, fmt: str) -> str:
        await self.ensure_started()
        view = run_status(self.run(run_id), self.clock(), timeline=True)
        return render(view, fmt, await asyncio.to_thread(read_attachments, view))

    # --- operator requests --------------------------------------------------------------------

    async def start_run(self, name: str, who: str, reason: str, *, rehearsal: bool = False,
                        plan_from: str | None = "auto") -> RunState:
        await self.ensure_started()
        found, problems = await asyncio.to_thread(self.library)
        mine = [p for p in problems if p.file.rsplit("/", 1)[-1] == f"{name}.yaml"]
        if mine:
            raise InvalidChecklist(mine)
        if name not in found:
            raise NotFound(f"no checklist {name!r} (have: {', '.join(sorted(found)) or 'none'})")
        checklist = found[name]
        async with self._lock:
            busy = self.open_run()
            if busy is not None:
                raise Refused(f"run {busy.id} ({busy.checklist.name}) is still open: finish or abort it first")
            source = self._plan_source(name, plan_from)
            planned = planned_from_rehearsal(checklist, source) if source else {s.id: s.planned_s
                                                                                 for s in checklist.steps}
            run_id = f"{name}-{1 + sum(1 for r in self.runs.values() if r.checklist.name == name)}"
            await self._emit(start_event(run_id, checklist, who, reason, self.clock(), rehearsal=rehearsal,
                                         planned=planned, planned_from=source.id if source else None))
            await self._drive(run_id)
            return self.runs[run_id]

    def _plan_source(self, name: str, plan_from: str | None) -> RunState | None:
        if plan_from in (None, "none", ""):
            return None
        if plan_from != "auto":
            source = self.run(plan_from)
            if source.checklist.name != name:
                raise Refused(f"run {source.id} is a run of {source.checklist.name}, not of {name}")
            return source
        rehearsals = [r for r in self.runs.values() if r.rehearsal and r.checklist.name == name
                      and any(s.real_s is not None for s in r.steps.values())]
        return max(rehearsals, key=lambda r: r.started) if rehearsals else None

    async def operate(self, run_id: str, op: str, target: str, who: str, text: str) -> RunState:
        """done / fail / skip / retry / confirm a step, retry or roll back a phase, abort the run."""
        await self.ensure_started()
        async with self._lock:
            run = self.run(run_id)
            if op != "abort" and target not in run.steps and target not in {p.id for p in run.checklist.phases}:
                raise NotFound(f"run {run.id} has no step or phase {target!r}")
            await self._emit(operator_event(run, op, target, who, text, self.clock()))
            if op == "confirm":  # the operator's go: the step is running now, carry it out
                self._spawn(run.id, target, rollback=False)
            await self._drive(run.id)
            return self.runs[run.id]

    # --- recording and driving ----------------------------------------------------------------

    async def _emit(self, ev: Event) -> RunState:
        """Validate, journal, apply, publish. Callers hold the lock."""
        state = RunState.begin(ev) if ev.kind is EventKind.RUN_STARTED else self.runs[ev.run].apply(ev)
        duration = None
        if ev.kind is EventKind.STEP_FINISHED and ev.step:
            started = self.runs[ev.run].steps[ev.step].started
            duration = max(0.0, ev.at - started) if started is not None else None
        await asyncio.to_thread(self.store.append, ev, duration)
        self.runs[ev.run] = state
        log.info("checklist %s: %s %s %s%s", ev.run, ev.kind.value, ev.step or ev.phase or "", ev.outcome or "",
                 f" ({ev.actor}: {ev.note})" if ev.note else "")
        if self.events is not None:
            await self.events.publish("checklist", {"run": ev.run, "event": ev.kind.value, "step": ev.step,
                                                    "phase": ev.phase, "outcome": ev.outcome, "actor": ev.actor})
        return state

    async def _drive(self, run_id: str) -> None:
        """Carry out the machine's commands until it waits. Callers hold the lock."""
        while True:
            before = self.runs[run_id]
            commands = decide(before)
            if not commands:
                return
            for cmd in commands:
                await self._command(self.runs[run_id], cmd)
            if self.runs[run_id] is before:  # nothing changed: do not spin
                log.error("checklist %s: commands %s changed nothing", run_id, commands)
                return

    async def _command(self, run: RunState, cmd: Command) -> None:
        now = self.clock()
        match cmd.kind:
            case CommandKind.START_STEP:
                assert cmd.step is not None
                await self._emit(Event(run.id, EventKind.STEP_STARTED, now, RUNNER, cmd.step))
                step = run.checklist.step(cmd.step)
                if step.kind.automatic:
                    self._spawn(run.id, step.id, rollback=False)
            case CommandKind.RUN_ROLLBACK:
                assert cmd.step is not None
                rb = run.checklist.step(cmd.step).rollback
                if rb is None:
                    await self._emit(Event(run.id, EventKind.STEP_ROLLED_BACK, now, RUNNER, cmd.step, outcome="none",
                                           note="no way back declared: nothing to undo"))
                    return
                await self._emit(Event(run.id, EventKind.ROLLBACK_STEP_STARTED, now, RUNNER, cmd.step, note=rb.title))
                if rb.kind.automatic:
                    self._spawn(run.id, cmd.step, rollback=True)
            case CommandKind.ENTER_MAINTENANCE:
                previous = self.site.mode
                title = run.checklist.phase(cmd.phase or "").title
                await self._emit(Event(run.id, EventKind.MAINTENANCE_ENTERED, now, RUNNER, phase=cmd.phase,
                                       note=f"phase {title} stops services", data={"previous_mode": previous}))
                if previous != "maintenance":
                    await self.site.set_mode("maintenance", f"checklist:{run.id}",
                                             f"checklist {run.id}: phase {cmd.phase} stops services")
            case CommandKind.LEAVE_MAINTENANCE:
                hold = run.maintenance
                assert hold is not None
                restore = hold.previous_mode if self.site.mode == "maintenance" else None
                await self._emit(Event(run.id, EventKind.MAINTENANCE_LEFT, now, RUNNER, phase=hold.phase,
                                       data={"restored": restore, "mode_now": self.site.mode}))
                if restore and restore != "maintenance":
                    await self.site.set_mode(restore, f"checklist:{run.id}",
                                             f"checklist {run.id}: maintenance phases over, back to {restore}")
            case CommandKind.FINISH_RUN:
                await self._emit(Event(run.id, EventKind.RUN_FINISHED, now, RUNNER))

    def _spawn(self, run_id: str, step_id: str, *, rollback: bool) -> None:
        key = (run_id, step_id)
        task = asyncio.get_running_loop().create_task(self._execute(run_id, step_id, rollback),
                                                      name=f"ccfo-checklist-{run_id}-{step_id}")
        self._tasks[key] = task
        task.add_done_callback(lambda t, k=key: self._tasks.pop(k, None) if self._tasks.get(k) is t else None)

    async def _execute(self, run_id: str, step_id: str, rollback: bool) -> None:
        run = self.runs[run_id]
        step = run.checklist.step(step_id)
        kind, spec = (step.rollback.kind, step.rollback.spec) if rollback and step.rollback else (step.kind, step.spec)
        who = run.steps[step_id].started_by or RUNNER
        budget = step.timeout_s or 60.0
        try:
            async with asyncio.timeout(budget + 5.0):
                ok, note, output = await self._perform(run, step_id, kind, spec, who, budget)
        except TimeoutError:
            ok, note, output = False, f"timed out after {budget:g} s", {}
        except Exception as exc:  # a step never kills the runner: it fails, visibly
            log.exception("checklist %s step %s crashed", run_id, step_id)
            ok, note, output = False, f"internal error: {type(exc).__name__}: {exc}", {}
        async with self._lock:
            kind_done = EventKind.STEP_ROLLED_BACK if rollback else EventKind.STEP_FINISHED
            await self._emit(Event(run_id, kind_done, self.clock(), RUNNER, step_id, outcome="done" if ok else "failed",
                                   note=note, data={"output": output}))
            await self._drive(run_id)

    async def _perform(self, run: RunState, step_id: str, kind: StepKind, spec: Spec, who: str,
                       budget: float) -> tuple[bool, str, dict[str, Any]]:
        reason = f"checklist {run.id} step {step_id}: {run.checklist.step(step_id).title}"
        match spec:
            case CheckSpec(check=CheckKind.LINE_TEST):
                attempt = run.steps[step_id].attempts
                results = [await self.site.line_test(h, f"ccfo-checklist-{run.id}-{step_id}-{attempt}-{h}", reason,
                                                     budget) for h in spec.hosts]
                return all(ok for ok, _ in results), "; ".join(d for _, d in results), {}
            case CheckSpec():
                return await self._check(spec, budget)
            case ActionSpec():
                out = await self.site.run_plan(spec, who, reason, budget)
                return out.ok, out.detail, {"plan_id": out.plan_id}
            case DrillSpec():
                d = await self.drills.run(spec.name)
                return d.passed, d.summary, {"drill": spec.name, "passed": d.passed, "report_path": d.report_path,
                                             "summary": d.summary, **dict(d.data)}
            case CallTestSpec():
                c = await self.calls.run(spec)
                return c.passed, c.summary, {"call": spec.call.value, "passed": c.passed,
                                             "report_path": c.report_path, **dict(c.data)}
        raise ValueError(f"step {step_id}: a {kind.value} step with nothing to run")

    async def _check(self, spec: CheckSpec, budget: float) -> tuple[bool, str, dict[str, Any]]:
        """Poll the site status until the check holds or its time is up; fail with the last thing seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while True:
            ok, seen = evaluate(spec, self.site.status(), self.site.layout())
            if ok:
                return True, seen, {}
            if loop.time() >= deadline:
                return False, f"{spec.describe()}: not met within {budget:g} s; last seen: {seen}", {}
            await asyncio.sleep(self.poll_s)


ATTACHMENT_MAX = 64 * 1024


def read_attachments(view: Mapping[str, Any]) -> dict[str, str]:
    """The drill and call-test reports named by the steps' outputs, to embed in a run report."""
    out = {}
    for phase in view["phases"]:
        for step in phase["steps"]:
            path = step["output"].get("report_path")
            if not path:
                continue
            try:
                with open(Path(path), encoding="utf-8", errors="replace") as fh:
                    text = fh.read(ATTACHMENT_MAX + 1)
            except OSError as exc:
                out[step["id"]] = f"(report not readable: {exc})"
                continue
            out[step["id"]] = text[:ATTACHMENT_MAX] + ("\n... (cut)" if len(text) > ATTACHMENT_MAX else "")
    return out


def runner_for_engine(engine: Any) -> ChecklistRunner:
    """The runner of a controller process: its journal, its engine, checklists from CONFIG/checklists."""
    from controller.checklists.loader import load_checklists
    from controller.checklists.ports import EngineSite, drill_names, drill_ports

    directory = Path(engine.cfg.directory) / "checklists"
    drills, calls = drill_ports(engine)

    def library() -> tuple[dict[str, Checklist], list[Problem]]:
        return load_checklists(directory, engine.site, drill_names(Path(engine.cfg.directory)))

    return ChecklistRunner(engine.journal, EngineSite(engine), drills, calls, library, clock=engine.clock.now,
                           events=engine.events)
