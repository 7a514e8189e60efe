"""Property tests of the dependency and blocking rules: random checklists, random operator and step
outcomes, and invariants that must hold after every event (hypothesis)."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.checklists.machine import BAD, Readiness, ancestors, current_phase, operator_event, readiness
from controller.checklists.model import Checklist, PhaseDef, Refused, StepDef, StepStatus
from controller.checklists.model import StepKind as K
from controller.checklists.store import replay
from tests.checklists.factories import ACTION_RB, MANUAL_RB, Sim, begin

KINDS = [K.MANUAL, K.CHECK, K.ACTION, K.MANUAL]


@st.composite
def checklists(draw: st.DrawFn) -> Checklist:
    phases, earlier = [], []
    for pi in range(draw(st.integers(1, 3))):
        steps = []
        for si in range(draw(st.integers(1, 4))):
            sid = f"s{pi}{si}"
            deps = draw(st.one_of(st.none(), st.lists(st.sampled_from(earlier), unique=True, max_size=3)
                                  if earlier else st.just([])))
            after = tuple(deps) if deps is not None else ((steps[-1].id,) if steps else ())
            kind = draw(st.sampled_from(KINDS))
            rb = draw(st.sampled_from([None, MANUAL_RB, ACTION_RB]))
            steps.append(StepDef(sid, sid, kind, "op", float(draw(st.integers(1, 100))), after, None, rb,
                                 kind is K.ACTION, 30.0))
            earlier.append(sid)
        phases.append(PhaseDef(f"p{pi}", f"p{pi}", tuple(steps), None, draw(st.booleans())))
    return Checklist("prop", "prop", tuple(phases))


def choices(sim: Sim) -> list[tuple[str, str]]:
    """Every operator request or step outcome that makes sense now."""
    s, out = sim.state, []
    for step in s.checklist.steps:
        sr = s.steps[step.id]
        if sr.status is StepStatus.RUNNING:
            out += [("finish-ok", step.id), ("finish-fail", step.id)] if step.kind.automatic else [
                ("done", step.id), ("fail", step.id), ("skip", step.id)]
        elif sr.status is StepStatus.ROLLING_BACK:
            out += [("finish-ok", step.id), ("finish-fail", step.id)] if step.rollback and \
                step.rollback.kind.automatic else [("done", step.id), ("fail", step.id)]
        elif sr.status in (StepStatus.FAILED, StepStatus.ROLLED_BACK, StepStatus.ROLLBACK_FAILED):
            out += [("retry", step.id), ("skip", step.id)]
        elif sr.status is StepStatus.PENDING:
            state = readiness(s, step)[0]
            out += [("confirm", step.id)] if state is Readiness.AWAITING_CONFIRMATION else [("skip", step.id)]
    out += [("rollback", p.id) for p in s.checklist.phases]
    return out


def check_invariants(sim: Sim) -> None:
    s = sim.state
    for step in s.checklist.steps:
        sr = s.steps[step.id]
        anc = ancestors(s.checklist, step.id)
        if sr.status is StepStatus.RUNNING:
            assert all(s.steps[a].status.complete for a in anc), f"{step.id} runs before its dependencies"
        if sr.status is StepStatus.PENDING:
            state, blockers = readiness(s, step)
            bad = {a for a in anc if s.steps[a].status in BAD}
            if bad:
                assert state is Readiness.BLOCKED and bad <= set(blockers), (step.id, bad, blockers)
            if state is Readiness.BLOCKED:
                assert blockers and all(s.steps[b].status in BAD or (s.rollback and b in s.rollback.queue)
                                        for b in blockers)
            if state is Readiness.READY:
                assert not s.open or s.rollback is not None, f"{step.id} ready but not started after settle"
    if s.open:  # never stuck: something runs, or an operator has something to do
        live = any(sr.status in (StepStatus.RUNNING, StepStatus.ROLLING_BACK, *BAD) for sr in s.steps.values()) or any(
            readiness(s, x)[0] is Readiness.AWAITING_CONFIRMATION for x in s.checklist.steps
            if s.steps[x.id].status is StepStatus.PENDING)
        assert live, "the run waits for nothing anybody can do"
        cur = current_phase(s)
        if s.rollback is None:  # a way back holds the mode it found: undoing is site work too
            assert (sim.mode == "maintenance") == bool(cur and cur.maintenance), "maintenance follows the phase"
        else:
            assert (sim.mode == "maintenance") == (s.maintenance is not None), "the runner's mode is the run's"
    else:
        assert all(sr.status.complete for sr in s.steps.values()) or s.outcome == "aborted"
        assert sim.mode == "supervised"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=checklists(), picks=st.lists(st.integers(0, 10_000), max_size=60), abort=st.booleans())
def test_random_runs_keep_the_dependency_blocking_and_liveness_rules(c, picks, abort):
    sim = Sim(begin(c))
    sim.settle()
    check_invariants(sim)
    for n in picks:
        if not sim.state.open:
            break
        options = choices(sim)
        op, target = options[n % len(options)]
        sim.tick(1 + n % 7)
        try:
            if op.startswith("finish"):
                sim.finish(target, ok=op == "finish-ok")
            else:
                sim.op(op, target, text="property test")
        except Refused:
            continue  # refusals change nothing
        check_invariants(sim)
    if abort and sim.state.open:
        with contextlib.suppress(Refused):
            sim.op("abort", text="end of the example")
        check_invariants(sim)
    runs, problems = replay(sim.log)
    assert problems == [] and runs[sim.state.id] == sim.state, "the journal rebuilds the run exactly"


@settings(max_examples=100, deadline=None)
@given(c=checklists())
def test_completing_every_step_in_order_finishes_the_run(c):
    sim = Sim(begin(c))
    sim.settle()
    for _ in range(100):
        if not sim.state.open:
            break
        for step in sim.state.checklist.steps:
            sr = sim.state.steps[step.id]
            if sr.status is StepStatus.RUNNING:
                sim.finish(step.id) if step.kind.automatic else sim.op("done", step.id)
                break
            if sr.status is StepStatus.PENDING and readiness(sim.state, step)[0] is Readiness.AWAITING_CONFIRMATION:
                sim.op("confirm", step.id)
                break
    assert sim.state.outcome == "finished" and sim.mode == "supervised"
    assert all(sim.state.steps[x.id].status is StepStatus.DONE for x in c.steps)


@settings(max_examples=100, deadline=None)
@given(c=checklists(), data=st.data())
def test_a_failed_step_blocks_exactly_the_steps_that_wait_on_it(c, data):
    sim = Sim(begin(c))
    sim.settle()
    # run until some step is running, then fail it
    for _ in range(50):
        running = [x for x in c.steps if sim.state.steps[x.id].status is StepStatus.RUNNING]
        awaiting = [x for x in c.steps if sim.state.steps[x.id].status is StepStatus.PENDING
                    and readiness(sim.state, x)[0] is Readiness.AWAITING_CONFIRMATION]
        if running:
            break
        sim.op("confirm", awaiting[0].id)
    victim = data.draw(st.sampled_from(running))
    sim.finish(victim.id, ok=False) if victim.kind.automatic else sim.op("fail", victim.id, text="broke")
    for step in c.steps:
        if sim.state.steps[step.id].status is StepStatus.PENDING:
            waits = victim.id in ancestors(c, step.id)
            assert (readiness(sim.state, step)[0] is Readiness.BLOCKED) == waits
    try:
        operator_event(sim.state, "retry", victim.id, "x", "fixed", sim.now)
    except Refused as exc:  # pragma: no cover - retry of a failed step is always allowed
        raise AssertionError(exc) from exc
