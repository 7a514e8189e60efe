"""Planned vs. real durations, the critical path and the projected finish, with an injected clock; a
rehearsal's real durations as the next run's plan."""

from __future__ import annotations

import pytest

from controller.checklists.model import PlannedStart, phase_offsets
from controller.checklists.model import StepKind as K
from controller.checklists.schedule import planned_from_rehearsal, schedule
from tests.checklists.factories import Sim, begin, checklist, phase, step

T0 = 1_000_000.0


def diamond(**kw):
    """a(10) -> b(100) | c(30) -> d(20); then phase two: e(50)."""
    return checklist(phase("one", step("a", planned=10), step("b", planned=100), step("c", after=("a",), planned=30),
                           step("d", after=("b", "c"), planned=20)),
                     phase("two", step("e", planned=50), **kw))


def test_the_baseline_follows_the_longest_chain_and_the_phase_barrier():
    run = begin(diamond(), at=T0)
    sch = schedule(run, now=T0)
    assert sch.planned_finish == T0 + 10 + 100 + 20 + 50
    assert sch.steps["c"].planned_start == T0 + 10 and sch.steps["d"].planned_start == T0 + 110
    assert sch.critical_path == ("a", "b", "d", "e")
    assert sch.projected_finish == sch.planned_finish and sch.slip_s == 0


def test_real_durations_replace_the_plan_and_shift_the_projection():
    sim = Sim(begin(diamond(), at=T0), now=T0)
    sim.settle()
    sim.tick(25)  # a took 25 s instead of 10
    sim.op("done", "a")
    sim.tick(40)  # c done after 40 s (planned 30); b still running after 40 s of its 100
    sim.op("done", "c")
    sch = schedule(sim.state, now=sim.now)
    a = sch.steps["a"]
    assert (a.real_s, a.deviation_s, a.projected) == (25.0, 15.0, False)
    assert sch.steps["b"].end == T0 + 25 + 100, "a running step is projected to its planned end"
    assert sch.projected_finish == T0 + 25 + 100 + 20 + 50
    assert sch.slip_s == 15.0 and sch.critical_path == ("a", "b", "d", "e")
    sim.tick(200)  # b overruns: projected to end no earlier than now
    sch = schedule(sim.state, now=sim.now)
    assert sch.steps["b"].end == sim.now and sch.projected_finish == sim.now + 20 + 50


def test_failed_and_waiting_steps_are_projected_from_now():
    sim = Sim(begin(diamond(), at=T0), now=T0)
    sim.settle()
    sim.tick(10)
    sim.op("fail", "a", text="broken")
    sim.tick(500)
    sch = schedule(sim.state, now=sim.now)
    assert sch.steps["a"].start == sim.now, "a failed step is assumed redone from now"
    assert sch.projected_finish == sim.now + 10 + 100 + 20 + 50


def test_skipped_steps_take_no_time_and_leave_the_critical_path():
    sim = Sim(begin(diamond(), at=T0), now=T0)
    sim.settle()
    sim.op("done", "a")
    sim.op("skip", "b", text="not needed")
    sch = schedule(sim.state, now=sim.now)
    assert sch.projected_finish == T0 + 30 + 20 + 50
    assert sch.critical_path == ("a", "c", "d", "e")


def test_a_real_run_waits_for_the_planned_start_of_a_phase_and_a_rehearsal_does_not():
    c = checklist(phase("fri", step("a", planned=3600), start=PlannedStart(18 * 60, weekday=4)),
                  phase("sat", step("b", planned=600), start=PlannedStart(8 * 60, weekday=5)))
    assert phase_offsets(c) == {"fri": 0.0, "sat": 14 * 3600.0}
    real = schedule(begin(c, at=T0), now=T0)
    assert real.steps["b"].planned_start == T0 + 14 * 3600 and real.planned_finish == T0 + 14 * 3600 + 600
    assert real.critical_path == ("b",), "the gate, not step a, sets when b starts"
    rehearsal = schedule(begin(c, at=T0, rehearsal=True), now=T0)
    assert rehearsal.planned_finish == T0 + 3600 + 600


@pytest.mark.parametrize(("starts", "expected"), [
    ([PlannedStart(600, weekday=4), PlannedStart(480, weekday=5), PlannedStart(480, weekday=0)],
     [0.0, 22 * 3600.0, (22 + 48) * 3600.0]),
    ([PlannedStart(600, weekday=2), PlannedStart(540, weekday=2)], [0.0, (7 * 24 - 1) * 3600.0]),
    ([PlannedStart(600, day=1), PlannedStart(600, day=8)], [0.0, 7 * 86400.0]),
])
def test_phase_offsets(starts, expected):
    c = checklist(*[phase(f"p{i}", step(f"s{i}"), start=s) for i, s in enumerate(starts)])
    assert list(phase_offsets(c).values()) == expected


def test_a_rehearsals_real_durations_are_the_next_runs_plan_and_projection():
    c = diamond()
    reh = Sim(begin(c, at=T0, rehearsal=True, run_id="r1"), now=T0)
    reh.settle()
    for sid, took in (("a", 12), ("b", 300), ("c", 40), ("d", 25), ("e", 61)):
        reh.tick(took if sid != "c" else 0)
        reh.op("done", sid)
    # c ran alongside b: it started when a ended and ended 300 s later with b
    assert not reh.state.open
    planned = planned_from_rehearsal(c, reh.state)
    assert planned["a"] == 12 and planned["b"] == 300 and planned["d"] == 25 and planned["e"] == 61
    assert planned["c"] == 300.0
    t1 = T0 + 10_000
    run = begin(c, at=t1, planned=planned, planned_from="r1", run_id="r2")
    sch = schedule(run, now=t1)
    assert sch.planned_finish == t1 + 12 + 300 + 25 + 61
    sim = Sim(run, now=t1)
    sim.settle()
    sim.tick(12)
    sim.op("done", "a")
    sim.tick(100)
    assert schedule(sim.state, now=sim.now).projected_finish == t1 + 12 + 300 + 25 + 61, "on the rehearsal's pace"


def test_a_rehearsal_without_a_finished_step_keeps_the_checklists_plan():
    c = diamond()
    reh = Sim(begin(c, rehearsal=True, run_id="r1"))
    reh.settle()
    reh.op("fail", "a", text="x")
    assert planned_from_rehearsal(c, reh.state) == {s.id: s.planned_s for s in c.steps}


def test_phase_timings_sum_their_steps():
    sim = Sim(begin(checklist(phase("p", step("a", planned=60), step("chk", K.CHECK, planned=30))), at=T0), now=T0)
    sim.settle()
    sim.tick(70)
    sim.op("done", "a")
    sim.tick(20)
    sim.finish("chk")
    sch = schedule(sim.state, now=sim.now)
    p = sch.phases["p"]
    assert (p.planned_start, p.planned_end, p.real_s, p.projected) == (T0, T0 + 90, 90.0, False)
