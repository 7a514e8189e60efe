"""Lab AMI server, session level, over raw sockets: login gate, event masks, errors, freeze and stall."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from lab.ami import LabAmiServer

from .amiclient import Msg, RawAmi

_ids = itertools.count()


async def barrier(client: RawAmi) -> list[Msg]:
    """Everything the server sent before answering a Ping sent now (events are written in order)."""
    aid = f"barrier-{next(_ids)}"
    client.send({"Action": "Ping", "ActionID": aid})
    msgs = await client.read_until(lambda m: m.get("ActionID") == aid and m.keys[0] == "Response")
    return msgs[:-1]


@pytest.mark.asyncio
async def test_nothing_but_the_banner_before_login(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    lab.set_span_alarm(1, "red")
    lab.start_fax_call()
    lab.set_span_alarm(1, "clear")
    client.send({"Action": "Ping", "ActionID": "p1"})
    first = await client.read()
    assert client.received.startswith(b"Asterisk Call Manager/9.0.0\r\nResponse: Error\r\nActionID: p1\r\n")
    assert first.get("Message") == "Permission denied"
    client.send({"Action": "Login", "Username": "ccfo", "Secret": "ccfo-secret", "ActionID": "l"})
    answer = await client.read_until(lambda m: m.name == "SuccessfulAuth")
    assert [m.name for m in answer] == ["Success", "FullyBooted", "SuccessfulAuth"]  # no Events header: on
    assert answer[2].get("AccountID") == "ccfo" and answer[2].get("RemoteAddress").startswith("IPV4/TCP/127.0.0.1/")
    await client.close()


@pytest.mark.asyncio
async def test_failed_login_is_delayed_then_closed(make_lab) -> None:
    lab = await make_lab(login_fail_delay_s=0.3)
    watcher = await RawAmi.connect(lab.port)
    await watcher.login(events="on")
    await watcher.read_until(lambda m: m.name == "SuccessfulAuth")
    for user, secret in (("ccfo", "wrong"), ("nobody", "ccfo-secret")):
        client = await RawAmi.connect(lab.port)
        started = time.monotonic()
        client.send({"Action": "Login", "Username": user, "Secret": secret, "ActionID": "x"})
        answer = await client.read()
        assert time.monotonic() - started >= 0.29
        assert answer.fields == [("Response", "Error"), ("ActionID", "x"), ("Message", "Authentication failed")]
        assert await client.expect_eof() == b""
    assert [m.name for m in await barrier(watcher)] == []  # a failed login is no SuccessfulAuth


@pytest.mark.asyncio
async def test_event_masks_filter_by_class(lab: LabAmiServer) -> None:
    calls, system, off = [await RawAmi.connect(lab.port) for _ in range(3)]
    await calls.login(events="call")
    await system.login(events="system")
    await off.login(events="off")
    call_id = lab.start_ivr_call()
    lab.set_span_alarm(2, "yellow")
    assert {m.name for m in await barrier(calls)} == {"Newchannel", "DAHDIChannel", "Newstate"}
    got = await barrier(system)
    assert got[0].name == "FullyBooted" and {m.name for m in got[1:]} == {"Alarm", "SpanAlarm"}
    assert await barrier(off) == []
    calls.send({"Action": "Events", "EventMask": "off", "ActionID": "ev"})
    assert (await calls.read()).fields == [("Response", "Success"), ("ActionID", "ev"), ("Events", "Off")]
    lab.end_call(call_id)
    assert await barrier(calls) == []
    for client in (calls, system, off):
        await client.close()


@pytest.mark.asyncio
async def test_errors_and_case_insensitive_actions(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    await client.login()
    client.send(b"this line has no colon\r\nnor this one\r\n\r\n")
    assert (await client.read()).fields == [("Response", "Error"), ("Message", "Missing action in request")]
    client.send({"Action": "CcfoNoSuchAction", "ActionID": "u"})
    assert (await client.read()).get("Message") == (
        "Invalid/unknown command: CcfoNoSuchAction. Use Action: ListCommands to show available commands.")
    client.send({"action": "ping", "actionid": "lc"})
    pong = await client.read()
    assert pong.keys == ["Response", "ActionID", "Ping", "Timestamp"] and pong.get("Ping") == "Pong"
    listing = await client.action({"Action": "ListCommands"})
    assert len(listing) == 1 and listing[0].keys[:2] == ["Response", "ActionID"]
    assert listing[0].get("PRIShowSpans") == "Show status of PRI spans.  (Priv: <none>)"
    version = await client.action({"Action": "Command", "Command": "core show version"})
    assert version[0].get("Output").startswith("Asterisk 20.20.1 built by")
    unknown = await client.action({"Action": "Command", "Command": "frobnicate the spans"})
    assert unknown[0].get("Response") == "Error"
    assert "No such command 'frobnicate the spans'" in unknown[0].get("Output")
    client.send({"Action": "Logoff", "ActionID": "bye"})
    assert (await client.read()).get("Message") == "Thanks for all the fish."
    assert await client.expect_eof() == b""


@pytest.mark.asyncio
async def test_astdb_answers(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    await client.login()
    assert (await client.action({"Action": "DBPut", "Family": "ccfo", "Key": "k", "Val": "v"}))[0].get(
        "Message") == "Updated database successfully"
    got = await client.action({"Action": "DBGet", "Family": "ccfo", "Key": "k"})
    assert [m.name for m in got] == ["Success", "DBGetResponse", "DBGetComplete"]
    assert got[1].keys == ["Event", "Family", "Key", "Val", "ActionID"] and got[1].get("Val") == "v"
    assert (await client.action({"Action": "DBDel", "Family": "ccfo", "Key": "k"}))[0].get(
        "Message") == "Key deleted successfully"
    assert (await client.action({"Action": "DBGet", "Family": "ccfo", "Key": "k"}))[0].get(
        "Message") == "Database entry not found"
    assert (await client.action({"Action": "DBDel", "Family": "ccfo", "Key": "k"}))[0].get(
        "Message") == "Database entry could not be deleted"
    assert lab.host.astdb == {}
    await client.close()


@pytest.mark.asyncio
async def test_frozen_server_answers_nothing_until_thawed(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    await client.login(events="on")
    await client.read_until(lambda m: m.name == "SuccessfulAuth")
    lab.set_frozen(True)
    client.send({"Action": "Ping", "ActionID": "frozen"})
    with pytest.raises(TimeoutError):
        await client.read(timeout=0.2)  # the absence of an answer is the point: a deadline, not a sleep
    lab.set_frozen(False)
    assert (await client.read()).get("ActionID") == "frozen"
    await client.close()


@pytest.mark.asyncio
async def test_stalled_action_is_counted_but_never_answered(lab: LabAmiServer) -> None:
    lab.stall_actions(["DBPut"])
    client = await RawAmi.connect(lab.port)
    await client.login()
    client.send({"Action": "DBPut", "Family": "f", "Key": "k", "Val": "v", "ActionID": "stuck"})
    assert [m.get("ActionID") for m in await barrier(client)] == []
    assert lab.actions_received["dbput"] == 1 and lab.host.astdb == {}
    await client.close()


@pytest.mark.asyncio
async def test_garbage_injection_reaches_logged_in_sessions(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    await client.login()
    lab.inject_raw(b"garbage without colon\r\n\r\n")
    got = await barrier(client)
    assert [m.raw for m in got] == [b"garbage without colon\r\n\r\n"]
    await client.close()


@pytest.mark.asyncio
async def test_sessions_dropped_and_server_still_listening(lab: LabAmiServer) -> None:
    client = await RawAmi.connect(lab.port)
    await client.login()
    lab.drop_sessions()
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await client.read()
    again = await RawAmi.connect(lab.port)
    await again.login()
    await again.close()
