"""The agent's SNMP responder against net-snmp's own tools over real UDP on 127.0.0.1."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_asyncio

from agents.snmp.responder import SnmpResponder
from ccfo.snmp import layout as L
from ccfo.snmp.security import NotifyTarget, Secret, V3User
from ccfo.snmp.view import HostView, SpanView
from tests.snmp.conftest import (
    COMMUNITY,
    MIB_DIR,
    NMS_USER,
    TRAP_COMMUNITY,
    USER,
    free_udp_port,
    need,
    run_tool,
    sample_view,
    v3_args,
)

LAY = L.Layout()


@dataclass
class Agent:
    responder: SnmpResponder
    views: list[HostView]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.responder.port}"

    def set(self, view: HostView) -> None:
        self.views[0] = view


@pytest_asyncio.fixture
async def agent() -> AsyncIterator[Agent]:
    views = [sample_view()]
    nowhere = free_udp_port()  # notify-only principals exist, but nothing is sent in these tests
    targets = [NotifyTarget("nms-v3", "127.0.0.1", nowhere, "inform", user=NMS_USER),
               NotifyTarget("nms-v2c", "127.0.0.1", nowhere, "trap", community=TRAP_COMMUNITY)]
    responder = SnmpResponder(lambda: views[0], user=USER, community=COMMUNITY, port=0, targets=targets,
                              watch_interval_s=None)
    await responder.start()
    try:
        yield Agent(responder, views)
    finally:
        await responder.close()


def parse_quick(out: str) -> dict[str, str]:
    """`-OQUe` output lines `CCFO-MIB::name.index = value` as {"name.index": value}."""
    values = {}
    for line in out.splitlines():
        m = re.match(r"^CCFO-MIB::(\S+) = (.*)$", line.strip())
        if m and "No more variables" not in line:
            values[m.group(1)] = m.group(2).strip().strip('"')
    return values


@pytest.mark.asyncio
async def test_snmpwalk_v3_authpriv_reads_the_views_capacity_and_spans(agent: Agent, mib_cache: Path,
                                                                       snmp_env: dict[str, str]) -> None:
    view = sample_view(spans=(SpanView(1, "ok", True, 30), SpanView(2, "red", False, 30)), ivr_calls=26,
                       agent_calls=2, free=30, used=30)
    agent.set(view)
    done = await run_tool(need("snmpwalk"), *v3_args(), "-M", f"{mib_cache}:{MIB_DIR}", "-m", "CCFO-MIB", "-OQUe",
                          agent.address, "CCFO-MIB::ccfoMIB", env=snmp_env)
    assert done.rc == 0, done.err
    got = parse_quick(done.out)
    assert got["ccfoHostName.0"] == "ipc-a"
    for name, field in [("ccfoCapChannels", "channels"), ("ccfoCapIvrCalls", "ivr_calls"),
                        ("ccfoCapAgentCalls", "agent_calls"), ("ccfoCapFaxCalls", "fax_calls"),
                        ("ccfoCapFreeChannels", "free"), ("ccfoCapReserve", "reserve"),
                        ("ccfoCapUsedChannels", "used"), ("ccfoCapFaxChannels", "fax_channels")]:
        assert int(got[f"{name}.0"]) == getattr(view, field), name
    for span in view.spans:
        assert int(got[f"ccfoSpanAlarmState.{span.span}"]) == L.SPAN_ALARM[span.alarm]
        assert int(got[f"ccfoSpanDChannel.{span.span}"]) == (L.UP if span.dchannel_up else L.DOWN)
        assert int(got[f"ccfoSpanChannels.{span.span}"]) == span.channels
    assert [got[f"ccfoServiceName.{i}"] for i in (1, 2, 3)] == ["cti", "ivr", "kcxp"]
    assert int(got["ccfoServiceState.3"]) == L.SERVICE_STATE["inactive"]
    assert int(got["ccfoBoardDriver.0"]) == L.UP and int(got["ccfoHostRole.0"]) == L.ROLE["primary"]


@pytest.mark.asyncio
async def test_ds1_mib_line_status_by_number_follows_the_live_view(agent: Agent, snmp_env: dict[str, str]) -> None:
    oid = "." + ".".join(map(str, (*L.DSX1_LINE_STATUS, 2)))
    args = [need("snmpget"), *v3_args(), "-On", agent.address, oid]
    first = await run_tool(*args, env=snmp_env)
    assert first.out.strip() == f"{oid} = INTEGER: 1", first.err  # dsx1NoAlarm
    agent.set(sample_view(spans=(SpanView(1, "ok", True, 30), SpanView(2, "red", False, 30))))
    second = await run_tool(*args, env=snmp_env)
    assert second.out.strip() == f"{oid} = INTEGER: 32"  # dsx1LossOfFrame (red alarm)


@pytest.mark.asyncio
async def test_v2c_community_reads_but_cannot_write(agent: Agent, snmp_env: dict[str, str]) -> None:
    oid = "." + ".".join(map(str, LAY.capacity(2)))
    read = await run_tool(need("snmpget"), "-v2c", "-c", COMMUNITY.reveal(), "-On", agent.address, oid, env=snmp_env)
    assert read.out.strip() == f"{oid} = Gauge32: 28"
    write = await run_tool(need("snmpset"), "-v2c", "-c", COMMUNITY.reveal(), "-t", "0.3", "-r", "0", agent.address,
                           oid, "u", "1", env=snmp_env)
    assert write.rc != 0
    again = await run_tool(need("snmpget"), "-v2c", "-c", COMMUNITY.reveal(), "-On", agent.address, oid, env=snmp_env)
    assert again.out.strip() == f"{oid} = Gauge32: 28"


BAD_CREDENTIALS = {
    "wrong community": ["-v2c", "-c", "not-the-community"],
    "trap-only community": ["-v2c", "-c", TRAP_COMMUNITY.reveal()],
    "wrong auth key": v3_args(V3User("ccfo", Secret("wrong-auth-key"), USER.priv_key)),
    "wrong priv key": v3_args(V3User("ccfo", USER.auth_key, Secret("wrong-priv-key"))),
    "unknown user": v3_args(V3User("intruder", USER.auth_key, USER.priv_key)),
    "notify-only v3 user": v3_args(NMS_USER),
    "authNoPriv for an authPriv user": ["-v3", "-l", "authNoPriv", "-u", "ccfo", "-a", "SHA", "-A",
                                        USER.auth_key.reveal()],
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_bad_credentials_get_no_data(agent: Agent, snmp_env: dict[str, str], case: str) -> None:
    done = await run_tool(need("snmpwalk"), *BAD_CREDENTIALS[case], "-t", "0.3", "-r", "0", "-On", agent.address,
                          ".1.3.6.1", env=snmp_env)
    assert not re.search(r"= (STRING|INTEGER|Gauge32|Timeticks|OID|Hex-STRING)", done.out), done.out
    assert "ipc-a" not in done.out


@pytest.mark.asyncio
async def test_pysnmp_own_tables_are_never_served(agent: Agent, snmp_env: dict[str, str]) -> None:
    # PYSNMP-USM-MIB holds the USM pass phrases in clear; SNMP-COMMUNITY-MIB the communities
    done = await run_tool(need("snmpget"), *v3_args(), "-On", agent.address, ".1.3.6.1.4.1.20408.3.1.1.1.2",
                          ".1.3.6.1.6.3.18.1.1.1.2", env=snmp_env)
    assert done.out.count("No Such Object") == 2, done.out
    walk = await run_tool(need("snmpwalk"), *v3_args(), "-On", agent.address, ".1.3.6.1.6", env=snmp_env)
    assert USER.auth_key.reveal() not in walk.out and "= STRING" not in walk.out


@pytest.mark.asyncio
async def test_a_failing_view_source_serves_the_last_values(snmp_env: dict[str, str]) -> None:
    calls = {"n": 0}

    def flaky() -> HostView:
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("AMI model locked")
        return sample_view()

    async with SnmpResponder(flaky, user=USER, port=0, watch_interval_s=None) as responder:
        oid = "." + ".".join(map(str, LAY.capacity(1)))
        for _ in range(3):
            done = await run_tool(need("snmpget"), *v3_args(), "-On", f"127.0.0.1:{responder.port}", oid,
                                  env=snmp_env)
            assert done.out.strip() == f"{oid} = Gauge32: 60"
        assert calls["n"] >= 4
        assert responder.view_changed() == []


@pytest.mark.asyncio
async def test_a_taken_port_fails_at_start() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        responder = SnmpResponder(sample_view, user=USER, port=taken.getsockname()[1], watch_interval_s=None)
        with pytest.raises(OSError):
            await responder.start()
        await responder.close()


def test_needs_some_credentials() -> None:
    with pytest.raises(ValueError, match="v3 user or a v2c community"):
        SnmpResponder(sample_view, user=None)


def test_a_target_reusing_the_read_user_needs_the_same_keys() -> None:
    other_keys = replace(USER, priv_key=Secret("another-priv-key"))
    responder = SnmpResponder(sample_view, user=USER, port=0, watch_interval_s=None,
                              targets=[NotifyTarget("nms", "127.0.0.1", 162, "inform", user=other_keys)])

    async def start() -> None:
        try:
            await responder.start()
        finally:
            await responder.close()

    import asyncio

    with pytest.raises(ValueError, match="other keys"):
        asyncio.run(start())
