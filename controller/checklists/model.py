"""Checklists as data: phases of typed steps, and the records a run is made of.

A checklist is phases of steps (manual, check, drill, action, call_test) with owners, planned durations,
dependencies (`after`, resolved by the loader) and optional rollbacks; `to_dict`/`from_dict` give the
form frozen into a run's first journal event, so a later edit of the file never changes a running run.
The run records (events, step runs, attempts, holds) are here; the machine that folds events into a
run and decides what happens next is controller.checklists.machine, the timing is .schedule.

Pure: no I/O, no clock (`at`/`now` are parameters), no asyncio, no yaml. Frozen dataclasses only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.checklists.specs import Spec, spec_from_dict, spec_to_dict


class StepKind(StrEnum):
    MANUAL = "manual"  # an operator marks it done or failed, with a note
    CHECK = "check"  # a health or capacity check that passes or fails by itself
    DRILL = "drill"  # a drill scenario (drills package)
    ACTION = "action"  # a plan (switchover, repoint_db, ...) run through the engine after confirmation
    CALL_TEST = "call_test"  # inbound / outbound / agent-answer test calls

    @property
    def automatic(self) -> bool:
        return self is not StepKind.MANUAL


@dataclass(frozen=True, slots=True)
class Rollback:
    """A step's way back: `kind` manual (an operator does it and says so), check or action."""

    kind: StepKind
    title: str
    spec: Spec = None


@dataclass(frozen=True, slots=True)
class StepDef:
    id: str
    title: str
    kind: StepKind
    owner: str
    planned_s: float
    after: tuple[str, ...] = ()  # resolved: the steps this one waits for
    spec: Spec = None
    rollback: Rollback | None = None
    confirm: bool = False  # an automatic step that waits for an operator's go
    timeout_s: float | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True)
class PlannedStart:
    """`fri 18:00` (weekday 0=Monday) or `day 2 08:00` (day 1 is the day the run starts)."""

    minute: int  # minute of the day
    weekday: int | None = None
    day: int | None = None

    def __str__(self) -> str:
        hhmm = f"{self.minute // 60:02d}:{self.minute % 60:02d}"
        if self.weekday is not None:
            return f"{WEEKDAYS[self.weekday]} {hhmm}"
        return f"day {self.day} {hhmm}"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class PhaseDef:
    id: str
    title: str
    steps: tuple[StepDef, ...]
    start: PlannedStart | None = None
    maintenance: bool = False  # the site is in maintenance mode while this phase runs


@dataclass(frozen=True, slots=True)
class Checklist:
    name: str
    title: str
    phases: tuple[PhaseDef, ...]
    description: str = ""

    @property
    def steps(self) -> tuple[StepDef, ...]:
        return tuple(s for p in self.phases for s in p.steps)

    def step(self, step_id: str) -> StepDef:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def phase(self, phase_id: str) -> PhaseDef:
        for p in self.phases:
            if p.id == phase_id:
                return p
        raise KeyError(phase_id)

    def phase_of(self, step_id: str) -> PhaseDef:
        for p in self.phases:
            if any(s.id == step_id for s in p.steps):
                return p
        raise KeyError(step_id)

    def planned_total_s(self) -> float:
        return sum(s.planned_s for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "description": self.description,
                "phases": [_phase_to_dict(p) for p in self.phases]}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Checklist:
        return Checklist(d["name"], d["title"], tuple(_phase_from_dict(p) for p in d["phases"]),
                         d.get("description", ""))


def phase_offsets(checklist: Checklist) -> dict[str, float | None]:
    """Seconds from the first phase's planned start to each phase's planned start (None: no start).

    Weekday starts count forward from the phase before (`sat 08:00` after `fri 18:00` is 14 h later);
    `day N` starts count from day 1. The loader refuses mixed forms and a start on a later phase
    without one on the first.
    """
    out: dict[str, float | None] = {}
    first: int | None = None
    pos: int | None = None
    last_weekday: int | None = None
    for p in checklist.phases:
        s = p.start
        if s is None:
            out[p.id] = None
            continue
        if s.day is not None:
            pos = (s.day - 1) * 1440 + s.minute
        else:
            assert s.weekday is not None
            if pos is None or last_weekday is None:
                pos = s.minute
            else:
                delta = ((s.weekday - last_weekday) % 7) * 1440 + s.minute - pos % 1440
                pos += delta if delta >= 0 else delta + 7 * 1440
            last_weekday = s.weekday
        first = pos if first is None else first
        out[p.id] = float((pos - first) * 60)
    return out


