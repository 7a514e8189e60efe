"""Fuzzing the agent's AMI reader (agents/ami: our parser on panoramisk 1.4, the link, the model) over a real
loopback TCP connection from a fake Asterisk (tests/fuzz/amikit.py): malformed framing, huge fields, binary
junk, missing or repeated ActionIDs, events interleaved with list answers, a peer that stalls mid-message.
After every batch a probe event must be applied and a Ping answered, and nothing may have crashed. The
million-input run is `python -m bench.fuzz_ami` (figures in bench/README.md).
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.ami import AmiError, AmiTimeout
from agents.ami.protocol import MAX_PENDING_TEXT
from tests.fuzz.amikit import EVENTS, KEYS, VALUES, AgentUnderFuzz, Generator, render
from tests.support import async_wait_until

EOLS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"])
SEPS = st.sampled_from([b": ", b":", b" : ", b": \t", b""])
KEY = st.sampled_from(KEYS) | st.text(st.characters(codec="utf-8"), max_size=12)
VALUE = st.sampled_from(VALUES) | st.text(st.characters(codec="utf-8"), max_size=80) | st.integers().map(str)


@st.composite
def ami_message(draw: st.DrawFn) -> bytes:
    """An AMI-shaped message: Event or Response first (or not), odd headers, odd separators and line ends."""
    first = draw(st.sampled_from([("Event", e) for e in EVENTS] + [("Response", r) for r in
                                                                    ("Success", "Error", "Follows", "Goodbye")]))
    pairs = [first, *draw(st.lists(st.tuples(KEY, VALUE), max_size=8))]
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    eol, sep = draw(EOLS), draw(SEPS)
    body = eol.join(k.encode() + sep + v.encode() for k, v in pairs) + eol
    return body + (eol if draw(st.booleans()) else b"")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(ami_message()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 1:
            del data[at:at + draw(st.integers(1, 12))]
        elif op == 2:
            data[at:at] = draw(st.sampled_from([b"\r\n", b"\r\n\r\n", b"\xe9", b"\xf0\x9f\x98", b"\x00", b": "]))
        else:
            del data[at:]
    return bytes(data)


HUGE = st.builds(lambda n, end: b"Event: UserEvent\r\nValue: " + b"v" * n + end,
                 st.integers(60_000, 400_000), st.sampled_from([b"\r\n\r\n", b"\r\n", b""]))
INPUT = st.one_of(ami_message(), mutated(), st.binary(max_size=600), HUGE,
                  st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b": ", b":"]), max_size=30).map(b"".join))


@pytest_asyncio.fixture
async def agent():
    async with AgentUnderFuzz(probe_timeout_s=5.0) as harness:
        yield harness


@pytest.mark.asyncio
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(INPUT, min_size=1, max_size=6), split=st.booleans())
async def test_hypothesis_inputs_never_crash_or_hang_the_agent(agent: AgentUnderFuzz, batch: list[bytes],
                                                               split: bool) -> None:
    assert await agent.run_batch(batch, split=split) == []


@pytest.mark.asyncio
async def test_generated_inputs_small_run(agent: AgentUnderFuzz) -> None:
    """The bench's generator, 10,000 inputs (the full run is a million)."""
    gen = Generator(seed=20261123, huge_every=4000)
    for n in range(20):
        assert await agent.run_batch([gen.next() for _ in range(500)], split=n % 10 == 9) == []
    assert agent.tally.inputs == 10_000 and not agent.tally.crashes and not agent.tally.hangs


