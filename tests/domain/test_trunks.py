"""SIP trunks in the pure core: a trunk is one more source of C (X + 2Y <= C per host), a SIP-only host
has no board to lose, and with no live data admission follows the per-kind policy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ccfo.domain.capacity import (
    CallKind,
    HostLoad,
    Scenario,
    UnknownPolicy,
    admit,
    admit_unknown,
    host_channels,
    live_channels,
    scenario_channels,
    site_capacity,
)
from ccfo.domain.health import DriverState, HostHealth, ServiceState, faults, snapshot
from ccfo.domain.site import Board, CapacityPolicy, ServiceName, SipDriver, SipTrunk, Site
from tests.domain.factories import example_site, normal_state

POLICY = CapacityPolicy()


def sip_site() -> Site:
    """The example site with ipc-b on two SIP trunks (20 + 10 channels) instead of its E1 span."""
    site = example_site()
    b = replace(site.host("ipc-b"), board=Board(ServiceName("dahdi"), ()),
                trunks=(SipTrunk("carrier-a", 20), SipTrunk("carrier-b", 10, SipDriver.SIP)))
    return replace(site, hosts=(site.host("ipc-a"), b))


def test_trunks_are_a_source_of_c_like_spans() -> None:
    b = sip_site().host("ipc-b")
    assert b.channels == 30 and b.board.channels == 0
    assert host_channels(b) == 30
    assert host_channels(b, down_trunks=["carrier-a"]) == 10
    assert live_channels([30], [20, 10]) == 60


def test_scenarios_and_site_capacity_count_trunk_channels() -> None:
    site = sip_site()
    normal = scenario_channels(site, Scenario.NORMAL, {})
    assert normal == {"ipc-a": 60, "ipc-b": 30}
    assert scenario_channels(site, Scenario.PRIMARY_DOWN, {}, {"ipc-b": ["carrier-b"]}) == {"ipc-a": 0, "ipc-b": 20}
    cap = site_capacity(scenario_channels(site, Scenario.PRIMARY_DOWN, {}), 15, POLICY)
    assert cap.max_ivr_calls == 0 and cap.max_agent_calls == 15  # 2 * 15 = 30: the trunks carry them all


def test_a_trunk_down_lowers_c_and_a_transfer_that_no_longer_fits_is_refused() -> None:
    load = HostLoad(ivr_calls=8, agent_calls=5)  # X + 2Y = 18
    assert admit(live_channels((), [20, 10]), load, CallKind.AGENT, POLICY).admit  # 19 <= 30
    assert admit(live_channels((), [20]), load, CallKind.AGENT, POLICY).admit  # carrier-b down: 19 <= C = 20
    refused = admit(live_channels((), [10]), load, CallKind.AGENT, POLICY)  # carrier-a down: C = 10
    assert not refused.admit and refused.reason == "no room: X + 2Y = 8 + 2*5 = 18, +1 would exceed C = 10"


@pytest.mark.parametrize("kind", list(CallKind))
def test_with_no_live_data_each_kind_follows_its_policy(kind: CallKind) -> None:
    policy = UnknownPolicy(ivr=True, agent=False, fax=True)
    answer = admit_unknown(kind, policy, "AMI down (connection refused)")
    assert answer.admit is (kind is not CallKind.AGENT)
    assert answer.reason.startswith("AMI down (connection refused): live calls unknown; ")
    assert "internal error" not in answer.reason


def test_a_sip_only_host_has_no_board_fault_when_chan_dahdi_reports_no_driver() -> None:
    """With no spans configured, "no DAHDI driver" says nothing about the host's telephony."""
    site = sip_site()
    a = HostHealth("ipc-a", 100.0, True, DriverState.UP, (), {n: ServiceState.ACTIVE for n in ("cti", "ivr", "kcxp",
                                                                                                  "kcbp")})
    b = HostHealth("ipc-b", 100.0, True, DriverState.DOWN, (), {"kcxp": ServiceState.ACTIVE,
                                                                "kcbp": ServiceState.ACTIVE})
    snap = snapshot(site, {"ipc-a": a, "ipc-b": b}, 100.5, heartbeat_s=1.0, missed=3)
    assert {f.host for f in faults(site, normal_state(), snap)} <= {"ipc-a"}
    dahdi = example_site()
    snap = snapshot(dahdi, {"ipc-a": a, "ipc-b": b}, 100.5, heartbeat_s=1.0, missed=3)
    assert any(f.kind.value == "board_down" and f.host == "ipc-b" for f in faults(dahdi, normal_state(), snap))
