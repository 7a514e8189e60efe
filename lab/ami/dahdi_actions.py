"""chan_dahdi's AMI actions on the lab server: PRIShowSpans, DAHDIShowChannels, DAHDIShowStatus, ...

They exist only while chan_dahdi is "loaded" (the server answers the generic unknown-command error
otherwise, fixture g1). Field sets and error texts are those of `shared/reference/ami-dahdi-pri.md`
and fixture g2. With the DAHDI driver stopped, PRIShowSpans reports no spans, DAHDIShowChannels lists
the channels as `Not Open`, and DAHDIShowStatus says `No DAHDI detected`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import wire
from .channels import SIG_FAX, SIG_PRI, alarm_short, alarm_text

if TYPE_CHECKING:
    from .actions import Handler, Headers
    from .session import AmiSession

_LEVELS = {"off", "on", "hex", "intense"}


async def pri_show_spans(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    try:
        only = int(wire.header(h, "Span") or 0)
    except ValueError:
        only = 0
    spans = [sp for sp in host.spans.values() if not only or sp.number == only] if host.driver_running else []
    out = [wire.list_start("Span status will follow", aid)]
    for sp in spans:
        out.append(wire.list_item("PRIShowSpans", [
            ("Span", str(sp.number)), ("DChannel", str(sp.dchannel)), ("Order", "Primary"), ("Active", "Yes"),
            ("Alarm", "Yes" if sp.alarm else "No"), ("Up", "Yes" if sp.alarm == 0 and sp.dchannel_up else "No"),
        ], aid, id_last=True))
    out.append(wire.list_complete("PRIShowSpansComplete", len(spans), aid, legacy_items=True))
    s.write(b"".join(out))


async def dahdi_show_channels(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    try:
        only = int(wire.header(h, "DAHDIChannel") or 0)
    except ValueError:
        only = 0
    rows = [(c, SIG_PRI, "from-trunk") for sp in host.spans.values() for c in sp.bearer_channels]
    rows += [(c, SIG_FAX, "fax-in") for c in host.fax_channels]
    rows = [r for r in rows if not only or r[0] == only]
    out = [wire.list_start("DAHDI channel status will follow", aid)]
    for channo, (sig, code), context in rows:
        fields = [("DAHDIChannel", str(channo))]
        owner = host.busy.get(channo)
        if owner is not None:
            fields += [("Channel", owner.name), ("Uniqueid", owner.uniqueid), ("AccountCode", "")]
        fields += [("Signalling", sig), ("SignallingCode", str(code)), ("Context", context),
                   ("DND", "Enabled" if channo in host.dnd else "Disabled"),
                   ("Alarm", alarm_text(host.channel_alarm(channo))), ("Description", "")]
        out.append(wire.list_item("DAHDIShowChannels", fields, aid, id_last=True))
    out.append(wire.list_complete("DAHDIShowChannelsComplete", len(rows), aid, legacy_items=True))
    s.write(b"".join(out))


async def dahdi_show_status(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    if not host.driver_running:
        s.write(wire.error("No DAHDI detected", aid))
        return
    rows = [(sp.number, f"T4XXP (PCI) Card 0 Span {sp.number}", alarm_short(sp.alarm), "CCS", "HDB3", "CRC4")
            for sp in host.spans.values()]
    if host.fax_channels:
        rows.append((host.fax_span, f"Wildcard TDM400P REV I Board {host.fax_span}", "OK", "CAS", "Unk", ""))
    out = [wire.list_start("DAHDI span statuses will follow", aid)]
    for span, desc, alarms, framing, coding, options in rows:
        out.append(wire.list_item("DAHDIShowStatus", [
            ("Span", str(span)), ("Description", desc), ("Alarms", alarms), ("IRQ", "0"), ("bpviol", "0"),
            ("CRC", "0"), ("Framing", framing), ("Coding", coding), ("Options", options),
            ("LBO", "0 db (CSU)/0-133 feet (DSX-1)"),
        ], aid, id_last=True))
    out.append(wire.list_complete("DAHDIShowStatusComplete", len(rows), aid, legacy_items=True))
    s.write(b"".join(out))


async def dahdi_restart(s: AmiSession, h: Headers, aid: str) -> None:
    host = s.server.host
    if not host.driver_running and (host.spans or host.fax_channels):
        s.write(wire.error("Failed rereading DAHDI configuration", aid))
        return
    for call in list(host.calls.values()):
        if any(c.tech == "DAHDI" for c in call.legs):
            host.teardown(call, cause=16, request="SoftHangupRequest", request_cause=16)
    s.write(wire.response("Success", "DAHDIRestart: Success", aid))


def _channel(s: AmiSession, h: Headers, aid: str) -> int | None:
    """The DAHDIChannel parameter as a configured channel number, answering the error otherwise."""
    text = wire.header(h, "DAHDIChannel")
    if not text:
        s.write(wire.error("No channel specified", aid))
        return None
    digits = text[: len(text) - len(text.lstrip("0123456789"))]
    host = s.server.host
    known = {c for sp in host.spans.values() for c in sp.bearer_channels} | set(host.fax_channels)
    if not digits or int(digits) not in known:
        s.write(wire.error("No such channel", aid))
        return None
    return int(digits)


def _dnd(enable: bool) -> Handler:
    async def handler(s: AmiSession, h: Headers, aid: str) -> None:
        channo = _channel(s, h, aid)
        if channo is None:
            return
        host = s.server.host
        (host.dnd.add if enable else host.dnd.discard)(channo)
        s.write(wire.response("Success", f"DND {'Enabled' if enable else 'Disabled'}", aid))
        s.server.broadcast("DNDState", "system", [("DAHDIChannel", str(channo)),
                                                 ("Status", "enabled" if enable else "disabled")])
    return handler


def _analog(name: str) -> Handler:
    async def handler(s: AmiSession, h: Headers, aid: str) -> None:
        channo = _channel(s, h, aid)
        if channo is None:
            return
        host = s.server.host
        if channo not in host.fax_channels:
            s.write(wire.error("Channel signaling is not analog", aid))
            return
        owner = host.busy.get(channo)
        if name == "DAHDIHangup" and owner is not None:
            call = next((c for c in host.calls.values() if owner in c.legs), None)
            if call is not None:
                host.teardown(call, cause=16, request="HangupRequest", request_cause=16)
        s.write(wire.response("Success", name, aid))
    return handler


async def dahdi_dial_offhook(s: AmiSession, h: Headers, aid: str) -> None:
    if not wire.header(h, "DAHDIChannel"):
        s.write(wire.error("No channel specified", aid))
        return
    if not wire.header(h, "Number"):
        s.write(wire.error("No number specified", aid))
        return
    channo = _channel(s, h, aid)
    if channo is None:
        return
    if channo not in s.server.host.busy:
        s.write(wire.error("Channel does not have it's owner", aid))
        return
    s.write(wire.response("Success", "DAHDIDialOffhook", aid))


async def pri_debug_set(s: AmiSession, h: Headers, aid: str) -> None:
    span_text, level = wire.header(h, "Span"), wire.header(h, "Level").lower()
    if not span_text:
        s.write(wire.error("'Span' was not specified", aid))
    elif not level:
        s.write(wire.error("'Level' was not specified", aid))
    elif level not in _LEVELS and not level.isdigit():
        s.write(wire.error("Invalid value for 'Level'", aid))
    elif not span_text.isdigit():
        s.write(wire.error("Invalid value for 'Span'", aid))
    elif int(span_text) not in s.server.host.spans or not s.server.host.driver_running:
        s.write(wire.error("No PRI running on requested span", aid))
    else:
        s.write(wire.response("Success", "Debug level set for requested span", aid))


DAHDI_ACTIONS: dict[str, tuple[Handler, str, str]] = {
    "PRIShowSpans": (pri_show_spans, "Show status of PRI spans.", "<none>"),
    "DAHDIShowChannels": (dahdi_show_channels, "Show status of DAHDI channels.", "<none>"),
    "DAHDIShowStatus": (dahdi_show_status, "Show status of DAHDI spans.", "<none>"),
    "DAHDIRestart": (dahdi_restart, "Fully Restart DAHDI channels (terminates calls).", "<none>"),
    "DAHDIDNDon": (_dnd(True), "Toggle DAHDI channel Do Not Disturb status ON.", "<none>"),
    "DAHDIDNDoff": (_dnd(False), "Toggle DAHDI channel Do Not Disturb status OFF.", "<none>"),
    "DAHDIHangup": (_analog("DAHDIHangup"), "Hangup DAHDI Channel.", "<none>"),
    "DAHDITransfer": (_analog("DAHDITransfer"), "Transfer DAHDI Channel.", "<none>"),
    "DAHDIDialOffhook": (dahdi_dial_offhook, "Dial over DAHDI channel while offhook.", "<none>"),
    "PRIDebugSet": (pri_debug_set, "Set PRI debug levels for a span", "<none>"),
}
