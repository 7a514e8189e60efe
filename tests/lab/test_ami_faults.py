"""Lab AMI server fault injection over raw sockets: span alarms, D-channel, board driver, shutdown."""

from __future__ import annotations

import pytest

from lab.ami import LabAmiServer
from lab.ami.channels import layout_spans
from tests.support import async_wait_until

from .amiclient import RawAmi
from .test_ami_session import barrier


async def watcher(lab: LabAmiServer, events: str = "on") -> RawAmi:
    client = await RawAmi.connect(lab.port)
    await client.login(events=events)
    if events == "on":
        await client.read_until(lambda m: m.name == "SuccessfulAuth")
    return client


def test_e1_layout_matches_dahdi_numbering() -> None:
    one, two = layout_spans([(1, 30), (2, 30)])
    assert (one.dchannel, two.dchannel) == (16, 47)
    assert one.bearer_channels == [*range(1, 16), *range(17, 32)] and len(two.bearer_channels) == 30
    (t1,) = layout_spans([(1, 23)])
    assert t1.dchannel == 24 and t1.bearer_channels == list(range(1, 24))


@pytest.mark.asyncio
@pytest.mark.parametrize(("report", "expected"), [
    ("all", ["Alarm", "SpanAlarm"] + ["Alarm"] * 29),
    ("spans", ["SpanAlarm"]),
    ("channels", ["Alarm"] * 30),
    ("none", []),
])
async def test_span_alarm_events_follow_reportalarms(make_lab, report: str, expected: list[str]) -> None:
    lab = await make_lab(reportalarms=report)
    client = await watcher(lab)
    lab.set_span_alarm(2, "red")
    got = await barrier(client)
    assert [m.name for m in got] == expected
    for m in got:
        if m.name == "Alarm":
            assert m.keys == ["Event", "Privilege", "DAHDIChannel", "Alarm"] and m.get("Alarm") == "Red Alarm"
            assert 32 <= int(m.get("DAHDIChannel")) <= 62 and m.get("DAHDIChannel") != "47"
        else:
            assert m.fields == [("Event", "SpanAlarm"), ("Privilege", "system,all"), ("Span", "2"),
                                ("Alarm", "Red Alarm")]
    lab.set_span_alarm(2, "clear")
    cleared = [m.name for m in await barrier(client)]
    assert cleared == [n + "Clear" for n in expected]
    await client.close()


@pytest.mark.asyncio
async def test_alarm_drops_the_calls_on_that_span_only(lab: LabAmiServer) -> None:
    on_one = lab.start_ivr_call(span=1)
    on_two = lab.start_ivr_call(span=2)
    client = await watcher(lab)
    lab.set_span_alarm(1, "blue")
    names = [m.name for m in await barrier(client)]
    assert names.count("Hangup") == 1 and "SpanAlarm" in names
    assert set(lab.host.calls) == {on_two} and on_one not in lab.host.calls
    spans = await client.action({"Action": "PRIShowSpans"})
    rows = [(m.get("Span"), m.get("Alarm"), m.get("Up")) for m in spans[1:-1]]
    assert rows == [("1", "Yes", "No"), ("2", "No", "Yes")]
    await client.close()


@pytest.mark.asyncio
async def test_dchannel_down_raises_no_event_only_prishowspans_shows_it(lab: LabAmiServer) -> None:
    client = await watcher(lab)
    lab.set_dchannel(1, False)
    assert await barrier(client) == []
    spans = await client.action({"Action": "PRIShowSpans", "Span": "1"})
    assert spans[1].fields == [("Event", "PRIShowSpans"), ("Span", "1"), ("DChannel", "16"), ("Order", "Primary"),
                               ("Active", "Yes"), ("Alarm", "No"), ("Up", "No"), ("ActionID", spans[0].get("ActionID"))]
    assert spans[-1].keys == ["Event", "ActionID", "EventList", "ListItems", "Items"]
    with pytest.raises(Exception, match="no free bearer channel on span 1"):
        lab.start_ivr_call(span=1)
    await client.close()


