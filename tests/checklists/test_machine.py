"""The pure run-state machine: readiness, blocking, operator requests, maintenance, rollback, replay."""

from __future__ import annotations

import pytest

from controller.checklists.machine import (
    CommandKind,
    Readiness,
    RunState,
    ancestors,
    decide,
    interruption_events,
    operator_event,
    readiness,
)
from controller.checklists.model import Event, EventKind, InvalidEvent, Refused, StepStatus
from controller.checklists.model import StepKind as K
from controller.checklists.store import replay
from tests.checklists.factories import ACTION_RB, MANUAL_RB, Sim, begin, checklist, phase, step


def diamond() -> Sim:
    """prep: a -> (b, c) -> d ; then go: e (waits for phase prep)."""
    c = checklist(phase("prep", step("a"), step("b"), step("c", after=("a",)), step("d", after=("b", "c"))),
                  phase("go", step("e"), step("f", after=())))
    sim = Sim(begin(c))
    sim.settle()
    return sim


def states(sim: Sim) -> dict[str, str]:
    out = {}
    for s in sim.state.checklist.steps:
        sr = sim.state.steps[s.id]
        out[s.id] = sr.status.value if sr.status is not StepStatus.PENDING else readiness(sim.state, s)[0].value
    return out


def test_manual_steps_start_when_ready_and_the_operator_ends_them():
    sim = diamond()
    assert states(sim) == {"a": "running", "b": "waiting", "c": "waiting", "d": "waiting", "e": "waiting",
                           "f": "waiting"}
    sim.tick(30)
    sim.op("done", "a", who="bob", text="all set")
    a = sim.state.steps["a"]
    assert (a.status, a.started, a.ended, a.started_by, a.ended_by, a.note) == (
        StepStatus.DONE, 0.0, 30.0, "runner", "bob", "all set")
    assert states(sim)["b"] == "running" and states(sim)["c"] == "running"
    assert states(sim)["e"] == "waiting", "phase go waits for every step of prep (a barrier)"


def test_a_failed_step_blocks_its_dependants_and_later_phases_but_not_the_others():
    sim = diamond()
    sim.op("done", "a")
    sim.op("fail", "c", text="cable missing")
    sim.op("done", "b")
    st = states(sim)
    assert st["c"] == "failed" and st["d"] == "blocked" and st["e"] == "blocked" and st["f"] == "blocked"
    assert readiness(sim.state, sim.state.checklist.step("d")) == (Readiness.BLOCKED, ("c",))
    assert decide(sim.state) == [], "nothing to start: the run waits for the operator"


def test_skip_releases_dependants_and_records_who_and_why():
    sim = diamond()
    sim.op("done", "a")
    sim.op("fail", "c", text="cable missing")
    sim.op("done", "b")
    sim.tick(5)
    sim.op("skip", "c", who="carol", text="not needed this time")
    c = sim.state.steps["c"]
    assert (c.status, c.ended_by, c.note) == (StepStatus.SKIPPED, "carol", "not needed this time")
    assert [a.outcome for a in c.history] == ["failed", "skipped"]
    assert states(sim)["d"] == "running"


def test_retry_runs_the_step_again_and_keeps_the_failed_attempt():
    sim = diamond()
    sim.op("done", "a")
    sim.op("fail", "b", text="first try broke")
    sim.tick(10)
    sim.op("retry", "b", who="dave", text="fixed the cable")
    b = sim.state.steps["b"]
    assert b.status is StepStatus.RUNNING and b.attempts == 2 and b.started == 10.0
    assert b.history[0].outcome == "failed" and b.history[0].note == "first try broke"
    retry = sim.log[-2]
    assert (retry.kind, retry.actor, retry.note) == (EventKind.STEP_RETRIED, "dave", "fixed the cable")


@pytest.mark.parametrize(("op", "target", "message"), [
    ("done", "b", "waiting"), ("retry", "a", "only a failed"), ("skip", "zz", "no step"),
    ("confirm", "a", "not awaiting"), ("rollback", "go", "no completed step"), ("rollback", "nope", "no phase"),
    ("retry", "prep", "no failed"), ("frobnicate", "a", "unknown operation"),
])
def test_requests_that_do_not_apply_are_refused_with_the_reason(op, target, message):
    sim = diamond()
    with pytest.raises(Refused, match=message):
        operator_event(sim.state, op, target, "eve", "why not", 1.0)


