"""SIP trunk list actions on the lab server: `SIPpeers` / `SIPshowpeer` (chan_sip) and `PJSIPShowEndpoints`
(res_pjsip), shaped like a real Asterisk 20.

`SIPpeers` and `SIPshowpeer` follow the recorded transcript d7 (field names and order, the list framing,
`Peer ... not found.`); a reachable trunk reads `OK (12 ms)` (qualify on), an unreachable one
`UNREACHABLE`. `PJSIPShowEndpoints` follows the Asterisk documentation of `EndpointList` (no recording
exists: tests/fixtures/asterisk-ami-constructed): DeviceState `Not in use` / `In use` while reachable,
`Unavailable` when not, and `No endpoints found` with no endpoint. The actions exist only while their
module is loaded (chan_sip, res_pjsip), else the generic unknown-command error answers.
`DeviceStateList` (res_manager_devicestate, always loaded) lists `DeviceStateChange` events with the
`ast_devstate_str` codes: a pjsip trunk reads `NOT_INUSE` / `INUSE` while reachable, `UNAVAILABLE` when not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import wire
from .channels import LabTrunk

if TYPE_CHECKING:
    from .actions import Handler, Headers
    from .session import AmiSession


def device_code(trunk: LabTrunk, busy: bool) -> str:
    return "UNAVAILABLE" if not trunk.reachable else "INUSE" if busy else "NOT_INUSE"


def _peer_status(trunk: LabTrunk) -> str:
    return "OK (12 ms)" if trunk.reachable else "UNREACHABLE"


def _peer_entry(trunk: LabTrunk) -> list[tuple[str, str]]:
    return [("Channeltype", "SIP"), ("ObjectName", trunk.name), ("ChanObjectType", "peer"),
            ("IPaddress", "192.0.2.1"), ("IPport", "5060"), ("Dynamic", "no"), ("AutoForcerport", "yes"),
            ("Forcerport", "no"), ("AutoComedia", "no"), ("Comedia", "no"), ("VideoSupport", "no"),
            ("TextSupport", "no"), ("ACL", "no"), ("Status", _peer_status(trunk)), ("RealtimeDevice", "no"),
            ("Description", ""), ("Accountcode", "")]


async def sip_peers(s: AmiSession, h: Headers, aid: str) -> None:
    peers = [t for t in s.server.host.trunks.values() if t.driver == "sip"]
    out = [wire.list_start("Peer status list will follow", aid)]
    out += [wire.list_item("PeerEntry", _peer_entry(t), aid) for t in peers]
    out.append(wire.list_complete("PeerlistComplete", len(peers), aid))
    s.write(b"".join(out))


async def sip_show_peer(s: AmiSession, h: Headers, aid: str) -> None:
    name = wire.header(h, "Peer")
    if not name:
        s.write(wire.error("Peer: <name> missing.", aid))
        return
    trunk = s.server.host.trunks.get(name)
    if trunk is None or trunk.driver != "sip":
        s.write(wire.error(f"Peer {name} not found.", aid) + b"\r\n")  # d7: one stray CRLF follows
        return
    s.write(wire.response("Success", None, aid, ("Channeltype", "SIP"), ("ObjectName", trunk.name),
                          ("ChanObjectType", "peer"), ("Context", "from-trunk"), ("Call-limit", str(trunk.channels)),
                          ("ToHost", "192.0.2.1"), ("Address-IP", "192.0.2.1"), ("Address-Port", "5060"),
                          ("Status", _peer_status(trunk)), ("QualifyFreq", "60000 ms"), ("Description", "")))


async def pjsip_show_endpoints(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    endpoints = [t for t in host.trunks.values() if t.driver == "pjsip"]
    if not endpoints:
        s.write(wire.error("No endpoints found", aid))
        return
    out = [wire.list_start("A listing of Endpoints follows, presented as EndpointList events", aid)]
    for t in endpoints:
        busy = [name for name in host.channels if name.startswith(t.prefix)]
        state = "Unavailable" if not t.reachable else "In use" if busy else "Not in use"
        out.append(wire.list_item("EndpointList", [
            ("ObjectType", "endpoint"), ("ObjectName", t.name), ("Transport", "transport-udp"), ("Aor", t.name),
            ("Auths", ""), ("OutboundAuths", f"{t.name}-auth"), ("Contacts", f"{t.name}/sip:192.0.2.1:5060,"),
            ("DeviceState", state), ("ActiveChannels", ",".join(busy)),
        ], aid))
    out.append(wire.list_complete("EndpointListComplete", len(endpoints), aid))
    s.write(b"".join(out))


async def device_state_list(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    devices = [(f"PJSIP/{t.name}", device_code(t, host.trunk_busy(t) > 0)) for t in host.trunks.values()
               if t.driver == "pjsip"]
    out = [wire.list_start("Device State Changes will follow", aid)]
    out += [wire.list_item("DeviceStateChange", [("Device", d), ("State", st)], aid) for d, st in devices]
    out.append(wire.list_complete("DeviceStateListComplete", len(devices), aid))
    s.write(b"".join(out))


SIP_ACTIONS: dict[str, tuple[Handler, str, str]] = {
    "SIPpeers": (sip_peers, "List SIP peers (text format).", "system,reporting,all"),
    "SIPshowpeer": (sip_show_peer, "show SIP peer (text format).", "system,reporting,all"),
}
PJSIP_ACTIONS: dict[str, tuple[Handler, str, str]] = {
    "PJSIPShowEndpoints": (pjsip_show_endpoints, "Lists PJSIP endpoints.", "system,all"),
}
DEVICE_ACTIONS: dict[str, tuple[Handler, str, str]] = {
    "DeviceStateList": (device_state_list, "List the current known device states.", "call,reporting,all"),
}
