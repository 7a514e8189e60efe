"""Lab AMI server calls and Originate over raw sockets, checked against the recorded field layouts."""

from __future__ import annotations

import re

import pytest

from lab.ami import LabAmiServer, NoCapacity, UnknownCall
from tests.support import async_wait_until

from .replay import collapse, load
from .test_ami_faults import watcher
from .test_ami_session import barrier

SNAPSHOT = ["Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName", "ConnectedLineNum",
            "ConnectedLineName", "Language", "AccountCode", "Context", "Exten", "Priority", "Uniqueid", "Linkedid"]


def recorded_schemas(name: str) -> dict[str, list[str]]:
    """Field names per event kind in a recording (first occurrence)."""
    out: dict[str, list[str]] = {}
    for step in load(name).steps:
        for m in step.replies:
            out.setdefault(m.name, collapse(m.keys))
    return out


@pytest.mark.asyncio
async def test_agent_call_events_have_the_recorded_layouts(lab: LabAmiServer) -> None:
    recorded = recorded_schemas("c3_events_direct_agent_call")
    client = await watcher(lab)
    call_id = lab.start_ivr_call(caller="13812345678")
    lab.transfer_to_agent(call_id, agent="2001")
    lab.end_call(call_id)
    got = await barrier(client)
    assert [m.name for m in got] == [
        "Newchannel", "DAHDIChannel", "Newstate",  # caller, answered by the IVR
        "Newchannel", "DAHDIChannel", "Newstate", "Newstate", "BridgeCreate", "BridgeEnter", "BridgeEnter",
        "HangupRequest", "BridgeLeave", "Hangup", "BridgeLeave", "BridgeDestroy", "Hangup"]
    for m in got:
        if m.name == "DAHDIChannel":
            assert m.keys == ["Event", "Privilege", *SNAPSHOT, "DAHDIGroup", "DAHDISpan", "DAHDIChannel"]
        else:
            assert collapse(m.keys) == recorded[m.name], m.name
    caller, agent = got[0].get("Channel"), got[3].get("Channel")
    assert re.fullmatch(r"DAHDI/i1/13812345678-[0-9a-f]+", caller)
    assert re.fullmatch(r"DAHDI/i[12]/2001-[0-9a-f]+", agent)
    assert re.fullmatch(r"\d{10}\.\d+", got[0].get("Uniqueid"))
    assert got[3].get("Linkedid") == got[0].get("Uniqueid")
    assert got[8].get("BridgeUniqueid") == got[9].get("BridgeUniqueid") and got[9].get("BridgeNumChannels") == "2"
    assert lab.host.calls == {} and lab.host.busy == {}
    await client.close()


@pytest.mark.asyncio
async def test_fax_channel_naming_follows_the_bearer_channels(lab: LabAmiServer) -> None:
    client = await watcher(lab, events="off")
    lab.start_fax_call()
    listing = await client.action({"Action": "CoreShowChannels"})
    assert listing[1].get("Channel") == "DAHDI/63-1" and listing[1].get("Application") == "ReceiveFAX"
    chans = await client.action({"Action": "DAHDIShowChannels", "DAHDIChannel": "63"})
    assert chans[1].keys == ["Event", "DAHDIChannel", "Channel", "Uniqueid", "AccountCode", "Signalling",
                             "SignallingCode", "Context", "DND", "Alarm", "Description", "ActionID"]
    assert chans[1].get("Signalling") == "FXS Kewlstart"
    for _ in range(3):
        lab.start_fax_call()
    with pytest.raises(NoCapacity):
        lab.start_fax_call()
    await client.close()


def test_set_calls_adjusts_exactly_and_checks_capacity() -> None:
    lab = LabAmiServer(spans=[(1, 30)], fax_channels=0)
    lab.set_calls(ivr=5, agent=3)
    assert lab.host.counts() == {"ivr": 5, "agent": 3, "fax": 0, "probe": 0} and lab.host.free_bearers() == 19
    lab.set_calls(ivr=1, agent=4)
    assert lab.host.counts()["ivr"] == 1 and lab.host.counts()["agent"] == 4 and lab.host.free_bearers() == 21
    with pytest.raises(NoCapacity):
        lab.set_calls(ivr=20, agent=10)
    lab.set_calls(ivr=0, agent=0)
    assert lab.host.calls == {} and lab.host.busy == {}
    with pytest.raises(UnknownCall):
        lab.end_call("ivr-999")


