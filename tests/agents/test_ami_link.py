"""The agent's AMI link and actions against the lab server: no replay, timeouts, line tests, AstDB, parsing."""

from __future__ import annotations

import asyncio
import logging

import pytest
from panoramisk import Manager

from agents.ami import AmiError, AmiNotConnected, AmiTimeout, LinkConfig
from agents.ami.protocol import SafeAMIProtocol
from lab.ami import LabAmiServer
from tests.lab.harness import FAST_LAB, monitored_lab
from tests.support import async_wait_until


@pytest.mark.asyncio
async def test_pending_originate_is_not_replayed_after_reconnect() -> None:
    async with monitored_lab() as (lab, mon):
        lab.stall_actions(["Originate"])  # received, never answered: "pending" when the link drops
        test = asyncio.create_task(mon.line_test("0123456", "ccfo-linetest", timeout_s=5))
        await async_wait_until(lambda: lab.actions_received["originate"] == 1, timeout=2)
        lab.drop_sessions()
        result = await asyncio.wait_for(test, 2)
        assert not result.ok and result.reason.startswith("AMI not connected")
        lab.stall_actions([])
        await async_wait_until(lambda: mon.link.connects == 2 and mon.link.connected, timeout=5)
        await mon.refresh()  # FullyBooted came and went: panoramisk would have re-sent by now
        await mon.db_put("ccfo", "after", "reconnect")  # and anything re-sent would precede this answer
        assert lab.actions_received["originate"] == 1


@pytest.mark.asyncio
async def test_plain_panoramisk_would_replay_the_originate() -> None:
    """Why the link exists (and proof the test above can fail): a vanilla Manager sends it twice."""
    lab = LabAmiServer("127.0.0.1", 0, **FAST_LAB)
    await lab.start()
    lab.stall_actions(["Originate"])
    manager = Manager(host="127.0.0.1", port=lab.port, username="ccfo", secret="ccfo-secret", events="system,call",
                      reconnect_timeout=1, ping_delay=3600, loop=asyncio.get_running_loop())
    try:
        await manager.connect()
        await asyncio.wait_for(manager.authenticated_future, 2)
        pending = manager.send_action({"Action": "Originate", "Channel": "Local/1@x", "Application": "Wait",
                                       "Data": "0", "Async": "true"})
        await async_wait_until(lambda: lab.actions_received["originate"] == 1, timeout=2)
        lab.drop_sessions()
        await async_wait_until(lambda: lab.actions_received["originate"] == 2, timeout=5)
        assert not pending.done()
        pending.cancel()
    finally:
        manager.close()  # while connected, close() does stop it (no reconnect is scheduled)
        await lab.close()


@pytest.mark.asyncio
async def test_pending_dbput_fails_instead_of_replaying() -> None:
    async with monitored_lab() as (lab, mon):
        lab.stall_actions(["DBPut"])
        put = asyncio.create_task(mon.db_put("ccfo", "active_host", "ipc-b"))
        await async_wait_until(lambda: lab.actions_received["dbput"] == 1, timeout=2)
        await lab.shutdown(restart=True)
        with pytest.raises(AmiNotConnected) as caught:
            await asyncio.wait_for(put, 2)
        assert "shut down" in str(caught.value)
        lab.stall_actions([])
        await async_wait_until(lambda: mon.link.connects == 2, timeout=5)
        assert await mon.db_get("ccfo", "active_host") is None
        assert lab.actions_received["dbput"] == 1 and lab.host.astdb == {}


@pytest.mark.asyncio
async def test_originate_queued_but_unanswered_does_not_hang_across_a_drop() -> None:
    async with monitored_lab() as (lab, mon):
        lab.set_dialplan(noanswer=["5550000"])  # "queued" at once, OriginateResponse only after 30 s
        test = asyncio.create_task(mon.line_test("5550000", "ccfo-linetest", timeout_s=30))
        await async_wait_until(lambda: lab.actions_received["originate"] == 1 and not lab.idle, timeout=2)
        lab.drop_sessions()
        result = await asyncio.wait_for(test, 2)
        assert not result.ok and "not connected" in result.reason
        await async_wait_until(lambda: mon.link.connects == 2, timeout=5)
        await mon.refresh()
        assert lab.actions_received["originate"] == 1


@pytest.mark.asyncio
async def test_line_test_outcomes() -> None:
    async with monitored_lab() as (lab, mon):
        ok = await mon.line_test("0123456", "ccfo-linetest", timeout_s=2, hold_s=0)
        assert ok.ok and ok.reason == "answered (reason 4)" and 0 <= ok.duration_s < 2
        missing = await mon.line_test("999", "ccfo-linetest", timeout_s=2)
        assert not missing.ok and missing.reason.endswith("(reason 0)")
        # what Asterisk said and what it dialled travel with the result (fixture e2: Channel, Response, Reason)
        assert (missing.target, missing.asterisk_response, missing.asterisk_reason) == (
            "Local/999@ccfo-linetest", "Failure", 0)
        lab.set_dialplan(noanswer=["5550000"])
        silent = await mon.line_test("5550000", "ccfo-linetest", timeout_s=0.2)
        assert not silent.ok and silent.reason == "no answer before the timeout (reason 3)"
        assert (silent.target, silent.asterisk_response, silent.asterisk_reason) == (
            "Local/5550000@ccfo-linetest", "Failure", 3)
        assert silent.duration_s >= 0.2
        lab.set_span_alarm(1, "red")
        lab.set_span_alarm(2, "los")
        down = await mon.line_test("0123456", "ccfo-linetest", timeout_s=2)
        assert not down.ok and down.reason.startswith("failed (no free channel") and down.reason.endswith("(reason 0)")
        lab.set_span_alarm(1, "clear")
        lab.stop_driver()
        stopped = await mon.line_test("0123456", "ccfo-linetest", timeout_s=2)
        assert not stopped.ok and "reason 0" in stopped.reason
        with pytest.raises(ValueError):
            await mon.line_test("123\r\nAction: Command", "ccfo-linetest", timeout_s=1)


