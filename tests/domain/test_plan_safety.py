"""Safety of every plan the builders can produce: executed step by step on a model world, CTI/IVR never
run on two hosts at once, and each plan ends in the layout its recorded state says.

The model world is deliberately simple (a set of running services per host); the point is the ordering
guarantee, checked across every state the site can reach by the documented rules and operator actions.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfo.domain.plan import Plan, PlanRefused, StepKind, build_failback, build_failover, build_switchover
from ccfo.domain.rules import evaluate
from ccfo.domain.site import Duty
from ccfo.domain.state import Mode, SiteState
from tests.domain.factories import (
    NOW,
    active,
    board_down,
    db_down,
    documented_policy,
    example_site,
    span_alarm,
    svc_down,
    unreachable,
)

SITE = example_site()
CRITICAL = {"cti", "ivr"}


def world_of(state: SiteState) -> dict[str, set[str]]:
    return {h.id: set(h.layout(state.host(h.id).duty)) for h in SITE.hosts}


def run(plan: Plan, state: SiteState, world: dict[str, set[str]], stuck: str | None = None) -> SiteState:
    """Execute on the model. `stuck`: a host whose agent is gone (its stops fail; the fence powers it off)."""
    for step in plan.steps:
        if step.kind is StepKind.STOP and step.host != stuck:
            world[step.host].discard(step.service)
        elif step.kind is StepKind.START:
            world[step.host].add(step.service)
        elif step.kind is StepKind.FENCE and world[step.host] & CRITICAL:
            world[step.host].clear()  # PDU power-off
        elif step.kind is StepKind.SET_STATE and step.state:
            for h, d in step.state.get("duties", {}).items():
                state = state.with_host(h, duty=Duty(d))
            for h, iso in step.state.get("board_isolated", {}).items():
                state = state.with_host(h, board_isolated=iso)
        running = [h for h, svcs in world.items() if svcs & CRITICAL]
        assert len(running) <= 1, f"split brain after {step.describe()}: {world}"
    return state


def reachable_states() -> list[SiteState]:
    base = SiteState.normal(SITE, Mode.SUPERVISED)
    out = []
    for da, db in itertools.product(Duty, Duty):
        if da.active and db.active:
            continue
        for ia, ib in itertools.product((False, True), repeat=2):
            out.append(base.with_host("ipc-a", duty=da, board_isolated=ia).with_host("ipc-b", duty=db,
                                                                                        board_isolated=ib))
    return out


def operator_plans(state: SiteState) -> list[Plan]:
    plans = []
    builders = [lambda: build_failback(SITE, state, 30, "t")]
    for host in ("ipc-a", "ipc-b"):
        builders += [lambda h=host: build_failover(SITE, state, h, "t"),
                     lambda h=host: build_switchover(SITE, state, h, 30, "t")]
    for build in builders:
        with contextlib.suppress(PlanRefused):
            plans.append(build())
    return plans


FAULTS = [svc_down("ipc-a", "cti"), svc_down("ipc-b", "ivr"), span_alarm("ipc-a", 1), board_down("ipc-b"),
          unreachable("ipc-a"), unreachable("ipc-b"), db_down("shenzhen"), svc_down("ipc-b", "kcxp")]


@pytest.mark.parametrize("state", reachable_states(), ids=lambda s: "-".join(
    f"{h}:{hs.duty.value}{'/iso' if hs.board_isolated else ''}" for h, hs in s.hosts.items()))
def test_every_plan_from_every_state_is_split_brain_free(state):
    plans = operator_plans(state)
    for fault in FAULTS:
        d = evaluate(SITE, state, active(fault), documented_policy(), NOW)
        if d.plan:
            plans.append(d.plan)
    for plan in plans:
        for stuck in (None, "ipc-a", "ipc-b"):
            world = world_of(state)
            end = run(plan, state, world, stuck)
            if stuck is None:
                expected = world_of(end)
                assert world == expected, f"{plan.title}: world {world} but state says {expected}"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["fault", "failover", "switchover", "failback"]), min_size=1, max_size=8),
       st.lists(st.integers(0, len(FAULTS) - 1), min_size=8, max_size=8))
def test_random_sequences_of_decisions_keep_one_active_host(ops, picks):
    state = SiteState.normal(SITE, Mode.AUTOMATIC)
    world = world_of(state)
    for op, pick in zip(ops, picks, strict=False):
        if op == "fault":
            d = evaluate(SITE, state, active(FAULTS[pick]), documented_policy(hold_down_s=0), NOW)
            plan = d.plan
        else:
            plans = operator_plans(state)
            plan = plans[pick % len(plans)] if plans else None
        if plan is None:
            continue
        state = run(plan, state, world)
        assert sum(1 for hs in state.hosts.values() if hs.duty.active) <= 1