@pytest.mark.asyncio
async def test_originate_outcomes(lab: LabAmiServer) -> None:
    lab.set_dialplan(noanswer=["5550000"])
    client = await watcher(lab)

    async def originate(channel: str, timeout_ms: int = 15000) -> list:
        aid = f"o-{channel}"
        client.send({"Action": "Originate", "ActionID": aid, "Channel": channel, "Application": "Wait",
                     "Data": "0", "Timeout": str(timeout_ms), "Async": "true", "CallerID": '"t" <9000>'})
        msgs = await client.read_until(lambda m: m.name == "OriginateResponse" and m.get("ActionID") == aid)
        msgs = [m for m in msgs if m.get("ActionID") == aid]
        assert msgs[0].fields == [("Response", "Success"), ("ActionID", aid),
                                  ("Message", "Originate successfully queued")]
        return msgs

    ok = (await originate("Local/0123456@ccfo-linetest"))[-1]
    assert (ok.get("Response"), ok.get("Reason")) == ("Success", "4")
    assert ok.get("Channel").startswith("Local/0123456@ccfo-linetest-") and ok.get("Channel").endswith(";1")
    direct = (await originate("DAHDI/g1/0123456"))[-1]
    assert direct.get("Reason") == "4" and direct.get("Channel").startswith("DAHDI/i1/0123456-")
    missing = (await originate("Local/999@ccfo-linetest"))[-1]
    assert (missing.get("Response"), missing.get("Reason"), missing.get("Uniqueid"), missing.get("Channel")) == (
        "Failure", "0", "<unknown>", "Local/999@ccfo-linetest")
    noanswer = (await originate("DAHDI/g1/5550000", timeout_ms=100))[-1]
    assert (noanswer.get("Response"), noanswer.get("Reason")) == ("Failure", "3")
    lab.set_span_alarm(1, "red")
    lab.set_dchannel(2, False)
    down = (await originate("Local/0123456@ccfo-linetest"))[-1]
    assert (down.get("Response"), down.get("Reason")) == ("Failure", "0")
    sync = await client.action({"Action": "Originate", "Channel": "DAHDI/g1/1", "Application": "Wait", "Data": "0"})
    assert sync[0].fields[0::2] == [("Response", "Error"), ("Message", "Originate failed")]
    assert lab.actions_received["originate"] == 6
    await client.close()


@pytest.mark.asyncio
async def test_originate_response_is_never_delivered_with_events_off(lab: LabAmiServer) -> None:
    client = await watcher(lab, events="off")
    client.send({"Action": "Originate", "ActionID": "o", "Channel": "Local/1@x", "Application": "Wait",
                 "Data": "0", "Async": "true"})
    assert (await client.read()).get("Message") == "Originate successfully queued"
    await async_wait_until(lambda: lab.idle, timeout=5, describe=lab.snapshot)
    assert await barrier(client) == []
    await client.close()


@pytest.mark.asyncio
async def test_status_and_cli_channel_views(lab: LabAmiServer) -> None:
    lab.set_calls(ivr=1, agent=1)
    client = await watcher(lab, events="off")
    status = await client.action({"Action": "Status"})
    assert len(status) == 5 and status[-1].keys == ["Event", "ActionID", "EventList", "ListItems", "Items"]
    assert status[1].keys[:2] == ["Event", "Privilege"] and status[1].keys[-1] == "ActionID"
    concise = await client.action({"Action": "Command", "Command": "core show channels concise"})
    assert len(concise[0].fields) == 3 + 3 and all(v.count("!") == 13 for k, v in concise[0].fields if k == "Output")
    bridges = await client.action({"Action": "BridgeList"})
    assert [m.name for m in bridges] == ["Success", "BridgeListItem", "BridgeListComplete"]
    await client.close()