def test_automatic_steps_cannot_be_ticked_and_running_ones_cannot_be_skipped():
    sim = Sim(begin(checklist(phase("p", step("chk", K.CHECK), step("m")))))
    sim.settle()
    assert sim.state.steps["chk"].status is StepStatus.RUNNING
    with pytest.raises(Refused, match="passes or fails by itself"):
        operator_event(sim.state, "done", "chk", "eve", "", 1.0)
    with pytest.raises(Refused, match="wait for it to finish"):
        operator_event(sim.state, "skip", "chk", "eve", "x", 1.0)
    sim.finish("chk", ok=False, note="site degraded")
    assert states(sim) == {"chk": "failed", "m": "blocked"}


def test_actions_wait_for_confirmation_and_the_confirmation_starts_them():
    sim = Sim(begin(checklist(phase("p", step("go"), step("act", K.ACTION), step("after")))))
    sim.settle()
    sim.op("done", "go")
    assert states(sim)["act"] == "awaiting_confirmation" and decide(sim.state) == []
    sim.op("confirm", "act", who="frank", text="window open")
    act = sim.state.steps["act"]
    assert act.status is StepStatus.RUNNING and act.started_by == "frank"
    sim.finish("act")
    assert states(sim)["after"] == "running"


def test_maintenance_is_entered_before_the_phase_starts_held_across_phases_and_left_after():
    c = checklist(phase("fri", step("a")), phase("sat-am", step("b"), maintenance=True),
                  phase("sat-pm", step("c"), maintenance=True), phase("sun", step("d")))
    sim = Sim(begin(c))
    sim.settle()
    assert sim.mode == "supervised"
    sim.op("done", "a")
    kinds = [e.kind for e in sim.log]
    assert kinds.index(EventKind.MAINTENANCE_ENTERED) < max(i for i, e in enumerate(sim.log) if e.step == "b")
    assert sim.mode == "maintenance" and sim.state.maintenance.previous_mode == "supervised"
    sim.op("done", "b")
    assert sim.mode == "maintenance" and [e.kind for e in sim.log].count(EventKind.MAINTENANCE_ENTERED) == 1
    sim.op("done", "c")
    assert sim.mode == "supervised" and sim.state.maintenance is None
    sim.op("done", "d")
    assert not sim.state.open and sim.state.outcome == "finished"


def test_abort_leaves_maintenance_and_closes_the_run():
    sim = Sim(begin(checklist(phase("p", step("a"), maintenance=True))))
    sim.settle()
    assert sim.mode == "maintenance"
    sim.op("abort", who="gina", text="vendor did not show up")
    assert sim.state.outcome == "aborted" and sim.mode == "supervised" and sim.state.maintenance is None
    with pytest.raises(Refused, match="aborted"):
        operator_event(sim.state, "done", "a", "gina", "", 2.0)


def test_rollback_runs_the_completed_steps_ways_back_in_reverse_order():
    c = checklist(phase("p", step("stop", K.ACTION, rollback=ACTION_RB), step("move", rollback=MANUAL_RB),
                        step("check", K.CHECK), step("start")))
    sim = Sim(begin(c))
    sim.settle()
    sim.op("confirm", "stop")
    sim.tick(10)
    sim.finish("stop")
    sim.tick(10)
    sim.op("done", "move")
    sim.finish("check")
    sim.op("fail", "start", text="driver will not load")
    sim.op("rollback", "p", who="hank", text="give up for today")
    # check (no way back) first, then move (manual: waits for the operator), then stop (automatic)
    assert sim.state.steps["check"].status is StepStatus.ROLLED_BACK
    assert sim.state.steps["move"].status is StepStatus.ROLLING_BACK and decide(sim.state) == []
    sim.op("done", "move", text="board back in the old IPC")
    assert sim.state.steps["stop"].status is StepStatus.ROLLING_BACK
    sim.finish("stop")
    assert sim.state.rollback is None
    order = [e.step for e in sim.log if e.kind is EventKind.STEP_ROLLED_BACK]
    assert order == ["check", "move", "stop"]
    none = next(e for e in sim.log if e.kind is EventKind.STEP_ROLLED_BACK and e.step == "check")
    assert none.outcome == "none"
    assert [a.what for a in sim.state.steps["move"].history] == ["step", "rollback"]
    # the phase is rolled back: nothing of it starts again until an operator retries it
    assert states(sim)["start"] == "failed" and decide(sim.state) == []
    sim.op("retry", "p", text="second attempt")
    assert {k: v for k, v in states(sim).items()} == {"stop": "awaiting_confirmation", "move": "waiting",
                                                      "check": "waiting", "start": "waiting"}


