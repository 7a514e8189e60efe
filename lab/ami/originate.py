"""Originate on the simulated host: which channels appear, whether the call is answered, what it reports.

The lab's tiny dialplan: `Local/<exten>@<context>` dials `<exten>` out over the board (so it needs a
healthy span with a free bearer channel) unless `<exten>` is one of the host's `missing_extensions`;
`DAHDI/g1/<number>` (also `r<n>`, `i<span>`, `<channo>`) dials directly. A number in
`noanswer_numbers` rings until the Originate `Timeout`. Outcomes follow the fixtures: answered ->
OriginateResponse Success, Reason 4; no channel / no such extension -> Failure, Reason 0; no answer ->
Failure, Reason 3; on failure `Channel:` is the requested string and `Uniqueid: <unknown>` (e2, e5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .channels import UNKNOWN, Call, Channel, hangup_fields
from .host import LabError, TelephonyHost

_LOCAL = re.compile(r"^Local/(?P<exten>[^@/]+)@(?P<context>[^/]+?)(?:/n)?$")
_DAHDI = re.compile(r"^DAHDI/(?:(?P<group>[gGrR]\d+)|i(?P<span>\d+)|(?P<chan>\d+))/(?P<number>[^/]+)$")
_CALLER_ID = re.compile(r'^\s*(?:"(?P<qname>[^"]*)"|(?P<name>[^<]*?))\s*<(?P<num>[^>]*)>\s*$')
MAX_HOLD_S = 3600.0


@dataclass
class OriginateRequest:
    channel: str
    application: str = ""
    data: str = ""
    context: str = ""
    exten: str = ""
    caller_id: str = ""
    timeout_ms: int = 30000
    action_id: str = ""


@dataclass
class Attempt:
    """The channels created so far and the outcome decided for them: answer, fail or noanswer."""

    request: OriginateRequest
    outcome: str
    local: list[Channel] = field(default_factory=list)
    dahdi: Channel | None = None


def parse_caller_id(text: str) -> tuple[str, str]:
    """`"ccfo probe" <9000>` -> (name, number); a bare number is just the number."""
    m = _CALLER_ID.match(text or "")
    if not m:
        return UNKNOWN, (text.strip() or UNKNOWN)
    name = (m.group("qname") if m.group("qname") is not None else m.group("name") or "").strip()
    return name or UNKNOWN, m.group("num").strip() or UNKNOWN


def _dial_out(host: TelephonyHost, number: str, span_no: int | None, caller: tuple[str, str],
              linked: Channel | None) -> Channel | None:
    try:
        chan = host.bearer_channel(number, exten=number, context="ccfo-linetest", caller=caller[1],
                                   span_no=span_no, linked=linked)
    except LabError:
        return None
    chan.caller_name = caller[0]
    return chan


def originate_start(host: TelephonyHost, req: OriginateRequest) -> Attempt:
    """Create the channels of an originate and decide its outcome (events for creation go out now)."""
    caller = parse_caller_id(req.caller_id)
    local = _LOCAL.match(req.channel)
    if local:
        exten, context = local.group("exten"), local.group("context")
        base = f"Local/{exten}@{context}-{next(host.local_seq):08x}"
        uid1, uid2 = host.new_uniqueid(), host.new_uniqueid()
        one = host.add_channel(Channel(f"{base};1", uid1, uid1, context, exten, UNKNOWN))
        two = host.add_channel(Channel(f"{base};2", uid2, uid1, context, exten, UNKNOWN, state=4))
        for chan in (one, two):
            chan.caller_name, chan.caller_num = caller
            chan.connected_name, chan.connected_num = caller
        attempt = Attempt(req, "fail", [one, two])
        if exten in host.missing_extensions:
            return attempt
        attempt.dahdi = _dial_out(host, exten, None, caller, one)
        number = exten
    else:
        direct = _DAHDI.match(req.channel)
        if not direct or not host.board_up():
            return Attempt(req, "fail")
        number, span_no = direct.group("number"), None
        if direct.group("span"):
            span_no = int(direct.group("span"))
        elif direct.group("chan"):
            span = host.span_of(int(direct.group("chan")))
            if span is None:
                return Attempt(req, "fail")
            span_no = span.number
        if span_no is not None and span_no not in host.spans:
            return Attempt(req, "fail")
        attempt = Attempt(req, "fail", [], _dial_out(host, number, span_no, caller, None))
    if attempt.dahdi is not None:
        if number in host.noanswer_numbers:
            host.set_state(attempt.dahdi, 5)
            attempt.outcome = "noanswer"
        else:
            attempt.outcome = "answer"
    return attempt


def _originate_response(host: TelephonyHost, req: OriginateRequest, result: str, channel: str,
                        reason: int, uniqueid: str) -> None:
    name, num = parse_caller_id(req.caller_id)
    fields = [("ActionID", req.action_id)] if req.action_id else []
    fields += [("Response", result), ("Channel", channel)]
    if req.application:
        fields += [("Application", req.application), ("Data", req.data)]
    else:
        fields += [("Context", req.context), ("Exten", req.exten)]
    fields += [("Reason", str(reason)), ("Uniqueid", uniqueid), ("CallerIDNum", num), ("CallerIDName", name)]
    host.emit("OriginateResponse", "call", fields)


def originate_finish(host: TelephonyHost, attempt: Attempt, *, emit_response: bool) -> bool:
    """Answer or fail the attempt; only an Async originate reports an OriginateResponse."""
    req = attempt.request
    if attempt.outcome == "answer" and attempt.dahdi is not None:
        host.set_state(attempt.dahdi, 6)
        for chan in reversed(attempt.local):
            host.set_state(chan, 6)
        first = attempt.local[0] if attempt.local else attempt.dahdi
        first.application, first.app_data = req.application, req.data
        call = Call(host.new_call_id("probe"), "probe", [*attempt.local, attempt.dahdi])
        host.calls[call.call_id] = call
        if emit_response:
            _originate_response(host, req, "Success", first.name, 4, first.uniqueid)
        hold = 0.0
        if req.application.lower() == "wait":
            try:
                hold = min(MAX_HOLD_S, max(0.0, float(req.data or 0)))
            except ValueError:
                hold = 0.0
        host.schedule(hold * host.time_scale, lambda: _end_probe(host, call.call_id))
        return True
    cause, reason = (19, 3) if attempt.outcome == "noanswer" else (0, 0)
    if attempt.dahdi is not None and attempt.local:
        _hangup(host, attempt.dahdi, cause)
    if len(attempt.local) == 2:
        _hangup(host, attempt.local[1], 0)
    if emit_response:
        _originate_response(host, req, "Failure", req.channel, reason, UNKNOWN)
    if attempt.dahdi is not None and not attempt.local:
        _hangup(host, attempt.dahdi, cause)
    if attempt.local:
        _hangup(host, attempt.local[0], 0)
    return False


def _hangup(host: TelephonyHost, chan: Channel, cause: int) -> None:
    host.emit("Hangup", "call", hangup_fields(chan, cause))
    host.release(chan)


def _end_probe(host: TelephonyHost, call_id: str) -> None:
    """The Wait is over: the Local pair unwinds as in fixture e1, then the outbound board leg."""
    call = host.calls.pop(call_id, None)
    if call is None:
        return
    *local, dahdi = call.legs
    if len(local) == 2:
        one, two = local
        host.emit("HangupRequest", "call", [*two.snapshot(), ("Cause", "0")])
        _hangup(host, one, 0)
        host.emit("SoftHangupRequest", "call", [*two.snapshot(), ("Cause", "16")])
        _hangup(host, two, 0)
    host.emit("SoftHangupRequest", "call", [*dahdi.snapshot(), ("Cause", "16")])
    _hangup(host, dahdi, 16)