def _phase_to_dict(p: PhaseDef) -> dict[str, Any]:
    start = None if p.start is None else {"minute": p.start.minute, "weekday": p.start.weekday, "day": p.start.day}
    return {"id": p.id, "title": p.title, "start": start, "maintenance": p.maintenance,
            "steps": [_step_to_dict(s) for s in p.steps]}


def _phase_from_dict(d: Mapping[str, Any]) -> PhaseDef:
    st = d.get("start")
    start = None if st is None else PlannedStart(int(st["minute"]), st.get("weekday"), st.get("day"))
    return PhaseDef(d["id"], d["title"], tuple(_step_from_dict(s) for s in d["steps"]), start,
                    bool(d.get("maintenance", False)))


def _step_to_dict(s: StepDef) -> dict[str, Any]:
    rb = None if s.rollback is None else {"kind": s.rollback.kind.value, "title": s.rollback.title,
                                          "spec": spec_to_dict(s.rollback.spec)}
    return {"id": s.id, "title": s.title, "kind": s.kind.value, "owner": s.owner, "planned_s": s.planned_s,
            "after": list(s.after), "spec": spec_to_dict(s.spec), "rollback": rb, "confirm": s.confirm,
            "timeout_s": s.timeout_s, "notes": s.notes}


def _step_from_dict(d: Mapping[str, Any]) -> StepDef:
    rb = d.get("rollback")
    rollback = None if rb is None else Rollback(StepKind(rb["kind"]), rb["title"], spec_from_dict(rb.get("spec")))
    return StepDef(d["id"], d["title"], StepKind(d["kind"]), d["owner"], float(d["planned_s"]), tuple(d["after"]),
                   spec_from_dict(d.get("spec")), rollback, bool(d.get("confirm", False)), d.get("timeout_s"),
                   d.get("notes", ""))


# --------------------------------------------------------------------------- run state


class StepStatus(StrEnum):
    PENDING = "pending"  # not started (waiting, ready, blocked or awaiting confirmation: see `step_view`)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLING_BACK = "rolling_back"  # its rollback is under way (manual: an operator must say when it is done)
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"  # its way back failed: roll back again, retry or skip it

    @property
    def complete(self) -> bool:
        """Complete steps release the steps that wait for them."""
        return self in (StepStatus.DONE, StepStatus.SKIPPED)


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"  # outcome done | failed
    STEP_SKIPPED = "step_skipped"
    STEP_RETRIED = "step_retried"  # a step (or every failed / rolled-back step of `phase`) back to pending
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_STEP_STARTED = "rollback_step_started"
    STEP_ROLLED_BACK = "step_rolled_back"  # outcome done | failed | none (no way back declared)
    MAINTENANCE_ENTERED = "maintenance_entered"
    MAINTENANCE_LEFT = "maintenance_left"
    RUN_FINISHED = "run_finished"
    RUN_ABORTED = "run_aborted"


@dataclass(frozen=True, slots=True)
class Event:
    run: str
    kind: EventKind
    at: float
    actor: str
    step: str | None = None
    phase: str | None = None
    note: str | None = None
    outcome: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One past try of a step or of its rollback, kept for the report."""

    what: str  # "step" | "rollback"
    started: float | None
    ended: float
    outcome: str
    by: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class StepRun:
    status: StepStatus = StepStatus.PENDING
    started: float | None = None
    ended: float | None = None
    started_by: str | None = None
    ended_by: str | None = None
    note: str | None = None
    attempts: int = 0
    output: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Attempt, ...] = ()

    @property
    def real_s(self) -> float | None:
        if self.started is None or self.ended is None or self.status is not StepStatus.DONE:
            return None
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True, slots=True)
class RollbackRun:
    phase: str
    queue: tuple[str, ...]  # steps still to roll back, in order (reverse order of completion)
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class MaintenanceHold:
    phase: str
    previous_mode: str


class Refused(Exception):
    """An operator request that does not apply to the run as it is; the message says why."""


class InvalidEvent(ValueError):
    """A recorded event that does not fit the run (a damaged or foreign journal entry)."""


def describe(e: Event) -> str:
    """An event as one line, for `ccfo journal` and the report's timeline."""
    what = e.kind.value.replace("_", " ")
    subject = f" {e.step}" if e.step else f" {e.phase}" if e.phase else ""
    outcome = f": {e.outcome}" if e.outcome else ""
    return f"checklist {e.run}: {what}{subject}{outcome}"
