"""Notifications end to end: agent responder -> real snmptrapd, and the controller's SNMP edge over UDP."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from agents.snmp.responder import SnmpResponder
from ccfo.snmp import layout as L
from ccfo.snmp.security import NotifyTarget, Secret, V3User, engine_id_for
from ccfo.snmp.view import HostView, ServiceView, SpanView
from controller.snmp import (
    AgentEndpoint,
    ControllerNotifier,
    ReceivedNotification,
    SnmpError,
    SnmpPoller,
    TrapReceiver,
)
from tests.snmp import trapd as trapkit
from tests.snmp.conftest import (
    COMMUNITY,
    NMS_USER,
    TRAP_COMMUNITY,
    USER,
    need,
    run_tool,
    sample_view,
)
from tests.snmp.trapd import TrapDaemon, v3_sender_line
from tests.support import async_wait_until

RED_SPAN_2 = (SpanView(1, "ok", True, 30), SpanView(2, "red", False, 30))


@contextlib.asynccontextmanager
async def snmptrapd(tmp_path: Path, mib_cache: Path, env: dict[str, str], sender_engine_id: bytes | None = None
                    ) -> AsyncIterator[TrapDaemon]:
    lines = [f"authCommunity log {TRAP_COMMUNITY.reveal()}",
             f"createUser {NMS_USER.name} SHA {NMS_USER.auth_key.reveal()} AES {NMS_USER.priv_key.reveal()}",
             f"authUser log {NMS_USER.name} priv"]
    if sender_engine_id:
        lines += v3_sender_line(USER, sender_engine_id)
    async with trapkit.snmptrapd(tmp_path, mib_cache, env, lines) as daemon:
        yield daemon


@pytest.mark.asyncio
async def test_span_alarm_reaches_snmptrapd_within_a_second(tmp_path: Path, mib_cache: Path,
                                                            snmp_env: dict[str, str]) -> None:
    views = [sample_view()]
    engine_id = engine_id_for(L.DOC_ENTERPRISE, "ipc-a")
    async with snmptrapd(tmp_path, mib_cache, snmp_env, sender_engine_id=engine_id) as trapd:
        targets = [NotifyTarget("nms-trap", "127.0.0.1", trapd.port, "trap", community=TRAP_COMMUNITY),
                   NotifyTarget("nms-inform", "127.0.0.1", trapd.port, "inform", user=NMS_USER),
                   NotifyTarget("nms-v3-trap", "127.0.0.1", trapd.port, "trap", user=USER)]
        async with SnmpResponder(lambda: views[0], user=USER, port=0, targets=targets, watch_interval_s=None,
                                 engine_id=engine_id) as responder:
            views[0] = sample_view(spans=RED_SPAN_2)
            started = time.monotonic()
            sent = responder.view_changed()
            assert [o.kind for o in sent] == [L.Notification.SPAN_ALARM_RAISED, L.Notification.DCHANNEL_DOWN]

            def delivered() -> bool:
                lines = [x for x in trapd.text().splitlines() if "CCFO-MIB::ccfoSpanAlarmRaised" in x]
                return (any("TRAP2, SNMP v2c" in x for x in lines) and any("INFORM, SNMP v3" in x for x in lines)
                        and any("TRAP2, SNMP v3" in x for x in lines))

            await async_wait_until(delivered, 1.0, describe=trapd.text)
            assert time.monotonic() - started < 1.0
            alarm_line = next(x for x in trapd.text().splitlines() if "ccfoSpanAlarmRaised" in x)
            assert "CCFO-MIB::ccfoSpanAlarmState.2 = INTEGER: red(2)" in alarm_line
            assert 'CCFO-MIB::ccfoHostName.0 = STRING: "ipc-a"' in alarm_line or "STRING: ipc-a" in alarm_line
            await async_wait_until(lambda: responder.sender and responder.sender.stats.acknowledged >= 2, 2.0)


@pytest.mark.asyncio
async def test_the_watch_loop_notices_a_change_nobody_announced(tmp_path: Path, mib_cache: Path,
                                                                snmp_env: dict[str, str]) -> None:
    views = [sample_view()]
    async with snmptrapd(tmp_path, mib_cache, snmp_env) as trapd:
        targets = [NotifyTarget("nms", "127.0.0.1", trapd.port, "trap", community=TRAP_COMMUNITY)]
        async with SnmpResponder(lambda: views[0], user=USER, port=0, targets=targets, watch_interval_s=0.05):
            views[0] = sample_view(driver_up=False)
            await async_wait_until(lambda: "CCFO-MIB::ccfoBoardDriverDown" in trapd.text(), 1.0, describe=trapd.text)


@pytest_asyncio.fixture
async def receiver_and_agent() -> AsyncIterator[tuple[TrapReceiver, SnmpResponder, list[ReceivedNotification],
                                                       list[HostView]]]:
    got: list[ReceivedNotification] = []
    receiver = TrapReceiver(got.append, port=0, communities=[TRAP_COMMUNITY], users=[USER, NMS_USER],
                            trap_engine_ids=[engine_id_for(L.DOC_ENTERPRISE, "ipc-a")])
    await receiver.start()
    views = [sample_view()]
    targets = [NotifyTarget("ctl-trap", "127.0.0.1", receiver.port, "trap", community=TRAP_COMMUNITY),
               NotifyTarget("ctl-inform", "127.0.0.1", receiver.port, "inform", user=NMS_USER),
               NotifyTarget("ctl-v3-trap", "127.0.0.1", receiver.port, "trap", user=USER)]
    responder = SnmpResponder(lambda: views[0], user=USER, community=COMMUNITY, port=0, targets=targets,
                              watch_interval_s=None)
    await responder.start()
    try:
        yield receiver, responder, got, views
    finally:
        await responder.close()
        await receiver.close()


@pytest.mark.asyncio
async def test_controller_poll_reads_the_agents_view(receiver_and_agent) -> None:  # type: ignore[no-untyped-def]
    _, responder, _, views = receiver_and_agent
    poller = SnmpPoller()
    try:
        polled = await poller.poll(AgentEndpoint("127.0.0.1", responder.port, user=USER))
        assert polled.view == views[0]
        assert polled.sys_uptime_ticks is not None and polled.sys_uptime_ticks >= 0
        views[0] = sample_view(spans=RED_SPAN_2, ivr_calls=26, agent_calls=2)
        v2c = await poller.poll(AgentEndpoint("127.0.0.1", responder.port, community=COMMUNITY))
        assert v2c.view == views[0] and v2c.view.span(2) == SpanView(2, "red", False, 30)
    finally:
        await poller.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", [
    {"user": V3User("ccfo", Secret("not-the-auth-key"), USER.priv_key)},
    {"community": Secret("not-the-community")},
])
async def test_controller_poll_with_bad_credentials_raises(receiver_and_agent, endpoint) -> None:  # type: ignore
    _, responder, _, _ = receiver_and_agent
    poller = SnmpPoller()
    try:
        with pytest.raises(SnmpError):
            await poller.poll(AgentEndpoint("127.0.0.1", responder.port, timeout_s=0.2, retries=0, **endpoint))
    finally:
        await poller.close()


@pytest.mark.asyncio
async def test_trap_receiver_gets_v2c_traps_v3_traps_and_informs(receiver_and_agent) -> None:  # type: ignore
    _, responder, got, views = receiver_and_agent
    views[0] = sample_view(spans=RED_SPAN_2)
    responder.view_changed()
    alarms = lambda: [r for r in got if r.kind is L.Notification.SPAN_ALARM_RAISED]  # noqa: E731
    await async_wait_until(lambda: len(alarms()) == 3, 1.0, describe=lambda: got)
    assert sorted((r.version, r.security_name) for r in alarms()) == [("v2c", "ccfo-rx0"), ("v3", "ccfo"),
                                                                       ("v3", "nms")]
    record = alarms()[0]
    assert (record.host, record.notification.span, record.notification.fields["alarm"]) == ("ipc-a", 2, "red")
    views[0] = sample_view(services=(ServiceView("cti", "failed", 1795428000.0), *views[0].services[1:]))
    responder.view_changed()
    await async_wait_until(lambda: any(r.kind is L.Notification.SERVICE_DOWN for r in got), 1.0)
    down = next(r for r in got if r.kind is L.Notification.SERVICE_DOWN)
    assert (down.notification.service, down.notification.fields["state"]) == ("cti", "failed")


@pytest.mark.asyncio
async def test_trap_receiver_logs_and_skips_malformed_input(receiver_and_agent, snmp_env: dict[str, str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    receiver, _, got, _ = receiver_and_agent
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x30\x03not snmp at all", ("127.0.0.1", receiver.port))
    ami_lost = ".1.3.6.1.4.1.32473.1.0.9"
    host_name = ".1.3.6.1.4.1.32473.1.1.1.1.0"
    with caplog.at_level(logging.WARNING, logger="controller.snmp"):
        bad = await run_tool(need("snmptrap"), "-v2c", "-c", TRAP_COMMUNITY.reveal(), f"127.0.0.1:{receiver.port}",
                             "", ami_lost, host_name, "i", "5", env=snmp_env)
        assert bad.rc == 0, bad.err
        await async_wait_until(lambda: receiver.malformed == 1, 1.0)
    assert "malformed notification" in caplog.text and TRAP_COMMUNITY.reveal() not in caplog.text
    assert got == []
    good = await run_tool(need("snmptrap"), "-v2c", "-c", TRAP_COMMUNITY.reveal(), f"127.0.0.1:{receiver.port}",
                          "", ami_lost, host_name, "s", "ipc-b", env=snmp_env)
    assert good.rc == 0
    await async_wait_until(lambda: len(got) == 1, 1.0)
    assert got[0].kind is L.Notification.AMI_LOST and got[0].host == "ipc-b"


@pytest.mark.asyncio
async def test_a_failing_callback_does_not_stop_the_receiver(snmp_env: dict[str, str]) -> None:
    seen: list[str | None] = []

    async def callback(record: ReceivedNotification) -> None:
        seen.append(record.host)
        raise RuntimeError("engine busy")

    receiver = TrapReceiver(callback, port=0, communities=[TRAP_COMMUNITY])
    await receiver.start()
    try:
        for host in ("ipc-a", "ipc-b"):
            done = await run_tool(need("snmptrap"), "-v2c", "-c", TRAP_COMMUNITY.reveal(),
                                  f"127.0.0.1:{receiver.port}", "", ".1.3.6.1.4.1.32473.1.0.10",
                                  ".1.3.6.1.4.1.32473.1.1.1.1.0", "s", host, env=snmp_env)
            assert done.rc == 0
        await async_wait_until(lambda: seen == ["ipc-a", "ipc-b"], 1.0, describe=lambda: seen)
    finally:
        await receiver.close()


@pytest.mark.asyncio
async def test_controller_events_reach_the_nms(tmp_path: Path, mib_cache: Path, snmp_env: dict[str, str]) -> None:
    got: list[ReceivedNotification] = []
    receiver = TrapReceiver(got.append, port=0, users=[NMS_USER])
    await receiver.start()
    async with snmptrapd(tmp_path, mib_cache, snmp_env) as trapd:
        notifier = ControllerNotifier([
            NotifyTarget("nms", "127.0.0.1", trapd.port, "trap", community=TRAP_COMMUNITY),
            NotifyTarget("siem", "127.0.0.1", receiver.port, "inform", user=NMS_USER)], host="127.0.0.1")
        await notifier.start()
        try:
            notifier.decision("ipc-a", "primary-cti-ivr-fault", "failover/propose", "cti down on ipc-a")
            notifier.plan_started("p-42", "ipc-b", "failover", 'fail over from ipc-a to ipc-b, "by hand"')
            notifier.plan_finished("p-42", "ipc-b", "failover", "verified")
            notifier.plan_failed("p-43", "ipc-a", "failback", "step 3 timed out")
            notifier.role_changed("ipc-b", "takeover", "ipc-b took over CTI/IVR")
            names = ["ccfoDecision", "ccfoPlanStarted", "ccfoPlanFinished", "ccfoPlanFailed", "ccfoSiteRoleChanged"]
            await async_wait_until(lambda: all(f"CCFO-MIB::{n}" in trapd.text() for n in names), 1.0,
                                   describe=trapd.text)
            assert "ccfoEventPlanId.0 = STRING: p-42" in trapd.text()
            await async_wait_until(lambda: len(got) == 5, 2.0, describe=lambda: got)
        finally:
            await notifier.close()
            await receiver.close()
    by_kind = {r.kind: r.notification for r in got}
    assert by_kind[L.Notification.PLAN_STARTED].fields["text"] == 'fail over from ipc-a to ipc-b, "by hand"'
    assert by_kind[L.Notification.SITE_ROLE_CHANGED].fields["duty"] == "takeover"
    assert by_kind[L.Notification.DECISION].fields["rule"] == "primary-cti-ivr-fault"