@pytest.mark.asyncio
async def test_repeated_event_response_or_action_id_headers_are_skipped_with_a_warning(
        agent: AgentUnderFuzz, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: these made panoramisk index its pending actions with a list (TypeError) or call .lower() on
    one (AttributeError): logged as errors with a traceback and, with a pending ActionID, never answered."""
    caplog.set_level(logging.WARNING, logger="agents.ami")
    assert agent.mon is not None
    ping = asyncio.ensure_future(agent.mon.link.send({"Action": "Ping", "ActionID": "ccfo-fuzz-1"}, timeout=5))
    await async_wait_until(lambda: "ping" in agent.peer.actions, timeout=5)
    bad = [render(("Response", "Success"), ("ActionID", "ccfo-fuzz-1"), ("ACTIONID", "ccfo-fuzz-1")),
           render(("Event", "Newchannel"), ("ActionID", "a"), ("ActionID", "b"), ("Channel", "DAHDI/i1/1-1")),
           render(("Response", "Goodbye"), ("event", "x"), ("Event", "y")),
           render(("Event", "Alarm"), ("event", "Alarm"), ("DAHDIChannel", "1"), ("Alarm", "Red Alarm"))]
    assert await agent.run_batch(bad) == []
    assert (await ping)[0].get("ping") == "Pong"
    assert caplog.text.count("no single Event/Response/ActionID header") == 4
    assert "DAHDI/i1/1-1" not in agent.mon.model.channels


@pytest.mark.asyncio
async def test_shutdown_event_reconnects_and_the_agent_reads_on(agent: AgentUnderFuzz) -> None:
    assert await agent.run_batch([render(("Event", "Shutdown"), ("Privilege", "system,all"), ("Restart", "True"))]) \
        == []
    assert agent.mon is not None and agent.mon.link.connects == 2 and agent.tally.reconnects_asked == 1


@pytest.mark.asyncio
async def test_events_interleaved_with_list_answers_even_reusing_their_action_id() -> None:
    async with AgentUnderFuzz(probe_timeout_s=5.0, action_timeout_s=0.5) as agent:
        await _interleave(agent)


async def _interleave(agent: AgentUnderFuzz) -> None:
    gen = Generator(seed=7)
    junk = [lambda aid: gen.next(),  # anything, possibly unterminated, between the pieces of the answer
            lambda aid: render(("Event", "PRIShowSpans"), ("ActionID", aid), ("Span", "x"), ("Up", "\x00")),
            lambda aid: render(("Event", "CoreShowChannelsComplete"), ("ActionID", aid), ("ListItems", "-1")),
            lambda aid: render(("Response", "Error"), ("ActionID", aid), ("Message", "interleaved")),
            lambda aid: render(("Response", "Success"), ("Message", "no ActionID at all")),
            lambda aid: render(("Event", "Newchannel"), ("ActionID", aid + "x"), ("Channel", "Local/i@x-1;1"))]
    mon = agent.mon
    assert mon is not None
    outcomes = []
    for make in junk * 3:
        agent.peer.interleave = make
        try:
            async with asyncio.timeout(mon.config.action_timeout_s + 2):
                await mon.refresh()
            outcomes.append("ok")
        except AmiError as exc:  # a list cut short by junk times out or reports the interleaved error
            outcomes.append(type(exc).__name__)
        assert agent._failures() == []
    agent.peer.interleave = None
    assert await agent.run_batch([]) == []
    await mon.refresh()
    snap = mon.snapshot()
    assert snap.connected and [(s.span, s.alarm, s.dchannel) for s in snap.spans] == [(1, "ok", True), (2, "ok", True)]
    assert "ok" in outcomes and len(set(outcomes)) > 1, outcomes


@pytest.mark.asyncio
async def test_answers_without_action_id_time_out_and_leave_nothing_pending(agent: AgentUnderFuzz) -> None:
    mon = agent.mon
    assert mon is not None
    agent.peer.strip_action_id = True
    with pytest.raises(AmiTimeout):
        await mon.link.send({"Action": "Ping"}, timeout=0.3)
    assert not mon.link._manager.protocol.responses  # type: ignore[union-attr]
    agent.peer.strip_action_id = False
    assert await agent.run_batch([]) == []


@pytest.mark.asyncio
async def test_peer_stalling_mid_message_is_dropped_by_the_ping_watchdog() -> None:
    async with AgentUnderFuzz(probe_timeout_s=5.0, ping_interval_s=0.1, ping_timeout_s=0.3) as agent:
        mon = agent.mon
        assert mon is not None
        agent.peer.stall = True
        await agent.peer.feed(b"Event: Newchannel\r\nChannel: Local/stalled@x-1;1\r\nUniq", close=False)
        await async_wait_until(lambda: not mon.link.connected, timeout=3, describe=agent.state)
        assert "Ping" in (mon.link.error or "") and mon.snapshot().error
        assert "Local/stalled@x-1;1" not in mon.model.channels  # half a message is never applied
        agent.peer.stall = False
        await async_wait_until(lambda: mon.link.connected and agent.peer.logged_in is not None, timeout=3)
        agent._connects = mon.link.connects
        assert await agent.run_batch([]) == []


@pytest.mark.asyncio
async def test_message_cut_by_a_pause_is_applied_whole_once_complete(agent: AgentUnderFuzz) -> None:
    mon = agent.mon
    assert mon is not None
    proto = mon.link._manager.protocol  # type: ignore[union-attr]
    await agent.peer.feed(b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: Local/slow@x-1", close=False)
    await async_wait_until(lambda: "Local/slow@x-1" in proto._text, timeout=2)
    for byte in b";1\r\nUniqueid: 1.2\r":  # then one byte at a time
        await agent.peer.feed(bytes([byte]), close=False)
    assert "Local/slow@x-1;1" not in mon.model.channels
    await agent.peer.feed(b"\n\r\n", close=False)
    await async_wait_until(lambda: "Local/slow@x-1;1" in mon.model.channels, timeout=2)
    assert await agent.run_batch([]) == []


@pytest.mark.asyncio
async def test_huge_message_without_an_end_is_dropped_and_memory_stays_bounded(
        agent: AgentUnderFuzz, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agents.ami")
    mon = agent.mon
    assert mon is not None
    proto = mon.link._manager.protocol  # type: ignore[union-attr]
    longest = 0

    def dropped() -> bool:
        nonlocal longest
        longest = max(longest, len(proto._text))
        return caplog.text.count("without a message end; discarding them") >= 2

    await agent.peer.feed(b"Event: UserEvent\r\nValue: ", close=False)
    for _ in range(160):  # 10 MiB, never ended
        await agent.peer.feed(b"v" * 65536, close=False)
        dropped()
    await async_wait_until(dropped, timeout=10, interval=0.001)
    assert longest <= MAX_PENDING_TEXT + 256 * 1024  # at most one read beyond the limit
    assert await agent.run_batch([]) == []
