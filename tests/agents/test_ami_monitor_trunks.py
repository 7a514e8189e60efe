"""The agent's AmiMonitor (real panoramisk over TCP) against a lab AMI server with SIP trunks: C from the
trunks that are up, trunk calls counted in X and Y, a trunk going down or a missing module seen, and the
admission figures the FastAGI server would use."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import AgentMetrics
from agents.snmp_agi import CapacityUnknown, live_capacity
from ccfo.domain.capacity import CallKind, admit
from ccfo.domain.site import CapacityPolicy, SipDriver, SipTrunk
from tests.lab.harness import monitored_lab
from tests.support import async_wait_until

LAB_TRUNKS = [("carrier-1", "pjsip", 30), ("carrier-2", "sip", 10)]
TRUNKS = [SipTrunk("carrier-1", 30), SipTrunk("carrier-2", 10, SipDriver.SIP)]
POLICY = CapacityPolicy()


def states(mon) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {t.name: t.state for t in mon.snapshot().trunks}


@pytest.mark.asyncio
async def test_c_comes_from_the_trunks_that_are_up_and_follows_their_reachability() -> None:
    async with monitored_lab(monitor={"trunks": TRUNKS}, spans=[], trunks=LAB_TRUNKS) as (lab, mon):
        snap = mon.snapshot()
        assert snap.trunks_known and states(mon) == {"carrier-1": "up", "carrier-2": "up"}
        assert snap.channels_available == 40 and snap.spans == ()
        assert {t.name: t.detail for t in snap.trunks} == {"carrier-1": "DeviceState Not in use",
                                                          "carrier-2": "OK (12 ms)"}
        lab.set_calls(ivr=4, agent=3)  # on the trunks: PJSIP/carrier-1-... channels
        await async_wait_until(lambda: mon.snapshot().calls.agent == 3, timeout=2, describe=mon.snapshot)
        assert mon.snapshot().calls.ivr == 4 and mon.snapshot().channels_free == 40 - 10
        lab.set_trunk("carrier-1", False)  # ContactStatus Unreachable: the monitor re-lists at once
        await async_wait_until(lambda: states(mon)["carrier-1"] == "down", timeout=2, describe=mon.snapshot)
        cap = live_capacity(mon, POLICY, 4)
        assert cap.channels == 10
        refused = admit(cap.channels, cap.load, CallKind.AGENT, POLICY)
        assert not refused.admit and "exceed C = 10" in refused.reason
        lab.set_trunk("carrier-1", True)
        await async_wait_until(lambda: mon.snapshot().channels_available == 40, timeout=2, describe=mon.snapshot)
        lab.set_trunk("carrier-2", False)  # chan_sip: PeerStatus Unreachable
        await async_wait_until(lambda: states(mon)["carrier-2"] == "down", timeout=2, describe=mon.snapshot)
        assert mon.snapshot().channels_available == 30


@pytest.mark.asyncio
async def test_a_missing_module_or_an_unknown_trunk_is_down_and_said_so() -> None:
    trunks = [*TRUNKS, SipTrunk("nowhere", 5)]
    async with monitored_lab(monitor={"trunks": trunks}, spans=[], trunks=[("carrier-1", "pjsip", 30)]) as (_lab, mon):
        snap = mon.snapshot()
        by_name = {t.name: t for t in snap.trunks}
        assert by_name["carrier-1"].state == "up"
        assert by_name["nowhere"].state == "down" and by_name["nowhere"].detail == "not configured in Asterisk (pjsip)"
        assert by_name["carrier-2"].state == "down" and by_name["carrier-2"].detail.startswith("chan_sip not loaded")
        assert snap.channels_available == 30 and snap.trunks_known


@pytest.mark.asyncio
async def test_after_the_ami_link_drops_the_trunks_are_unknown_until_listed() -> None:
    """Reconnected, but PJSIPShowEndpoints unanswered: no trunk data, so admission must not judge by C."""
    async with monitored_lab(monitor={"trunks": TRUNKS, "reconcile_interval_s": 0.2}, spans=[],
                             trunks=LAB_TRUNKS) as (lab, mon):
        assert mon.snapshot().trunks_known
        lab.stall_actions(["PJSIPShowEndpoints"])
        lab.drop_sessions()
        await async_wait_until(lambda: mon.snapshot().connected and mon.reconcile_error is not None, timeout=5,
                               describe=mon.snapshot)
        snap = mon.snapshot()
        assert not snap.trunks_known and states(mon)["carrier-1"] == "unknown"
        assert snap.channels_available == 0  # nothing counted that is not known
        with pytest.raises(CapacityUnknown, match=r"^AMI down for the trunks \(no trunk data: "):
            live_capacity(mon, POLICY, 4)
        lab.stall_actions([])
        await async_wait_until(lambda: mon.snapshot().trunks_known, timeout=5, describe=mon.snapshot)
        assert states(mon) == {"carrier-1": "up", "carrier-2": "up"} and mon.snapshot().channels_available == 40


@pytest.mark.asyncio
async def test_the_agents_metrics_show_each_trunk_and_c() -> None:
    async with monitored_lab(monitor={"trunks": TRUNKS}, spans=[], trunks=LAB_TRUNKS) as (lab, mon):
        lab.set_trunk("carrier-2", False)
        await async_wait_until(lambda: states(mon)["carrier-2"] == "down", timeout=2, describe=mon.snapshot)
        metrics = AgentMetrics("ipc-a")
        metrics.bind(ami=lambda: mon)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}
        assert samples[("ccfo_agent_trunk_up", (("host", "ipc-a"), ("trunk", "carrier-1")))] == 1.0
        assert samples[("ccfo_agent_trunk_up", (("host", "ipc-a"), ("trunk", "carrier-2")))] == 0.0
        assert samples[("ccfo_agent_channels", (("host", "ipc-a"),))] == 30.0


@pytest.mark.asyncio
async def test_without_write_class_system_pjsip_trunks_are_read_from_device_states() -> None:
    """The shipped AMI user (write = reporting,originate) may not run PJSIPShowEndpoints (class system):
    the refusal is logged once, the res_pjsip trunks are read with DeviceStateList instead, chan_sip's
    SIPpeers (system or reporting) still answers, and a DeviceStateChange event updates a trunk at once."""
    async with monitored_lab(monitor={"trunks": TRUNKS}, spans=[], trunks=LAB_TRUNKS,
                             write_classes=["reporting", "originate"]) as (lab, mon):
        snap = mon.snapshot()
        assert snap.trunks_known and snap.channels_available == 40
        assert {t.name: t.detail for t in snap.trunks} == {"carrier-1": "device state NOT_INUSE",
                                                          "carrier-2": "OK (12 ms)"}
        polls = mon.reconciles
        lab.set_trunk("carrier-1", False)
        await async_wait_until(lambda: states(mon)["carrier-1"] == "down", timeout=2, describe=mon.snapshot)
        assert mon.snapshot().channels_available == 10
        await mon.refresh()  # the next poll agrees: UNAVAILABLE
        assert mon.reconciles > polls and states(mon)["carrier-1"] == "down" and mon.reconcile_error is None
        lab.set_calls(ivr=2, agent=1)  # the calls are still read: a refused list never stops a reconcile
        await mon.refresh()
        assert (mon.snapshot().calls.ivr, mon.snapshot().calls.agent) == (2, 1)


@pytest.mark.asyncio
async def test_a_refused_list_leaves_the_trunks_unknown_and_says_which_class_is_missing() -> None:
    """An AMI user with write = originate only: every list is refused (CoreShowChannels too, so the
    reconcile fails and says so); the trunks are unknown, never up, each naming the class it needs."""
    async with monitored_lab(monitor={"trunks": TRUNKS}, spans=[], trunks=LAB_TRUNKS, wait_ready=False,
                             write_classes=["originate"]) as (_lab, mon):
        await async_wait_until(lambda: mon.reconcile_error is not None, timeout=5, describe=mon.snapshot)
        snap = mon.snapshot()
        details = {t.name: (t.state, t.detail) for t in snap.trunks}
        assert details == {
            "carrier-1": ("unknown", "PJSIPShowEndpoints and DeviceStateList refused (Permission denied): the AMI user "
                                     "needs write class system (PJSIPShowEndpoints) or call or reporting "
                                     "(DeviceStateList)"),
            "carrier-2": ("unknown", "SIPpeers refused (Permission denied): the AMI user needs write class system "
                                     "or reporting")}
        assert snap.channels_available == 0 and not snap.trunks_known
        assert mon.reconcile_error == "reconcile failed: Permission denied"  # CoreShowChannels: reporting too
