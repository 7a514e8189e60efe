"""The lab AMI server's SIP trunk actions against the recorded chan_sip answer (d7) and the constructed
res_pjsip one, and the trunk control: reachability changes raise the events a real Asterisk raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ccfo.config.loader import load_config
from lab.ami.__main__ import parse_trunks
from lab.ami.control import ROUTES
from lab.ami.server import LabAmiServer
from lab.labconfig import LabLayout, build
from tests.recordings import FIXTURES_ROOT, recording

from .amiclient import Msg, RawAmi, parse_fields
from .replay import load

REPO = Path(__file__).resolve().parents[2]
Make = Callable[..., Awaitable[LabAmiServer]]
TRUNKS = [("carrier-1", "pjsip", 30), ("carrier-2", "sip", 10)]


def recorded(step_action: str, also: str = "") -> list[Msg]:
    """The recorded answer to the d7 step whose request is `step_action` (and holds the line `also`)."""
    rec = load("d7_chan_sip_peer_actions")
    return next(s.replies for s in rec.steps
                if f"Action: {step_action}\r\n".encode() in s.request and also.encode() in s.request)


def constructed_endpoints() -> list[Msg]:
    raw = recording(FIXTURES_ROOT / "asterisk-ami-constructed" / "pjsipshowendpoints.rx.raw").read_bytes()
    return [Msg(b, parse_fields(b)) for b in raw.split(b"\r\n\r\n") if b]


async def client(lab: LabAmiServer) -> RawAmi:
    ami = await RawAmi.connect(lab.port)
    await ami.login()
    return ami


@pytest.mark.asyncio
async def test_sippeers_has_the_recorded_shape(make_lab: Make) -> None:
    lab = await make_lab(spans=[], trunks=TRUNKS)
    answer = await (await client(lab)).action({"Action": "SIPpeers"})
    want = recorded("SIPpeers")
    assert [m.name for m in answer] == ["Success", "PeerEntry", "PeerlistComplete"]
    assert answer[0].keys == want[0].keys and answer[0].get("Message") == want[0].get("Message")
    assert answer[1].keys == want[1].keys  # every PeerEntry field, in the recorded order
    assert answer[2].keys == want[-1].keys and answer[2].get("ListItems") == "1"
    assert (answer[1].get("ObjectName"), answer[1].get("Status")) == ("carrier-2", "OK (12 ms)")


@pytest.mark.asyncio
async def test_sipshowpeer_of_an_unknown_peer_answers_like_asterisk(make_lab: Make) -> None:
    lab = await make_lab(spans=[], trunks=TRUNKS)
    answer = await (await client(lab)).action({"Action": "SIPshowpeer", "Peer": "nosuchpeer"})
    want = recorded("SIPshowpeer", "Peer: nosuchpeer")[0]
    assert want.get("Response") == "Error"
    assert answer[0].keys == want.keys and answer[0].get("Message") == want.get("Message")


@pytest.mark.asyncio
async def test_pjsipshowendpoints_has_the_documented_shape_and_follows_reachability(make_lab: Make) -> None:
    lab = await make_lab(spans=[], trunks=TRUNKS)
    ami = await client(lab)
    answer = await ami.action({"Action": "PJSIPShowEndpoints"})
    want = constructed_endpoints()
    assert [m.name for m in answer] == ["Success", "EndpointList", "EndpointListComplete"]
    assert [m.keys for m in (answer[0], answer[1], answer[2])] == [want[0].keys, want[1].keys, want[-1].keys]
    assert answer[1].get("DeviceState") == "Not in use"
    lab.set_trunk("carrier-1", False)
    assert (await ami.action({"Action": "PJSIPShowEndpoints"}))[1].get("DeviceState") == "Unavailable"


@pytest.mark.asyncio
async def test_without_the_module_the_actions_are_unknown(make_lab: Make) -> None:
    lab = await make_lab()  # the default DAHDI lab: no trunks, neither chan_sip nor res_pjsip
    ami = await client(lab)
    for action in ("SIPpeers", "PJSIPShowEndpoints"):
        answer = await ami.action({"Action": action})
        assert answer[0].get("Response") == "Error" and "Invalid/unknown command" in answer[0].get("Message")


@pytest.mark.asyncio
async def test_a_trunk_going_down_raises_its_status_event_and_takes_no_new_call(make_lab: Make) -> None:
    lab = await make_lab(spans=[], trunks=[("carrier-2", "sip", 2)])
    ami = await RawAmi.connect(lab.port)
    await ami.login(events="on")
    lab.set_trunk("carrier-2", False)
    event = (await ami.read_until(lambda m: m.name == "PeerStatus"))[-1]
    assert (event.get("Peer"), event.get("PeerStatus")) == ("SIP/carrier-2", "Unreachable")
    with pytest.raises(Exception, match="no free bearer channel"):
        lab.start_ivr_call()
    lab.set_trunk("carrier-2", True)
    call = lab.start_ivr_call()
    assert lab.host.calls[call].legs[0].name.startswith("SIP/carrier-2-")


def test_the_control_endpoint_switches_a_trunk() -> None:
    route = next(r for m, p, r in ROUTES if m == "POST" and p.match("/trunks/carrier-1"))
    calls: list[tuple[str, bool]] = []

    class Lab:
        def set_trunk(self, name: str, up: bool) -> None:
            calls.append((name, up))

    match: Any = next(p for m, p, _ in ROUTES if p.match("/trunks/carrier-1")).match("/trunks/carrier-1")
    assert route(Lab(), match, {"up": False}) == {"ok": True} and calls == [("carrier-1", False)]


def test_the_sip_lab_layout_turns_spans_into_trunks_and_validates(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path / "lab", telephony="sip")
    build(REPO / "config", lay)
    site = load_config(lay.config).site
    assert [(t.name, t.driver.value, t.channels) for t in site.host("ipc-a").trunks] == [
        ("carrier-1", "pjsip", 30), ("carrier-2", "sip", 30)]
    assert site.host("ipc-b").board.spans == () and site.host("ipc-b").channels == 30
    assert parse_trunks("carrier-1:pjsip:30,carrier-2:sip:30") == [("carrier-1", "pjsip", 30), ("carrier-2", "sip", 30)]
    with pytest.raises(ValueError, match="dahdi or sip"):
        build(REPO / "config", LabLayout(tmp_path / "other", telephony="isdn"))


@pytest.mark.asyncio
async def test_write_classes_refuse_like_manager_conf_and_devicestatelist_answers(make_lab: Make) -> None:
    """With the shipped user's `write = reporting,originate`: PJSIPShowEndpoints (system) is refused,
    SIPpeers (system, reporting) and DeviceStateList (call, reporting) answer."""
    lab = await make_lab(spans=[], trunks=TRUNKS, write_classes=["reporting", "originate"])
    ami = await client(lab)
    refused = await ami.action({"Action": "PJSIPShowEndpoints"})
    assert (refused[0].get("Response"), refused[0].get("Message")) == ("Error", "Permission denied")
    assert [m.name for m in await ami.action({"Action": "SIPpeers"})][-1] == "PeerlistComplete"
    devices = await ami.action({"Action": "DeviceStateList"})
    assert [(m.name, m.get("Device"), m.get("State")) for m in devices] == [
        ("Success", "", ""), ("DeviceStateChange", "PJSIP/carrier-1", "NOT_INUSE"),
        ("DeviceStateListComplete", "", "")]
    lab.set_trunk("carrier-1", False)
    assert (await ami.action({"Action": "DeviceStateList"}))[1].get("State") == "UNAVAILABLE"
