"""SIP trunk reachability from AMI list answers (agents/ami/trunks.py), read from the recorded chan_sip
transcript (d7) and the constructed res_pjsip answer (tests/fixtures/asterisk-ami-constructed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agents.ami.message import AmiMessage
from agents.ami.model import HostModel
from agents.ami.trunks import TrunkTable, device_state, endpoint_state, parse_list, peer_state
from ccfo.domain.capacity import live_channels
from ccfo.domain.site import SipDriver, SipTrunk
from tests.recordings import AMI_FIXTURES, FIXTURES_ROOT, recording


def messages(path: Path, action_id: str) -> list[AmiMessage]:
    """The messages of one action in a raw AMI byte stream (CRLF lines, an empty line ends a message)."""
    out = []
    for block in recording(path).read_bytes().decode().split("\r\n\r\n"):
        pairs = [tuple(line.split(": ", 1)) if ": " in line else (line.rstrip(":"), "")
                 for line in block.split("\r\n") if line and not line.startswith("Asterisk Call Manager")]
        msg = AmiMessage.from_pairs(pairs)  # type: ignore[arg-type]
        if msg.action_id == action_id:
            out.append(msg)
    return out


def sippeers() -> list[AmiMessage]:
    return [m for m in messages(AMI_FIXTURES / "d7_chan_sip_peer_actions.rx.raw", "sippeers-002") if m.is_event]


def endpoints() -> list[AmiMessage]:
    path = FIXTURES_ROOT / "asterisk-ami-constructed" / "pjsipshowendpoints.rx.raw"
    return [m for m in messages(path, "pjsipshowendpoints-002") if m.is_event]


def test_the_recorded_sippeers_answer_lists_every_peer_with_its_status() -> None:
    """d7: four PeerEntry events (qualify=no: Status Unmonitored), then PeerlistComplete."""
    items = sippeers()
    assert [m.name for m in items] == ["PeerEntry"] * 4 + ["PeerlistComplete"]
    assert items[-1].get("listitems") == "4"
    parsed = parse_list(SipDriver.SIP, items)
    assert set(parsed) == {"agent1", "agent2", "agent3", "sipp"}
    assert parsed["sipp"] == ("up", "Unmonitored (qualify=no: reachability not probed)")


@pytest.mark.parametrize(("status", "state"), [
    ("OK (12 ms)", "up"), ("LAGGED (2100 ms)", "up"), ("UNREACHABLE", "down"), ("UNKNOWN", "unknown"),
    ("Unmonitored", "up"), ("gibberish", "unknown"), ("", "unknown"),
])
def test_chan_sip_peer_status_words(status: str, state: str) -> None:
    assert peer_state(status)[0] == state


@pytest.mark.parametrize(("device", "state"), [
    ("Not in use", "up"), ("In use", "up"), ("Busy", "up"), ("Ringing", "up"), ("On Hold", "up"),
    ("Unavailable", "down"), ("Invalid", "unknown"), ("Unknown", "unknown"), ("", "unknown"),
])
def test_pjsip_device_states(device: str, state: str) -> None:
    assert endpoint_state(device)[0] == state


def test_the_pjsip_endpoint_list_gives_each_endpoints_reachability() -> None:
    items = endpoints()
    assert [m.name for m in items] == ["EndpointList"] * 3 + ["EndpointListComplete"]
    parsed = parse_list(SipDriver.PJSIP, items)
    assert {n: s for n, (s, _) in parsed.items()} == {"carrier-a": "up", "carrier-b": "down", "pbx-link": "up"}
    assert parsed["carrier-b"][1] == "DeviceState Unavailable (no reachable contact)"


def test_malformed_items_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bad = [AmiMessage.from_pairs([("Event", "PeerEntry"), ("Status", "OK (3 ms)")]),  # no ObjectName
           AmiMessage.from_pairs([("Event", "PeerEntry"), ("ObjectName", "odd"), ("Status", "~~~")]),
           AmiMessage.from_pairs([("Event", "PeerEntry"), ("ObjectName", "good"), ("Status", "OK (3 ms)")])]
    with caplog.at_level(logging.WARNING, logger="agents.ami.trunks"):
        parsed = parse_list(SipDriver.SIP, bad)
    assert parsed == {"odd": ("unknown", "unrecognised peer status '~~~'"), "good": ("up", "OK (3 ms)")}
    assert "without ObjectName" in caplog.text and "'~~~'" in caplog.text


def test_trunk_table_channels_follow_the_lists() -> None:
    """C from trunks: only those up count; a trunk Asterisk does not list is down; a missing module takes
    all trunks of its driver down; after a reconnect nothing is known until listed again."""
    table = TrunkTable([SipTrunk("carrier-a", 30), SipTrunk("carrier-b", 20), SipTrunk("sipp", 10, SipDriver.SIP),
                        SipTrunk("gone", 5, SipDriver.SIP)])
    assert table.drivers == (SipDriver.PJSIP, SipDriver.SIP)
    assert not table.known and {t.state for t in table.status()} == {"unknown"}
    table.reconcile(SipDriver.PJSIP, endpoints())
    assert not table.known  # chan_sip not listed yet
    table.reconcile(SipDriver.SIP, sippeers())
    assert table.known
    states = {t.name: (t.state, t.detail) for t in table.status()}
    assert states["carrier-a"][0] == "up" and states["carrier-b"][0] == "down" and states["sipp"][0] == "up"
    assert states["gone"] == ("down", "not configured in Asterisk (sip)")
    assert live_channels((), (t.channels for t in table.status() if t.up)) == 30 + 10
    table.module_missing(SipDriver.PJSIP, "Invalid/unknown command: PJSIPShowEndpoints.")
    assert [t.state for t in table.status() if t.driver == "pjsip"] == ["down", "down"]
    assert table.status()[0].detail.startswith("res_pjsip not loaded")
    table.forget("not listed since the AMI connected")
    assert not table.known and {t.state for t in table.status()} == {"unknown"}


def test_trunk_channels_count_as_board_channels_for_x_and_y() -> None:
    """A call on a trunk holds a channel of C: the monitor widens the board pattern with the trunks'
    channel prefixes, so a caller on PJSIP/carrier-a bridged with an agent leg on it is one agent call."""
    table = TrunkTable([SipTrunk("carrier-a", 30), SipTrunk("old", 10, SipDriver.SIP)])
    pattern = table.channel_pattern()
    assert pattern is not None
    model = HostModel(f"(?:^DAHDI/)|{pattern}")
    rows = [("PJSIP/carrier-a-00000001", "b1"), ("PJSIP/carrier-a-00000002", "b1"), ("SIP/old-0000000a", ""),
            ("PJSIP/agent7-00000003", ""), ("PJSIP/carrier-ab-00000004", "")]
    model.reconcile_channels([AmiMessage.from_pairs([("Channel", c), ("BridgeId", b)]) for c, b in rows])
    counts = model.counts()
    assert (counts.ivr, counts.agent) == (1, 1)  # agent7 and carrier-ab are not trunk channels


@pytest.mark.parametrize(("code", "state"), [
    ("NOT_INUSE", "up"), ("INUSE", "up"), ("BUSY", "up"), ("RINGING", "up"), ("ONHOLD", "up"),
    ("UNAVAILABLE", "down"), ("INVALID", "unknown"), ("UNKNOWN", "unknown"), ("", "unknown"),
])
def test_device_state_codes(code: str, state: str) -> None:
    assert device_state(code)[0] == state


def test_device_states_stand_in_for_pjsipshowendpoints() -> None:
    """DeviceStateList: res_pjsip trunks from their PJSIP/NAME device; one Asterisk has no state for is unknown
    (not down: the list holds cached states only); a DeviceStateChange event moves a trunk at once."""
    table = TrunkTable([SipTrunk("carrier-a", 30), SipTrunk("carrier-b", 20), SipTrunk("sipp", 10, SipDriver.SIP)])
    items = [AmiMessage.from_pairs([("Event", "DeviceStateChange"), ("Device", "PJSIP/carrier-a"),
                                    ("State", "NOT_INUSE")]),
             AmiMessage.from_pairs([("Event", "DeviceStateChange"), ("Device", "SIP/sipp"), ("State", "UNAVAILABLE")])]
    table.reconcile_devices(items)
    states = {t.name: (t.state, t.detail) for t in table.status()}
    assert states["carrier-a"] == ("up", "device state NOT_INUSE")
    assert states["carrier-b"] == ("unknown", "no device state for PJSIP/carrier-b")
    assert states["sipp"][0] == "unknown"  # chan_sip peers are not read from device states
    down = AmiMessage.from_pairs([("Event", "DeviceStateChange"), ("Device", "PJSIP/carrier-a"),
                                  ("State", "UNAVAILABLE")])
    assert table.apply_device_event(down) and table.status()[0].state == "down"
    assert not table.apply_device_event(down)  # no change the second time
    other = AmiMessage.from_pairs([("Event", "DeviceStateChange"), ("Device", "PJSIP/agent7"), ("State", "INUSE")])
    assert not table.apply_device_event(other)
