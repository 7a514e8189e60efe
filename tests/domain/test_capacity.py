"""The X+2Y model: the source plan's figures, admission at the boundary, and the invariant under any
admit sequence (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfo.domain.capacity import (
    CallKind,
    Direction,
    HostLoad,
    Scenario,
    admit,
    max_ivr_calls,
    scenario_channels,
    site_capacity,
)
from ccfo.domain.site import CapacityPolicy, DirectionLimits
from ccfo.domain.state import SiteState
from tests.domain.factories import example_site, site_after_failover, standby_out

POLICY = CapacityPolicy()
SITE = example_site()


def normal(agent_calls: int, scenario: Scenario = Scenario.NORMAL, down: dict | None = None):
    return site_capacity(scenario_channels(SITE, scenario, down or {}), agent_calls, POLICY, scenario.value)


@pytest.mark.parametrize(("agents", "ivr"), [(0, 90), (10, 70), (30, 30), (45, 0)])
def test_source_plan_figures(agents, ivr):
    assert normal(agents).max_ivr_calls == ivr


def test_forty_six_agent_calls_do_not_fit():
    cap = normal(46)
    assert cap.max_ivr_calls is None and cap.max_agent_calls == 45


def test_primary_down_leaves_the_standby_thirty():
    cap = normal(10, Scenario.PRIMARY_DOWN)
    assert (cap.channels, cap.max_ivr_calls, cap.max_agent_calls) == (30, 10, 15)


def test_standby_down_leaves_the_primary_sixty():
    cap = normal(10, Scenario.STANDBY_DOWN)
    assert (cap.channels, cap.max_ivr_calls) == (60, 40)


def test_span_down_removes_its_channels():
    cap = normal(0, down={"ipc-a": [2]})
    assert cap.hosts["ipc-a"].channels == 30 and cap.max_ivr_calls == 60


def test_agent_calls_cannot_be_split_across_boards():
    # 31 agent calls need 62 channels: ipc-a holds 30 agent calls, ipc-b the 31st.
    cap = normal(31)
    assert cap.placement == {"ipc-a": 30, "ipc-b": 1}
    assert cap.max_ivr_calls == 28


def test_old_single_ipc_figures():
    # Before the upgrade: one 60-channel IPC; with 10 agents talking, 40 IVR callers fit.
    assert max_ivr_calls(60, 10, POLICY) == 40
    assert max_ivr_calls(60, 30, POLICY) == 0
    assert max_ivr_calls(60, 31, POLICY) is None


def test_state_channels_follow_the_rules():
    assert SiteState.normal(SITE).serving_channels(SITE) == {"ipc-a": 60, "ipc-b": 30}
    assert site_after_failover().serving_channels(SITE) == {"ipc-a": 0, "ipc-b": 30}  # after rule 2
    assert standby_out().serving_channels(SITE) == {"ipc-a": 60, "ipc-b": 0}  # after rule 3
    isolated = SiteState.normal(SITE).with_host("ipc-a", board_isolated=True)
    assert isolated.serving_channels(SITE) == {"ipc-a": 0, "ipc-b": 30}  # after rule 1


# --- admission at the exact boundary (C = 30) ---------------------------------------------------

@pytest.mark.parametrize(("ivr", "agents", "kind", "ok"), [
    (28, 1, CallKind.AGENT, False),  # 28 + 2 = 30: a transfer would make 31
    (27, 1, CallKind.AGENT, True),  # 27 + 2 = 29: the transfer makes 30
    (26, 2, CallKind.AGENT, False),  # 26 + 4 = 30: full
    (29, 0, CallKind.IVR, True),
    (30, 0, CallKind.IVR, False),
    (0, 15, CallKind.IVR, False),
])
def test_admission_boundary(ivr, agents, kind, ok):
    assert admit(30, HostLoad(ivr, agents), kind, POLICY).admit is ok


def test_reserve_is_for_transfers_only():
    policy = CapacityPolicy(reserve_for_transfers=4)
    load = HostLoad(ivr_calls=26)
    assert not admit(30, load, CallKind.IVR, policy).admit
    assert admit(30, load, CallKind.AGENT, policy).admit
    assert "C - reserve" in admit(30, load, CallKind.IVR, policy).reason


def test_fax_has_its_own_pool():
    assert admit(30, HostLoad(30, 0, fax_calls=3), CallKind.FAX, POLICY, fax_channels=4).admit
    assert not admit(30, HostLoad(0, 0, fax_calls=4), CallKind.FAX, POLICY, fax_channels=4).admit


def test_direction_limits():
    limits = DirectionLimits(inbound_max=20, outbound_max=10)
    full_in = HostLoad(ivr_calls=20, inbound_channels=20)
    assert not admit(60, full_in, CallKind.IVR, POLICY, direction=Direction.INBOUND, limits=limits).admit
    assert admit(60, full_in, CallKind.IVR, POLICY, direction=Direction.OUTBOUND, limits=limits).admit


# --- properties -----------------------------------------------------------------------------------

ops = st.lists(st.sampled_from(["ivr", "transfer", "agent_end", "ivr_end"]), max_size=300)


@settings(max_examples=300, deadline=None)
@given(channels=st.integers(1, 90), reserve=st.integers(0, 10), sequence=ops)
def test_no_admit_sequence_can_exceed_the_host(channels, reserve, sequence):
    policy = CapacityPolicy(reserve_for_transfers=min(reserve, channels - 1))
    x = y = 0
    for op in sequence:
        if op == "ivr" and admit(channels, HostLoad(x, y), CallKind.IVR, policy).admit:
            x += 1
        elif op == "transfer" and x > 0 and admit(channels, HostLoad(x, y), CallKind.AGENT, policy).admit:
            x, y = x - 1, y + 1
        elif op == "agent_end" and y > 0:
            y -= 1
        elif op == "ivr_end" and x > 0:
            x -= 1
        assert x + 2 * y <= channels
        assert x <= max(0, channels - policy.reserve_for_transfers)


@settings(max_examples=200, deadline=None)
@given(c1=st.integers(0, 90), c2=st.integers(0, 90), agents=st.integers(0, 100))
def test_site_best_fit_matches_brute_force(c1, c2, agents):
    cap = site_capacity({"a": c1, "b": c2}, agents, POLICY)
    best = None
    for ya in range(agents + 1):
        fa, fb = max_ivr_calls(c1, ya, POLICY), max_ivr_calls(c2, agents - ya, POLICY)
        if fa is not None and fb is not None:
            best = max(best or 0, fa + fb)
    assert cap.max_ivr_calls == best
    if best is not None:
        assert sum(cap.placement.values()) == agents
        for name, c in (("a", c1), ("b", c2)):
            assert cap.placement[name] * 2 <= c
