"""The executor on an in-memory world: journaling, ordering, failure, fencing, confirmation, resume."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from ccfo.domain.checks import Check, CheckKind
from ccfo.domain.health import ServiceState
from ccfo.domain.plan import Action, Plan, Step, StepKind, build_failover, build_isolate_board, build_switchover
from ccfo.domain.site import Duty
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld
from tests.domain.factories import example_site, normal_state
from tests.support import async_wait_until

SITE = example_site()


@pytest.fixture
def parts(tmp_path: Path):
    journal, store = Journal(tmp_path / "j.sqlite"), Store(tmp_path / "s.sqlite")
    yield journal, store
    journal.close()
    store.close()


def make(parts, world: FakeWorld) -> Executor:
    journal, store = parts
    return Executor(world, world, world, journal, store, host_ids=SITE.host_ids)


async def run(ex: Executor, plan, state=None):
    state = state or normal_state()
    rec = ex.store.add_plan(plan, status=PlanStatus.RUNNING, source="test", requested_by="t", reason="r", now=1.0)
    states = []

    async def on_state(s):
        states.append(s)
    outcome = await ex.run(rec, state, on_state)
    return rec, outcome, states


@pytest.mark.asyncio
async def test_failover_runs_in_order_journals_every_step_and_swaps_roles(parts):
    world = FakeWorld(SITE, normal_state())
    ex = make(parts, world)
    plan = build_failover(SITE, normal_state(), "ipc-b", "test")
    rec, outcome, _ = await run(ex, plan)
    assert outcome.status is PlanStatus.FINISHED, outcome.error
    assert world.critical_running() == ["ipc-b"]
    assert outcome.state.host("ipc-b").duty is Duty.TAKEOVER and outcome.state.host("ipc-a").duty is Duty.OUT
    entries = parts[0].query(plan_id=rec.id, newest_first=False, limit=None)
    kinds = [(e.kind, e.step) for e in entries]
    for i in range(len(plan.steps)):
        assert kinds.index(("step_started", i)) < kinds.index(("step_finished", i))
    assert all(e.duration_s is not None for e in entries if e.kind == "step_finished")
    assert ex.store.get_plan(rec.id).status is PlanStatus.FINISHED
    assert world.routes and all(r[1] == ("ipc-b",) for r in world.routes)


@pytest.mark.asyncio
async def test_split_brain_never_happens_even_if_the_primary_ignores_stop(parts):
    world = FakeWorld(SITE, normal_state())
    world.hosts["ipc-a"].ignore_stop = {"cti", "ivr"}  # hung processes
    ex = make(parts, world)
    seen: list[list[str]] = []

    async def progress(rec, index, status):
        seen.append(world.critical_running())
    ex.progress = progress
    plan = build_failover(SITE, normal_state(), "ipc-b", "t")
    plan = replace(plan, steps=tuple(replace(s, timeout_s=0.2) if s.best_effort else s for s in plan.steps))
    _, outcome, _ = await run(ex, plan)
    assert outcome.status is PlanStatus.FINISHED
    assert world.power_offs == ["ipc-a"], "the fence powered the primary off"
    assert all(len(r) <= 1 for r in seen), seen


@pytest.mark.asyncio
async def test_failed_step_stops_the_plan_and_says_what_was_done(parts):
    world = FakeWorld(SITE, normal_state())
    world.hosts["ipc-b"].fail_actions = {"start:cti"}
    ex = make(parts, world)
    plan = build_failover(SITE, normal_state(), "ipc-b", "t")
    rec, outcome, _ = await run(ex, plan)
    assert outcome.status is PlanStatus.FAILED
    assert "start cti on ipc-b" in outcome.error
    idx = next(i for i, s in enumerate(plan.steps) if s.kind.value == "start" and s.service == "cti")
    stored = ex.store.get_plan(rec.id)
    assert stored.status is PlanStatus.FAILED and stored.next_step == idx + 1
    assert world.hosts["ipc-b"].services["ivr"] is ServiceState.INACTIVE, "nothing after the failed step ran"
    assert parts[0].count(kinds="plan_failed", plan_id=rec.id) == 1


@pytest.mark.asyncio
async def test_unreachable_primary_is_fenced_at_the_pdu(parts):
    world = FakeWorld(SITE, normal_state())
    world.hosts["ipc-a"].reachable = False
    ex = make(parts, world)
    _, outcome, _ = await run(ex, build_failover(SITE, normal_state(), "ipc-b", "t", source_reachable=False))
    assert outcome.status is PlanStatus.FINISHED
    assert world.power_offs == ["ipc-a"]


@pytest.mark.asyncio
async def test_without_a_pdu_the_fence_waits_for_an_operator(parts):
    world = FakeWorld(SITE, normal_state(), pdu=False)
    world.hosts["ipc-a"].reachable = False
    ex = make(parts, world)
    task = asyncio.create_task(run(ex, build_failover(SITE, normal_state(), "ipc-b", "t", source_reachable=False)))
    waiting = await async_wait_until(ex.waiting_confirmation, timeout=5)
    assert world.hosts["ipc-b"].services["cti"] is ServiceState.INACTIVE, "nothing starts before the confirmation"
    plan_id, host = waiting[0]
    world.hosts["ipc-a"].powered = False  # the operator switched it off by hand
    assert host == "ipc-a" and ex.confirm_off(plan_id, host)
    _, outcome, _ = await asyncio.wait_for(task, 10)
    assert outcome.status is PlanStatus.FINISHED and world.critical_running() == ["ipc-b"]


@pytest.mark.asyncio
async def test_resume_continues_from_the_stored_step_without_rerunning_actions(parts):
    world = FakeWorld(SITE, normal_state())
    ex = make(parts, world)
    plan = build_isolate_board(SITE, normal_state(), "ipc-a", "t")
    rec = ex.store.add_plan(plan, status=PlanStatus.RUNNING, source="t", requested_by="t", reason="r", now=1.0)
    # simulate a crash after step 0 ran at the agent but before next_step advanced
    await world.action("ipc-a", f"{rec.id}-0-0", "isolate_board")
    ran_before = list(world.ran)

    async def on_state(s):
        pass
    outcome = await make(parts, world).run(rec, normal_state(), on_state)
    assert outcome.status is PlanStatus.FINISHED
    assert world.ran == ran_before, "the agent action with the same id was not run again"
    assert outcome.state.host("ipc-a").board_isolated


@pytest.mark.asyncio
async def test_switchover_waits_for_calls_to_drain(parts):
    world = FakeWorld(SITE, normal_state())
    world.hosts["ipc-a"].calls = 3
    ex = make(parts, world)
    task = asyncio.create_task(run(ex, build_switchover(SITE, normal_state(), "ipc-b", 30, "t")))
    await async_wait_until(lambda: parts[0].count(kinds="step_started") >= 1, timeout=5)  # draining
    assert world.hosts["ipc-a"].services["cti"] is ServiceState.ACTIVE, "no call is cut before the drain"
    assert not world.routes, "new calls stay on the old host until the new one is verified serving"
    world.hosts["ipc-a"].calls = 0
    _, outcome, _ = await asyncio.wait_for(task, 10)
    assert outcome.status is PlanStatus.FINISHED
    assert world.critical_running() == ["ipc-b"]
    assert world.hosts["ipc-a"].services["kcxp"] is ServiceState.ACTIVE, "the old primary stays a standby"


@pytest.mark.asyncio
async def test_drain_timeout_proceeds_and_says_so(parts):
    world = FakeWorld(SITE, normal_state())
    world.hosts["ipc-a"].calls = 2
    ex = make(parts, world)
    rec, outcome, _ = await run(ex, build_switchover(SITE, normal_state(), "ipc-b", 0.3, "t"))
    assert outcome.status is PlanStatus.FINISHED
    drained = [e for e in parts[0].query(plan_id=rec.id, kinds="step_finished", limit=None)
               if "drain timeout" in e.data.get("output", "")]
    assert drained and "2 call(s) still up" in drained[0].data["output"]


@pytest.mark.asyncio
async def test_a_verify_step_with_an_unknown_check_kind_fails(parts):
    """Regression: `_checks_hold` skipped a check kind it did not know, so such a verify step passed."""
    world = FakeWorld(SITE, normal_state())
    ex = make(parts, world)
    step = Step(StepKind.VERIFY, "ipc-a", checks=(Check(cast(CheckKind, "bogus"), "x"),), timeout_s=0.1)
    _, outcome, _ = await run(ex, Plan(Action.NONE, "verify nonsense", (step,)))
    assert outcome.status is PlanStatus.FAILED and "bogus:x not reached on ipc-a" in (outcome.error or "")
