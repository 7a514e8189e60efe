"""Scenario builders for the checklist tests: small checklists, runs, and a pure simulated runner.

`Sim` plays the runner's part against the pure machine only (no I/O, no clock): it carries out
`decide`'s commands and records every event, so tests can drive a run through operator requests and
automatic outcomes and then check the state, the events, and a replay of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.checklists.machine import Command, CommandKind, RunState, decide, operator_event, start_event
from controller.checklists.model import (
    Checklist,
    Event,
    EventKind,
    PhaseDef,
    PlannedStart,
    Rollback,
    StepDef,
    StepKind,
)
from controller.checklists.specs import ActionKind, ActionSpec, CheckKind, CheckSpec, DrillSpec, Spec

_DEFAULT_SPEC: dict[StepKind, Spec] = {
    StepKind.MANUAL: None, StepKind.CHECK: CheckSpec(CheckKind.SITE_STATE, value="normal"),
    StepKind.ACTION: ActionSpec(ActionKind.STOP_SERVICES), StepKind.DRILL: DrillSpec("primary-software-fault"),
}


def step(sid: str, kind: StepKind = StepKind.MANUAL, *, after: tuple[str, ...] | None = None, planned: float = 60.0,
         rollback: Rollback | None = None, confirm: bool | None = None) -> StepDef:
    """A step; `after=None` is filled in by `phase` with the step before it (the loader's default)."""
    return StepDef(sid, f"step {sid}", kind, "operator", planned, after if after is not None else ("<prev>",),
                   _DEFAULT_SPEC.get(kind), rollback,
                   confirm if confirm is not None else kind in (StepKind.ACTION, StepKind.DRILL), 30.0)


def phase(pid: str, *steps: StepDef, start: PlannedStart | None = None, maintenance: bool = False) -> PhaseDef:
    out, prev = [], None
    for s in steps:
        after = ((prev,) if prev else ()) if s.after == ("<prev>",) else s.after
        out.append(StepDef(s.id, s.title, s.kind, s.owner, s.planned_s, after, s.spec, s.rollback, s.confirm,
                           s.timeout_s, s.notes))
        prev = s.id
    return PhaseDef(pid, f"phase {pid}", tuple(out), start, maintenance)


def checklist(*phases: PhaseDef, name: str = "test") -> Checklist:
    return Checklist(name, f"checklist {name}", tuple(phases))


def begin(c: Checklist, *, at: float = 0.0, rehearsal: bool = False, planned: dict[str, float] | None = None,
          planned_from: str | None = None, run_id: str = "run-1") -> RunState:
    return RunState.begin(start_event(run_id, c, "tester", "a test run", at, rehearsal=rehearsal,
                                      planned=planned or {s.id: s.planned_s for s in c.steps},
                                      planned_from=planned_from))


MANUAL_RB = Rollback(StepKind.MANUAL, "undo it by hand")
ACTION_RB = Rollback(StepKind.ACTION, "start again", ActionSpec(ActionKind.START_SERVICES))


@dataclass
class Sim:
    """The runner's part, pure: `settle` carries out decide's commands (automatic steps keep running
    until the test finishes them), the other methods are the operator's and the steps' outcomes."""

    state: RunState
    now: float = 0.0
    mode: str = "supervised"
    log: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log.extend(self.state.events)

    def emit(self, e: Event) -> RunState:
        self.state = self.state.apply(e)
        self.log.append(e)
        return self.state

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def settle(self) -> RunState:
        for _ in range(1000):
            cmds = decide(self.state)
            if not cmds:
                return self.state
            for c in cmds:
                self._do(c)
        raise AssertionError("decide never settles")

    def _do(self, c: Command) -> None:
        s, at = self.state, self.now
        match c.kind:
            case CommandKind.START_STEP:
                self.emit(Event(s.id, EventKind.STEP_STARTED, at, "runner", c.step))
            case CommandKind.RUN_ROLLBACK:
                rb = s.checklist.step(c.step).rollback
                if rb is None:
                    self.emit(Event(s.id, EventKind.STEP_ROLLED_BACK, at, "runner", c.step, outcome="none"))
                else:
                    self.emit(Event(s.id, EventKind.ROLLBACK_STEP_STARTED, at, "runner", c.step))
            case CommandKind.ENTER_MAINTENANCE:
                self.emit(Event(s.id, EventKind.MAINTENANCE_ENTERED, at, "runner", phase=c.phase,
                                data={"previous_mode": self.mode}))
                self.mode = "maintenance"
            case CommandKind.LEAVE_MAINTENANCE:
                self.mode = s.maintenance.previous_mode if s.maintenance else self.mode
                self.emit(Event(s.id, EventKind.MAINTENANCE_LEFT, at, "runner"))
            case CommandKind.FINISH_RUN:
                self.emit(Event(s.id, EventKind.RUN_FINISHED, at, "runner"))

    def op(self, op: str, target: str = "", who: str = "alice", text: str = "because") -> RunState:
        self.emit(operator_event(self.state, op, target, who, text, self.now))
        return self.settle()

    def finish(self, step_id: str, ok: bool = True, note: str = "") -> RunState:
        """An automatic step (or rollback) ends by itself."""
        sr = self.state.steps[step_id]
        kind = EventKind.STEP_ROLLED_BACK if sr.status.value == "rolling_back" else EventKind.STEP_FINISHED
        self.emit(Event(self.state.id, kind, self.now, "runner", step_id, outcome="done" if ok else "failed",
                        note=note or None))
        return self.settle()