@pytest.mark.asyncio
async def test_driver_stop_and_start(lab: LabAmiServer) -> None:
    call = lab.start_agent_call()
    fax = lab.start_fax_call()
    client = await watcher(lab)
    lab.stop_driver()
    got = await barrier(client)
    assert [m.name for m in got].count("Hangup") == 3 and not lab.host.calls and {call, fax}.isdisjoint(lab.host.calls)
    alarms = [m for m in got if m.name in ("Alarm", "SpanAlarm")]
    assert len(alarms) == 60 + 4 + 3 and {m.get("Alarm") for m in alarms} == {"Not Open"}
    spans = await client.action({"Action": "PRIShowSpans"})
    assert spans[-1].get("ListItems") == "0" and spans[-1].get("Items") == "0"
    chans = await client.action({"Action": "DAHDIShowChannels"})
    assert len(chans) == 2 + 64 and {m.get("Alarm") for m in chans[1:-1]} == {"Not Open"}
    status = await client.action({"Action": "DAHDIShowStatus"})
    assert status[0].get("Message") == "No DAHDI detected"
    cli = await client.action({"Action": "Command", "Command": "dahdi show status"})
    assert cli[0].get("Response") == "Error"
    lab.start_driver()
    assert {m.name for m in await barrier(client)} == {"AlarmClear", "SpanAlarmClear"}
    spans = await client.action({"Action": "PRIShowSpans"})
    assert spans[-1].get("ListItems") == "2"
    await client.close()


@pytest.mark.asyncio
async def test_chan_dahdi_not_loaded_hides_dahdi_actions(make_lab) -> None:
    lab = await make_lab(chan_dahdi_loaded=False)
    client = await watcher(lab, events="off")
    answer = await client.action({"Action": "DAHDIShowChannels"})
    assert answer[0].get("Message").startswith("Invalid/unknown command: DAHDIShowChannels.")
    assert (await client.action({"Action": "ModuleCheck", "Module": "chan_dahdi.so"}))[0].get(
        "Message") == "Module not loaded"
    with pytest.raises(Exception, match="no free bearer channel"):
        lab.start_ivr_call()
    await client.close()


@pytest.mark.asyncio
async def test_shutdown_observer_gets_event_then_eof_and_server_stops_accepting(lab: LabAmiServer) -> None:
    lab.start_ivr_call()
    observer = await watcher(lab)
    commander = await watcher(lab, events="on")
    await observer.read_until(lambda m: m.name == "SuccessfulAuth")  # the commander's login
    commander.send({"Action": "Command", "Command": "core stop now", "ActionID": "stop"})
    rest = await observer.expect_eof()
    assert rest.endswith(b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: False\r\n\r\n")
    assert b"Event: SoftHangupRequest" in rest and b"Event: Hangup" in rest
    tail = await commander.expect_eof()  # the commanding session: the hangups, but no Response, no Shutdown
    assert b"Response:" not in tail and b"Event: Shutdown" not in tail and b"Event: Hangup" in tail
    with pytest.raises(OSError):
        await RawAmi.connect(lab.port)
    port = lab.port
    await lab.start()
    assert lab.port == port
    again = await watcher(lab, events="off")
    await again.close()


@pytest.mark.asyncio
async def test_restart_comes_back_on_the_same_port(lab: LabAmiServer) -> None:
    port = lab.port
    observer = await watcher(lab)
    await lab.shutdown(restart=True)
    assert (await observer.expect_eof()).endswith(b"Restart: True\r\n\r\n")
    await async_wait_until(lambda: lab.accepting, timeout=5, describe=lab.snapshot)
    client = await RawAmi.connect(port)
    await client.login()
    await client.close()


@pytest.mark.asyncio
async def test_kill_drops_everything_silently(lab: LabAmiServer) -> None:
    lab.set_calls(ivr=2, agent=1)
    client = await watcher(lab)
    await lab.kill()
    assert await client.expect_eof() == b""
    assert lab.host.calls == {} and lab.host.busy == {}
