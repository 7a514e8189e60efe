"""The pure run-state machine: a run is the fold of its events; `decide` says what to do next.

`RunState.apply(event)` is the only way a run changes, so replaying the journal's checklist events
rebuilds every run exactly (a controller restart loses nothing). `readiness` says which pending steps
are ready, awaiting confirmation, waiting or blocked (and by which failed steps); `decide` turns that
into the runner's next commands; `operator_event` validates an operator's request against the run
and returns the event to record, or raises `Refused`.

Pure: no I/O, no clock, no asyncio. Times are parameters; events carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from controller.checklists.model import (
    Attempt,
    Checklist,
    Event,
    EventKind,
    InvalidEvent,
    MaintenanceHold,
    PhaseDef,
    Refused,
    RollbackRun,
    StepDef,
    StepRun,
    StepStatus,
)

BAD = (StepStatus.FAILED, StepStatus.ROLLED_BACK, StepStatus.ROLLING_BACK, StepStatus.ROLLBACK_FAILED)
UNDONE = (StepStatus.ROLLED_BACK, StepStatus.ROLLING_BACK, StepStatus.ROLLBACK_FAILED)  # freeze their phase
REDO = (StepStatus.FAILED, StepStatus.ROLLED_BACK, StepStatus.ROLLBACK_FAILED)  # what retry accepts
UNDO = (StepStatus.DONE, StepStatus.ROLLBACK_FAILED)  # what a rollback undoes


class Readiness(StrEnum):
    WAITING = "waiting"  # its dependencies (or the phase before) are not complete yet
    READY = "ready"
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # ready; an operator must confirm it
    BLOCKED = "blocked"  # a step it waits on failed or was rolled back


class CommandKind(StrEnum):
    START_STEP = "start_step"
    RUN_ROLLBACK = "run_rollback"
    ENTER_MAINTENANCE = "enter_maintenance"
    LEAVE_MAINTENANCE = "leave_maintenance"
    FINISH_RUN = "finish_run"


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    step: str | None = None
    phase: str | None = None


@dataclass(frozen=True, slots=True)
class RunState:
    id: str
    checklist: Checklist
    rehearsal: bool
    started: float
    started_by: str
    reason: str
    planned: Mapping[str, float]  # planned seconds per step, frozen at the start of the run
    planned_from: str | None  # the rehearsal run the planned durations came from, if any
    steps: Mapping[str, StepRun]
    rollback: RollbackRun | None = None
    maintenance: MaintenanceHold | None = None
    ended: float | None = None
    outcome: str | None = None  # finished | aborted
    events: tuple[Event, ...] = ()
    rollback_started_at: Mapping[str, float] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.outcome is None

    @staticmethod
    def begin(e: Event) -> RunState:
        if e.kind is not EventKind.RUN_STARTED:
            raise InvalidEvent(f"run {e.run}: the first event must be run_started, got {e.kind.value}")
        try:
            checklist = Checklist.from_dict(e.data["checklist"])
            planned = {s.id: float(e.data.get("planned", {}).get(s.id, s.planned_s)) for s in checklist.steps}
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"run {e.run}: run_started does not hold a checklist: {exc}") from exc
        return RunState(e.run, checklist, bool(e.data.get("rehearsal", False)), e.at, e.actor, e.note or "",
                        planned, e.data.get("planned_from"), {s.id: StepRun() for s in checklist.steps},
                        events=(e,))

    def step(self, step_id: str) -> StepRun:
        return self.steps[step_id]

    def apply(self, e: Event) -> RunState:
        """The run after `e`; raises InvalidEvent when `e` does not fit (nothing changes then)."""
        if e.run != self.id:
            raise InvalidEvent(f"event for run {e.run} applied to run {self.id}")
        if not self.open and e.kind is not EventKind.MAINTENANCE_LEFT:
            raise InvalidEvent(f"run {self.id} is {self.outcome}: {e.kind.value} does not apply")
        handler = _HANDLERS.get(e.kind)
        if handler is None:
            raise InvalidEvent(f"run {self.id}: {e.kind.value} cannot be applied")
        return replace(handler(self, e), events=(*self.events, e))

    def _set(self, step_id: str | None, **changes: Any) -> RunState:
        if step_id not in self.steps:
            raise InvalidEvent(f"run {self.id}: no step {step_id!r}")
        steps = dict(self.steps)
        steps[step_id] = replace(steps[step_id], **changes)
        return replace(self, steps=steps)

    def _need(self, e: Event, *allowed: StepStatus) -> StepRun:
        if e.step not in self.steps:
            raise InvalidEvent(f"run {self.id}: no step {e.step!r}")
        sr = self.steps[e.step]
        if sr.status not in allowed:
            raise InvalidEvent(f"run {self.id}: {e.kind.value} for step {e.step} which is {sr.status.value}")
        return sr


def _started(s: RunState, e: Event) -> RunState:
    sr = s._need(e, StepStatus.PENDING)
    return s._set(e.step, status=StepStatus.RUNNING, started=e.at, started_by=e.actor, ended=None, ended_by=None,
                  note=e.note, attempts=sr.attempts + 1, output={})


def _finished(s: RunState, e: Event) -> RunState:
    sr = s._need(e, StepStatus.RUNNING)
    if e.outcome not in ("done", "failed"):
        raise InvalidEvent(f"run {s.id}: step_finished outcome must be done or failed, got {e.outcome!r}")
    status = StepStatus.DONE if e.outcome == "done" else StepStatus.FAILED
    attempt = Attempt("step", sr.started, e.at, e.outcome, e.actor, e.note)
    return s._set(e.step, status=status, ended=e.at, ended_by=e.actor, note=e.note,
                  output=dict(e.data.get("output") or {}), history=(*sr.history, attempt))


def _skipped(s: RunState, e: Event) -> RunState:
    sr = s._need(e, StepStatus.PENDING, StepStatus.RUNNING, *REDO)
    attempt = Attempt("step", sr.started if sr.status is StepStatus.RUNNING else None, e.at, "skipped", e.actor, e.note)
    started = sr.started if sr.status is StepStatus.RUNNING else None
    return s._set(e.step, status=StepStatus.SKIPPED, started=started, ended=e.at, ended_by=e.actor, note=e.note,
                  history=(*sr.history, attempt))


def _retried(s: RunState, e: Event) -> RunState:
    targets = [e.step] if e.step else [x.id for x in s.checklist.phase(e.phase or "").steps
                                       if s.steps[x.id].status in REDO]
    if not targets:
        raise InvalidEvent(f"run {s.id}: retry of phase {e.phase} with nothing to retry")
    out = s
    for step_id in targets:
        out._need(replace(e, step=step_id), *REDO)
        out = out._set(step_id, status=StepStatus.PENDING, started=None, ended=None, started_by=None, ended_by=None,
                       note=None, output={})
    return out


def _rollback_started(s: RunState, e: Event) -> RunState:
    """The way back begins; manual steps of the phase still in progress are abandoned (back to pending)."""
    queue = tuple(e.data.get("queue") or ())
    if s.rollback is not None or not queue or any(s.steps.get(q, StepRun()).status not in UNDO for q in queue):
        raise InvalidEvent(f"run {s.id}: rollback of {e.phase} does not fit the run")
    out = s
    for x in s.checklist.phase(e.phase or "").steps:
        sr = s.steps[x.id]
        if sr.status is StepStatus.RUNNING and not x.kind.automatic:
            attempt = Attempt("step", sr.started, e.at, "abandoned", e.actor, "the phase is being rolled back")
            out = out._set(x.id, status=StepStatus.PENDING, started=None, started_by=None, note=None,
                           history=(*sr.history, attempt))
    return replace(out, rollback=RollbackRun(e.phase or "", queue, e.actor, e.note or ""))


def _rollback_step_started(s: RunState, e: Event) -> RunState:
    s._need(e, *UNDO)
    if s.rollback is None or s.rollback.queue[0] != e.step:
        raise InvalidEvent(f"run {s.id}: {e.step} is not next in the rollback")
    out = s._set(e.step, status=StepStatus.ROLLING_BACK)
    return replace(out, rollback_started_at={**s.rollback_started_at, e.step or "": e.at})


def _rolled_back(s: RunState, e: Event) -> RunState:
    sr = s._need(e, StepStatus.ROLLING_BACK, *UNDO)
    if s.rollback is None or s.rollback.queue[0] != e.step:
        raise InvalidEvent(f"run {s.id}: {e.step} is not next in the rollback")
    if e.outcome not in ("done", "failed", "none"):
        raise InvalidEvent(f"run {s.id}: step_rolled_back outcome must be done, failed or none, got {e.outcome!r}")
    attempt = Attempt("rollback", s.rollback_started_at.get(e.step or ""), e.at, e.outcome, e.actor, e.note)
    if e.outcome == "failed":  # the way back stops here; the phase stays frozen until the operator decides
        return replace(s._set(e.step, status=StepStatus.ROLLBACK_FAILED, note=e.note, history=(*sr.history, attempt)),
                       rollback=None)
    out = s._set(e.step, status=StepStatus.ROLLED_BACK, ended=e.at, ended_by=e.actor, note=e.note,
                 history=(*sr.history, attempt))
    rest = s.rollback.queue[1:]
    return replace(out, rollback=replace(s.rollback, queue=rest) if rest else None)


def _maintenance(s: RunState, e: Event) -> RunState:
    if e.kind is EventKind.MAINTENANCE_ENTERED:
        return replace(s, maintenance=MaintenanceHold(e.phase or "", str(e.data.get("previous_mode", ""))))
    return replace(s, maintenance=None)


def _closed(s: RunState, e: Event) -> RunState:
    if e.kind is EventKind.RUN_FINISHED and any(not r.status.complete for r in s.steps.values()):
        raise InvalidEvent(f"run {s.id}: finished while steps are open")
    return replace(s, ended=e.at, outcome="finished" if e.kind is EventKind.RUN_FINISHED else "aborted")


_HANDLERS = {
    EventKind.STEP_STARTED: _started, EventKind.STEP_FINISHED: _finished, EventKind.STEP_SKIPPED: _skipped,
    EventKind.STEP_RETRIED: _retried, EventKind.ROLLBACK_STARTED: _rollback_started,
    EventKind.ROLLBACK_STEP_STARTED: _rollback_step_started, EventKind.STEP_ROLLED_BACK: _rolled_back,
    EventKind.MAINTENANCE_ENTERED: _maintenance, EventKind.MAINTENANCE_LEFT: _maintenance,
    EventKind.RUN_FINISHED: _closed, EventKind.RUN_ABORTED: _closed,
}


# --------------------------------------------------------------------------- readiness and decisions


def ancestors(checklist: Checklist, step_id: str) -> frozenset[str]:
    """Every step `step_id` waits for: all steps of earlier phases (the barrier) and its `after` closure."""
    out: set[str] = set()
    for phase in checklist.phases:
        if any(s.id == step_id for s in phase.steps):
            break
        out.update(s.id for s in phase.steps)
    todo = list(checklist.step(step_id).after)
    while todo:
        sid = todo.pop()
        if sid not in out:
            out.add(sid)
            todo.extend(checklist.step(sid).after)
    return frozenset(out)


def current_phase(s: RunState) -> PhaseDef | None:
    """The first phase with a step that is not done or skipped; None when every step is."""
    return next((p for p in s.checklist.phases if any(not s.steps[x.id].status.complete for x in p.steps)), None)


def readiness(s: RunState, step: StepDef) -> tuple[Readiness, tuple[str, ...]]:
    """For a pending step: ready / awaiting confirmation / waiting / blocked, and the steps blocking it."""
    phase = s.checklist.phase_of(step.id)
    bad = [a for a in ancestors(s.checklist, step.id) if s.steps[a].status in BAD]
    bad += [x.id for x in phase.steps if s.steps[x.id].status in UNDONE]  # a phase on its way back is frozen
    if s.rollback is not None and s.rollback.phase == phase.id:
        bad += list(s.rollback.queue)
    order = {x.id: i for i, x in enumerate(s.checklist.steps)}
    if bad:
        return Readiness.BLOCKED, tuple(sorted(set(bad), key=order.__getitem__))
    cur = current_phase(s)
    if cur is None or cur.id != phase.id or not all(s.steps[a].status.complete for a in ancestors(s.checklist,
                                                                                                   step.id)):
        return Readiness.WAITING, ()  # transitively: skipping a step does not let its successors overtake
    return (Readiness.AWAITING_CONFIRMATION if step.confirm else Readiness.READY), ()


def decide(s: RunState) -> list[Command]:
    """What the runner should do now, in order. Empty when it must wait (for an operator or a step)."""
    if not s.open:
        return [Command(CommandKind.LEAVE_MAINTENANCE)] if s.maintenance else []
    if s.rollback is not None:  # the mode stays as the way back found it: undoing a phase is site work too
        head = s.rollback.queue[0]
        return [Command(CommandKind.RUN_ROLLBACK, head, s.rollback.phase)] \
            if s.steps[head].status in UNDO else []
    cur = current_phase(s)
    hold = cur is not None and cur.maintenance
    if hold and s.maintenance is None:
        return [Command(CommandKind.ENTER_MAINTENANCE, phase=cur.id if cur else None)]
    if not hold and s.maintenance is not None:
        return [Command(CommandKind.LEAVE_MAINTENANCE)]
    if cur is None:
        return [Command(CommandKind.FINISH_RUN)]
    return [Command(CommandKind.START_STEP, x.id, cur.id) for x in cur.steps
            if s.steps[x.id].status is StepStatus.PENDING and readiness(s, x)[0] is Readiness.READY]


def interruption_events(s: RunState, at: float, actor: str) -> list[Event]:
    """After a restart: automatic work that was under way has no owner any more; record it as failed so an
    operator can retry it (a check is harmless to repeat; a drill or a plan is the operator's call)."""
    out = []
    for step in s.checklist.steps:
        sr = s.steps[step.id]
        if sr.status is StepStatus.RUNNING and step.kind.automatic:
            out.append(Event(s.id, EventKind.STEP_FINISHED, at, actor, step.id, outcome="failed",
                             note="interrupted: the controller stopped while this step ran; retry it"))
        elif sr.status is StepStatus.ROLLING_BACK and step.rollback and step.rollback.kind.automatic:
            out.append(Event(s.id, EventKind.STEP_ROLLED_BACK, at, actor, step.id, outcome="failed",
                             note="interrupted: the controller stopped while this rollback ran; roll back again"))
    return out


# --------------------------------------------------------------------------- operator requests


def operator_event(s: RunState, op: str, target: str, who: str, text: str, at: float) -> Event:
    """Validate an operator's request (done, fail, skip, retry, confirm, rollback, abort) and return its event."""
    if not s.open:
        raise Refused(f"run {s.id} is {s.outcome}")
    if op == "abort":
        return _abort(s, who, text, at)
    if op == "rollback":
        return _rollback(s, target, who, text, at)
    if op == "retry" and target not in s.steps:
        return _retry_phase(s, target, who, text, at)
    if target not in s.steps:
        raise Refused(f"run {s.id} has no step {target!r}")
    step, sr = s.checklist.step(target), s.steps[target]
    ev = Event(s.id, EventKind.STEP_FINISHED, at, who, target, note=text or None)
    if op in ("done", "fail"):
        outcome = "done" if op == "done" else "failed"
        if sr.status is StepStatus.ROLLING_BACK and step.rollback and not step.rollback.kind.automatic:
            return replace(ev, kind=EventKind.STEP_ROLLED_BACK, outcome=outcome)
        if sr.status is not StepStatus.RUNNING or step.kind.automatic:
            raise Refused(_why_not(s, step, sr, op))
        return replace(ev, outcome=outcome)
    if op == "skip":
        if sr.status in (StepStatus.DONE, StepStatus.SKIPPED, StepStatus.ROLLING_BACK) or (
                sr.status is StepStatus.RUNNING and step.kind.automatic):
            raise Refused(f"step {target} is {sr.status.value}" + (" (automatic: wait for it to finish)"
                                                                   if sr.status is StepStatus.RUNNING else ""))
        return replace(ev, kind=EventKind.STEP_SKIPPED)
    if op == "retry":
        if sr.status not in REDO:
            raise Refused(f"step {target} is {sr.status.value}: only a failed or rolled-back step can be retried")
        if s.rollback is not None:
            raise Refused(f"the rollback of phase {s.rollback.phase} is under way")
        return replace(ev, kind=EventKind.STEP_RETRIED)
    if op == "confirm":
        state, _ = readiness(s, step) if sr.status is StepStatus.PENDING else (None, ())
        if state is not Readiness.AWAITING_CONFIRMATION or s.rollback is not None:
            raise Refused(f"step {target} is not awaiting confirmation ({_state_text(s, step)})")
        return replace(ev, kind=EventKind.STEP_STARTED, data={"confirmed": True})
    raise Refused(f"unknown operation {op!r}")


def _why_not(s: RunState, step: StepDef, sr: StepRun, op: str) -> str:
    if step.kind.automatic:
        return f"step {step.id} is a {step.kind.value} step: it passes or fails by itself (retry or skip it instead)"
    return f"step {step.id} cannot be marked {'done' if op == 'done' else 'failed'}: it is {_state_text(s, step)}"


def _state_text(s: RunState, step: StepDef) -> str:
    sr = s.steps[step.id]
    if sr.status is not StepStatus.PENDING:
        return sr.status.value
    state, blockers = readiness(s, step)
    return state.value + (f" by {', '.join(blockers)}" if blockers else "")


def _retry_phase(s: RunState, phase_id: str, who: str, text: str, at: float) -> Event:
    try:
        phase = s.checklist.phase(phase_id)
    except KeyError:
        raise Refused(f"run {s.id} has no step or phase {phase_id!r}") from None
    if s.rollback is not None:
        raise Refused(f"the rollback of phase {s.rollback.phase} is under way")
    if not any(s.steps[x.id].status in REDO for x in phase.steps):
        raise Refused(f"phase {phase_id} has no failed or rolled-back step to retry")
    return Event(s.id, EventKind.STEP_RETRIED, at, who, phase=phase_id, note=text or None)


def _rollback(s: RunState, phase_id: str, who: str, reason: str, at: float) -> Event:
    try:
        phase = s.checklist.phase(phase_id)
    except KeyError:
        raise Refused(f"run {s.id} has no phase {phase_id!r}") from None
    if s.rollback is not None:
        raise Refused(f"the rollback of phase {s.rollback.phase} is already under way")
    busy = [x.id for x in phase.steps if s.steps[x.id].status is StepStatus.RUNNING and x.kind.automatic]
    if busy:
        raise Refused(f"step {', '.join(busy)} of phase {phase_id} is running: wait for it to finish")
    later = s.checklist.phases[[p.id for p in s.checklist.phases].index(phase_id) + 1:]
    started = [x.id for p in later for x in p.steps if s.steps[x.id].started is not None]
    if started:
        raise Refused(f"later phases have started ({', '.join(started[:3])}): roll those back first")
    done = [x for x in phase.steps if s.steps[x.id].status in UNDO]
    if not done:
        raise Refused(f"phase {phase_id} has no completed step to roll back")
    order = {x.id: i for i, x in enumerate(phase.steps)}
    queue = sorted(done, key=lambda x: (s.steps[x.id].ended or 0.0, order[x.id]), reverse=True)
    return Event(s.id, EventKind.ROLLBACK_STARTED, at, who, phase=phase_id, note=reason,
                 data={"queue": [x.id for x in queue]})


def _abort(s: RunState, who: str, reason: str, at: float) -> Event:
    busy = [x.id for x in s.checklist.steps
            if (s.steps[x.id].status is StepStatus.RUNNING and x.kind.automatic)
            or (s.steps[x.id].status is StepStatus.ROLLING_BACK and x.rollback and x.rollback.kind.automatic)]
    if busy:
        raise Refused(f"step {', '.join(busy)} is under way: wait for it to finish before aborting the run")
    return Event(s.id, EventKind.RUN_ABORTED, at, who, note=reason)


def start_event(run_id: str, checklist: Checklist, who: str, reason: str, at: float, *, rehearsal: bool,
                planned: Mapping[str, float], planned_from: str | None) -> Event:
    return Event(run_id, EventKind.RUN_STARTED, at, who, note=reason,
                 data={"checklist": checklist.to_dict(), "rehearsal": rehearsal, "planned": dict(planned),
                       "planned_from": planned_from})