@pytest.mark.asyncio
async def test_line_test_refuses_without_call_events() -> None:
    async with monitored_lab(monitor={"events": "system"}) as (lab, mon):
        result = await mon.line_test("0123456", "ccfo-linetest", timeout_s=1)
        assert not result.ok and "events mask" in result.reason and lab.actions_received["originate"] == 0


@pytest.mark.asyncio
async def test_astdb_round_trip() -> None:
    async with monitored_lab() as (lab, mon):
        await mon.db_put("ccfo", "active_host", "ipc-a")
        assert await mon.db_get("ccfo", "active_host") == "ipc-a" and lab.host.astdb[("ccfo", "active_host")] == "ipc-a"
        await mon.db_put("ccfo", "active_host", "café-ü€")
        assert await mon.db_get("ccfo", "active_host") == "café-ü€"
        assert await mon.db_get("ccfo", "nothing") is None


@pytest.mark.asyncio
async def test_link_errors_are_ours() -> None:
    async with monitored_lab() as (lab, mon):
        link = mon.link
        with pytest.raises(AmiError, match="Invalid/unknown command: NoSuchThing") as err:
            await link.send({"Action": "NoSuchThing"})
        assert err.value.response and err.value.response["response"] == "Error"
        lab.stall_actions(["CoreStatus"])
        with pytest.raises(AmiTimeout) as timeout:
            await link.send({"Action": "CoreStatus"}, timeout=0.1)
        assert isinstance(timeout.value.__cause__, TimeoutError)
        with pytest.raises(ValueError, match="line break"):
            await link.send({"Action": "DBPut", "Family": "f", "Key": "k", "Val": "x\r\nAction: Command"})
        with pytest.raises(ValueError, match="sync Originate"):
            await link.send({"Action": "Originate", "Channel": "Local/1@x", "Async": "false"})
        one = await link.send({"Action": "Command", "Command": "core show version"})
        two = await link.send({"Action": "Command", "Command": "core show uptime"})
        assert len(one[0].getlist("Output")) == 1 and len(two[0].getlist("Output")) == 2
        version = await link.send({"Action": "ModuleCheck", "Module": "chan_dahdi"})
        assert "version" in version[0].headers  # a trailing empty header is kept, not dropped
    with pytest.raises(AmiNotConnected):
        await mon.link.send({"Action": "Ping"})


def test_secret_stays_out_of_reprs() -> None:
    config = LinkConfig("127.0.0.1", 5038, "ccfo", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in str(config)


class _Factory:
    """The two attributes panoramisk's protocol uses from its Manager while parsing."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.forgetable_actions = ("ping", "login")
        self.awaiting_actions: list[object] = []

    def dispatch(self, message: object) -> None:
        self.events.append(dict(message.items()))  # type: ignore[attr-defined]

    def connection_lost(self, exc: object) -> None:
        pass


class _Transport:
    def close(self) -> None:
        pass


def _protocol() -> tuple[SafeAMIProtocol, _Factory]:
    proto = SafeAMIProtocol()
    proto.connection_made(_Transport())
    factory = _Factory()
    proto.factory = factory
    return proto, factory


def test_parser_survives_split_utf8_and_garbage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agents.ami")
    proto, factory = _protocol()
    raw = ("Asterisk Call Manager/9.0.0\r\n" "Event: UserEvent\r\nValue: café\r\n\r\n"
           "garbage line only\r\n\r\n\r\n"
           "Event: Newchannel\r\nthis line is junk\r\nChannel: DAHDI/i1/1-1\r\nBridgeId: \r\n\r\n").encode()
    cut = raw.index("é".encode()) + 1  # inside the two-byte é
    for chunk in (raw[:cut], raw[cut:cut + 7], raw[cut + 7:]):
        proto.data_received(chunk)
    assert proto.version == "9.0.0"
    assert [e["Event"] for e in factory.events] == ["UserEvent", "Newchannel"]
    assert factory.events[0]["Value"] == "café" and factory.events[1]["BridgeId"] == ""
    assert "garbage line only" in caplog.text and "this line is junk" in caplog.text


def test_a_flood_of_garbage_is_skipped_with_a_bounded_number_of_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agents.ami")
    proto, factory = _protocol()
    proto.data_received(b"Asterisk Call Manager/9.0.0\r\n")
    proto.data_received(b"junk without a colon\r\n\r\n" * 5000)
    proto.data_received(b"Event: UserEvent\r\nValue: still here\r\n\r\n")
    assert [e["Value"] for e in factory.events] == ["still here"], "good input after the flood is read"
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(lines) <= proto._budget.burst, len(lines)
    assert proto._budget.suppressed == 5000 - len(lines), "what is held back is counted"


def test_the_log_budget_refills_and_says_what_it_held_back() -> None:
    from agents.ratelimit import LogBudget
    now = [0.0]
    budget = LogBudget(burst=2, window_s=10, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == ["", "", None, None]
    now[0] = 10.0
    assert budget.take() == " (2 similar line(s) held back)" and budget.take() == "" and budget.take() is None