def test_a_failed_rollback_stops_the_way_back_and_freezes_the_phase_until_the_operator_decides():
    c = checklist(phase("p", step("a", rollback=ACTION_RB), step("b", rollback=ACTION_RB), step("c")))
    sim = Sim(begin(c))
    sim.settle()
    sim.op("done", "a")
    sim.op("done", "b")
    sim.op("rollback", "p", text="abandon")
    c_run = sim.state.steps["c"]
    assert c_run.status is StepStatus.PENDING and c_run.history[-1].outcome == "abandoned", \
        "a manual step in progress is abandoned when its phase rolls back"
    sim.finish("b", ok=False, note="start refused")
    assert sim.state.rollback is None and sim.state.steps["b"].status is StepStatus.ROLLBACK_FAILED
    assert sim.state.steps["a"].status is StepStatus.DONE, "the way back stopped before a"
    assert states(sim)["c"] == "blocked" and decide(sim.state) == [], "nothing goes forward on a half-undone phase"
    sim.op("rollback", "p", text="try the way back again")  # b (failed before) first, then a
    sim.finish("b")
    sim.finish("a")
    assert [e.step for e in sim.log if e.kind is EventKind.STEP_ROLLED_BACK] == ["b", "b", "a"]
    assert {sim.state.steps[x].status for x in "ab"} == {StepStatus.ROLLED_BACK}


def test_rollback_is_refused_while_an_automatic_step_runs_or_a_later_phase_has_started():
    c = checklist(phase("p1", step("a", rollback=MANUAL_RB), step("chk", K.CHECK)), phase("p2", step("b"), step("c")))
    sim = Sim(begin(c))
    sim.settle()
    sim.op("done", "a")
    with pytest.raises(Refused, match="chk of phase p1 is running"):
        operator_event(sim.state, "rollback", "p1", "x", "y", 1.0)
    sim.finish("chk")
    with pytest.raises(Refused, match="later phases have started"):
        operator_event(sim.state, "rollback", "p1", "x", "y", 1.0)


def test_a_run_finishes_when_every_step_is_done_or_skipped():
    sim = Sim(begin(checklist(phase("p", step("a"), step("b")))))
    sim.settle()
    sim.op("done", "a")
    sim.op("skip", "b", text="not applicable")
    assert sim.state.outcome == "finished" and sim.log[-1].kind is EventKind.RUN_FINISHED


def test_interrupted_automatic_work_is_recorded_as_failed_after_a_restart():
    c = checklist(phase("p", step("chk", K.CHECK), step("m", after=())))
    sim = Sim(begin(c))
    sim.settle()
    events = interruption_events(sim.state, 99.0, "runner")
    assert [(e.step, e.outcome) for e in events] == [("chk", "failed")]
    assert "interrupted" in (events[0].note or "")
    for e in events:
        sim.emit(e)
    assert sim.state.steps["m"].status is StepStatus.RUNNING, "a manual step in progress stays the operator's"


def test_replaying_the_events_rebuilds_the_run_exactly():
    sim = diamond()
    sim.op("done", "a")
    sim.op("fail", "c", text="x")
    sim.op("retry", "c", text="y")
    sim.op("done", "c")
    runs, problems = replay(sim.log)
    assert problems == [] and runs["run-1"] == sim.state


def test_events_that_do_not_fit_are_refused_and_replay_reports_them():
    sim = diamond()
    bad = Event("run-1", EventKind.STEP_FINISHED, 1.0, "x", "d", outcome="done")
    with pytest.raises(InvalidEvent):
        sim.state.apply(bad)
    runs, problems = replay([*sim.log, bad, Event("ghost", EventKind.STEP_STARTED, 2.0, "x", "a")])
    assert runs["run-1"] == sim.state and len(problems) == 2


def test_run_state_needs_run_started_first():
    with pytest.raises(InvalidEvent):
        RunState.begin(Event("r", EventKind.STEP_STARTED, 0.0, "x", "a"))


def test_ancestors_include_earlier_phases_and_the_after_closure():
    c = diamond().state.checklist
    assert ancestors(c, "d") == {"a", "b", "c"}
    assert ancestors(c, "f") == {"a", "b", "c", "d"}
    assert ancestors(c, "a") == frozenset()


def test_decide_enters_maintenance_before_starting_anything():
    sim = Sim(begin(checklist(phase("p", step("a"), maintenance=True))))
    assert [c.kind for c in decide(sim.state)] == [CommandKind.ENTER_MAINTENANCE]
