"""The admission server over real TCP on 127.0.0.1, spoken to like Asterisk does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from agents.fastagi import AdmissionServer, LiveCapacity
from ccfo.domain.capacity import HostLoad
from ccfo.domain.site import CapacityPolicy, DirectionLimits

C30 = CapacityPolicy()


def env_block(script: str = "admit?kind=agent", **extra: str) -> bytes:
    """An environment like Asterisk 20's (tests/fixtures/asterisk-agi), LF line ends."""
    lines = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://127.0.0.1:4573/{script}",
             "agi_channel": "SIP/sipp-00000011", "agi_language": "en", "agi_type": "SIP",
             "agi_uniqueid": "1795427911.33", "agi_version": "20.20.1", "agi_callerid": "sipp",
             "agi_context": "from-trunk", "agi_extension": "200", "agi_priority": "4", "agi_accountcode": "",
             **extra}
    return "".join(f"{k}: {v}\n" for k, v in lines.items()).encode() + b"\n"


@dataclass
class Exchange:
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0


async def asterisk(port: int, block: bytes, reply: Callable[[str], list[bytes]] | None = None,
                   close_after_send: bool = False) -> Exchange:
    """Play Asterisk: send the environment, answer each command, collect SET VARIABLE values."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ex = Exchange()
    try:
        writer.write(block)
        await writer.drain()
        if close_after_send:
            writer.write_eof()
        while True:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            if not line:
                break
            text = line.decode().rstrip("\n")
            ex.commands.append(text)
            if text.startswith("SET VARIABLE "):
                name, _, value = text[len("SET VARIABLE "):].partition(" ")
                ex.variables[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            if close_after_send:
                continue  # we cannot answer any more: the server hears EOF instead of a reply
            for out in (reply(text) if reply else [b"200 result=1\n"]):
                writer.write(out)
    finally:
        ex.elapsed_s = time.monotonic() - started
        writer.close()
    return ex


@pytest_asyncio.fixture
async def live() -> AsyncIterator[list[object]]:
    yield [LiveCapacity(30, HostLoad(), C30)]


@pytest_asyncio.fixture
async def server(live: list[object]) -> AsyncIterator[AdmissionServer]:
    srv = AdmissionServer(lambda: live[0], port=0, header_timeout_s=0.3)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def ask(srv: AdmissionServer, script: str) -> Exchange:
    return await asterisk(srv.port, env_block(script))


@pytest.mark.asyncio
@pytest.mark.parametrize(("ivr", "agents", "reserve", "script", "admitted"), [
    (27, 1, 0, "admit?kind=agent", "yes"),  # 27 + 2 = 29: one more leg fits in C = 30
    (28, 1, 0, "admit?kind=agent", "no"),   # 28 + 2 = 30: no room for a transfer
    (26, 2, 0, "admit?kind=agent", "no"),   # 26 + 4 = 30: none
    (26, 2, 0, "admit?kind=ivr", "no"),
    (29, 0, 0, "admit?kind=ivr", "yes"),    # 29 + 1 = 30 <= 30
    (25, 1, 2, "admit?kind=ivr", "yes"),    # 27 + 1 = 28 <= C - reserve = 28
    (26, 1, 2, "admit?kind=ivr", "no"),     # 28 + 1 > 28: the reserve is kept for transfers
    (26, 1, 2, "admit?kind=agent", "yes"),  # ... and a transfer may use it: 28 + 1 <= 30
    (28, 0, 2, "admit?kind=agent", "yes"),  # 28 + 1 = 29 <= 30
    (0, 15, 0, "admit?kind=agent", "no"),   # 30 channels held by 15 agent calls
])
async def test_admit_and_refuse_at_the_exact_boundary(server: AdmissionServer, live: list[object], ivr: int,
                                                      agents: int, reserve: int, script: str, admitted: str) -> None:
    live[0] = LiveCapacity(30, HostLoad(ivr, agents), CapacityPolicy(reserve_for_transfers=reserve))
    ex = await ask(server, script)
    assert ex.variables["CCFO_ADMIT"] == admitted
    assert ex.variables["CCFO_REASON"]
    assert list(ex.variables) == ["CCFO_REASON", "CCFO_ADMIT"]  # the verdict comes last


@pytest.mark.asyncio
async def test_direction_limits_and_fax_pool(server: AdmissionServer, live: list[object]) -> None:
    live[0] = LiveCapacity(60, HostLoad(10, 0, inbound_channels=40), C30, 4, DirectionLimits(inbound_max=40))
    refused = await ask(server, "admit?kind=ivr&direction=inbound")
    assert refused.variables["CCFO_ADMIT"] == "no" and "inbound limit 40" in refused.variables["CCFO_REASON"]
    assert (await ask(server, "admit?kind=ivr&direction=outbound")).variables["CCFO_ADMIT"] == "yes"
    live[0] = (60, HostLoad(fax_calls=4), C30, 4)  # a plain tuple works too
    assert (await ask(server, "admit?kind=fax")).variables["CCFO_ADMIT"] == "no"


@pytest.mark.asyncio
async def test_the_reason_is_quoted_for_asterisk(server: AdmissionServer, live: list[object]) -> None:
    live[0] = LiveCapacity(30, HostLoad(28, 1), C30)
    ex = await ask(server, "admit?kind=agent")
    reason_cmd = next(c for c in ex.commands if "CCFO_REASON" in c)
    assert reason_cmd.startswith('SET VARIABLE CCFO_REASON "') and reason_cmd.endswith('"')
    assert "X + 2Y = 28 + 2*1 = 30" in ex.variables["CCFO_REASON"]


@pytest.mark.asyncio
@pytest.mark.parametrize("block", [
    b"hello\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\n\n",
    env_block("admit?kind=vip"),
    env_block("unknown-script"),
])
async def test_a_malformed_request_gets_an_answer_not_a_hang(server: AdmissionServer, block: bytes) -> None:
    ex = await asterisk(server.port, block)
    assert ex.variables["CCFO_ADMIT"] == "yes"  # fail-open by default
    assert "fail-open" in ex.variables["CCFO_REASON"]
    assert ex.elapsed_s < 0.5
    assert server.stats.fallback == 1


@pytest.mark.asyncio
async def test_a_request_cut_short_is_answered_by_policy(server: AdmissionServer) -> None:
    partial = await asterisk(server.port, b"agi_network: yes\nagi_network_script: adm")  # then silence
    assert partial.variables["CCFO_ADMIT"] == "yes" and "no complete request" in partial.variables["CCFO_REASON"]
    assert partial.elapsed_s < 1.0
    half_closed = await asterisk(server.port, b"agi_network: yes\n", close_after_send=True)
    assert "cut short" in half_closed.variables["CCFO_REASON"] and half_closed.elapsed_s < 1.0


@pytest.mark.asyncio
async def test_a_probe_that_connects_and_leaves_does_not_disturb_the_server(server: AdmissionServer,
                                                                            live: list[object]) -> None:
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
    live[0] = LiveCapacity(30, HostLoad(28, 1), C30)
    assert (await ask(server, "admit?kind=agent")).variables["CCFO_ADMIT"] == "no"
    assert server.stats.unanswered >= 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fail_open", [True, False])
async def test_internal_errors_answer_by_policy_within_200_ms(fail_open: bool) -> None:
    def broken() -> LiveCapacity:
        raise KeyError("ipc-a")

    async def stuck() -> LiveCapacity:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    for source in (broken, stuck):
        srv = AdmissionServer(source, port=0, fail_open=fail_open, answer_within_s=0.2)
        await srv.start()
        try:
            ex = await ask(srv, "admit?kind=agent")
        finally:
            await srv.close()
        assert ex.variables["CCFO_ADMIT"] == ("yes" if fail_open else "no")
        assert ("fail-open" if fail_open else "fail-closed") in ex.variables["CCFO_REASON"]
        assert ex.elapsed_s < 0.4, ex.elapsed_s  # 200 ms bound plus loopback and scheduling slack


@pytest.mark.asyncio
async def test_an_async_live_source_is_awaited(live: list[object]) -> None:
    async def source() -> LiveCapacity:
        await asyncio.sleep(0)
        return LiveCapacity(30, HostLoad(28, 1), C30)

    async with AdmissionServer(source, port=0) as srv:
        assert (await ask(srv, "admit?kind=agent")).variables["CCFO_ADMIT"] == "no"


@pytest.mark.asyncio
async def test_hangup_notices_and_usage_errors_do_not_shift_replies(server: AdmissionServer) -> None:
    def replies(command: str) -> list[bytes]:
        if "CCFO_REASON" in command:  # the caller hangs up while we talk, then a usage error
            return [b"HANGUP\n", b"520-Invalid command syntax.  Proper usage follows:\n", b"Usage: ...\n",
                    b"520 End of proper usage.\n"]
        return [b"200 result=1\n"]

    ex = await asterisk(server.port, env_block(), replies)
    assert [c.split()[2] for c in ex.commands] == ["CCFO_REASON", "CCFO_ADMIT"]


@pytest.mark.asyncio
async def test_a_dead_channel_stops_the_answer(server: AdmissionServer) -> None:
    ex = await asterisk(server.port, env_block(), lambda _: [b"511 Command Not Permitted on a dead channel\n"])
    assert [c.split()[2] for c in ex.commands] == ["CCFO_REASON"]


@pytest.mark.asyncio
async def test_a_silent_asterisk_does_not_keep_the_session(live: list[object]) -> None:
    async with AdmissionServer(lambda: live[0], port=0, reply_timeout_s=0.2) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(env_block())
        first = await asyncio.wait_for(reader.readline(), 1.0)
        assert first.startswith(b"SET VARIABLE CCFO_REASON")
        assert await asyncio.wait_for(reader.read(), 1.0) == b""  # closed by the server after its timeout
        writer.close()


@pytest.mark.asyncio
async def test_concurrent_sessions(server: AdmissionServer, live: list[object]) -> None:
    live[0] = LiveCapacity(30, HostLoad(27, 1), C30)
    results = await asyncio.gather(*(ask(server, "admit?kind=agent") for _ in range(50)))
    assert {r.variables["CCFO_ADMIT"] for r in results} == {"yes"}
    assert server.stats.admitted == 50


@pytest.mark.asyncio
@pytest.mark.parametrize("fail_open", [True, False])
async def test_with_ami_down_the_policy_answer_names_ami_down(fail_open: bool) -> None:
    """The agent's live source (agents.snmp_agi.live_capacity) over a lost AMI link: the answer says
    "AMI down" and why, not "internal error"."""
    from types import SimpleNamespace

    from agents.snmp_agi import live_capacity

    lost = SimpleNamespace(snapshot=lambda: SimpleNamespace(connected=False, error="connection refused"))
    srv = AdmissionServer(lambda: live_capacity(lost, C30, 4), port=0, fail_open=fail_open)
    await srv.start()
    try:
        ex = await ask(srv, "admit?kind=agent")
    finally:
        await srv.close()
    reason = ex.variables["CCFO_REASON"]
    assert ex.variables["CCFO_ADMIT"] == ("yes" if fail_open else "no")
    assert reason.startswith("AMI down (connection refused)"), reason
    assert "internal error" not in reason and "ami_down policy" in reason, reason
    assert srv.stats.by_result_reason == {("admitted" if fail_open else "refused", "ami_down"): 1}


@pytest.mark.asyncio
async def test_with_ami_down_each_kind_follows_its_own_policy() -> None:
    """agi.ami_down {ivr: admit, agent: refuse}: with the AMI link lost a new IVR call is admitted and a
    transfer refused, both saying "AMI down", whatever fail_open says."""
    from types import SimpleNamespace

    from agents.snmp_agi import live_capacity
    from ccfo.domain.capacity import UnknownPolicy

    lost = SimpleNamespace(snapshot=lambda: SimpleNamespace(connected=False, error="connection refused"))
    srv = AdmissionServer(lambda: live_capacity(lost, C30, 4), port=0, fail_open=True,
                          ami_down=UnknownPolicy(ivr=True, agent=False, fax=True))
    await srv.start()
    try:
        ivr = await ask(srv, "admit?kind=ivr")
        agent = await ask(srv, "admit?kind=agent")
    finally:
        await srv.close()
    assert ivr.variables["CCFO_ADMIT"] == "yes" and agent.variables["CCFO_ADMIT"] == "no"
    assert ivr.variables["CCFO_REASON"].startswith("AMI down (connection refused)")
    assert agent.variables["CCFO_REASON"] == ("AMI down (connection refused): live calls unknown; "
                                              "agent refused by the ami_down policy")
    assert srv.stats.by_result_reason == {("admitted", "ami_down"): 1, ("refused", "ami_down"): 1}


@pytest.mark.asyncio
async def test_with_trunks_not_listed_yet_the_policy_answers_and_says_so() -> None:
    """AMI connected but the host's SIP trunks not listed since (C would be a guess): the ami_down policy
    answers, naming the missing trunk data, never "internal error" nor a capacity verdict on C = 0."""
    from types import SimpleNamespace

    from agents.snmp_agi import live_capacity
    from ccfo.domain.capacity import UnknownPolicy

    trunk = SimpleNamespace(name="carrier", state="unknown", detail="not listed since the AMI connected",
                            channels=30)
    snap = SimpleNamespace(connected=True, error=None, trunks=(trunk,), trunks_known=False, channels_available=0,
                           calls=SimpleNamespace(ivr=0, agent=0, fax=0))
    srv = AdmissionServer(lambda: live_capacity(SimpleNamespace(snapshot=lambda: snap), C30, 4), port=0,
                          fail_open=False, ami_down=UnknownPolicy(ivr=True, agent=True, fax=False))
    await srv.start()
    try:
        ex = await ask(srv, "admit?kind=agent")
    finally:
        await srv.close()
    assert ex.variables["CCFO_ADMIT"] == "yes"
    assert ex.variables["CCFO_REASON"].startswith("AMI down for the trunks (no trunk data: not listed since the AMI "
                                                  "connected)"), ex.variables["CCFO_REASON"]
