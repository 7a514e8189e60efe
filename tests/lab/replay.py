"""Loading the recorded Asterisk transcripts and comparing the lab server's answers with them.

A recording is cut into steps: the bytes the client sent (one message) and what Asterisk sent back
before the client's next message, plus whether Asterisk closed the socket. The `.txt` view gives the
cut (its `### >>> client` / `### <<< asterisk` markers); the `.rx.raw` / `.tx.raw` files give the
exact bytes. Comparison is about framing and field names, not values that differ by nature
(Uniqueid, timestamps, addresses), see `compare_step`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tests.recordings import AMI_FIXTURES, recording

from .amiclient import BANNER, Msg, parse_fields

FIXTURES = AMI_FIXTURES
# Events the lab models; recorded events outside this set (VarSet, Newexten, DialBegin, ...) are ignored.
MODELED = frozenset({
    "FullyBooted", "SuccessfulAuth", "Shutdown", "Newchannel", "Newstate", "Hangup", "HangupRequest",
    "SoftHangupRequest", "BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "OriginateResponse",
    "Alarm", "AlarmClear", "SpanAlarm", "SpanAlarmClear", "DAHDIChannel", "DNDState", "Load", "Unload",
})
# Events a DAHDI host sends that a chan_sip recording cannot contain.
LAB_ONLY = frozenset({"DAHDIChannel"})
# Fields whose values must match too (everything else: names and order only).
VALUE_KEYS = frozenset({"Response", "Message", "EventList", "Event", "ListItems", "Items", "ActionID",
                        "Privilege", "Ping", "Shutdown", "Restart", "Reason", "Status", "Events"})


@dataclass
class Step:
    request: bytes
    action_id: str
    replies: list[Msg] = field(default_factory=list)
    eof: bool = False


@dataclass
class Recording:
    name: str
    banner: bytes
    steps: list[Step]


def load(name: str) -> Recording:
    txt = recording(FIXTURES / f"{name}.txt").read_text().split("\n")
    rx = recording(FIXTURES / f"{name}.rx.raw").read_bytes()
    tx = recording(FIXTURES / f"{name}.tx.raw").read_bytes()
    banner, _, rest = rx.partition(b"\r\n")
    replies = [Msg(m + b"\r\n\r\n", parse_fields(m.strip(b"\r\n")))
               for m in rest.split(b"\r\n\r\n") if m.strip(b"\r\n")]
    requests = [m + b"\r\n\r\n" for m in tx.split(b"\r\n\r\n") if m.strip()]
    steps: list[Step] = []
    server_seen = 0
    for line in txt:
        if re.match(r"^### >>> client \+[\d.]+s$", line):
            req = requests[len(steps)]
            aid = next((v for k, v in parse_fields(req[:-4]) if k.lower() == "actionid"), "")
            steps.append(Step(req, aid))
        elif re.match(r"^### <<< asterisk \+[\d.]+s$", line):
            if server_seen and steps:  # the first server chunk is the banner
                steps[-1].replies.append(replies[server_seen - 1])
            server_seen += 1
        elif re.match(r"^### <<< asterisk \+[\d.]+s: connection closed", line) and steps:
            steps[-1].eof = True
    assert len(steps) == len(requests) and server_seen - 1 == len(replies), name
    return Recording(name, banner + b"\r\n", steps)


def solicited(msg: Msg, action_id: str) -> bool:
    """The answer to the step's own request: its Response and list items (OriginateResponse is a broadcast)."""
    if msg.keys[0] == "Response":
        return msg.get("ActionID") == action_id
    return bool(action_id) and msg.get("ActionID") == action_id and msg.name != "OriginateResponse"


def collapse(keys: list[str]) -> list[str]:
    """Field names with consecutive repeats folded (Command output lines vary in number)."""
    out: list[str] = []
    for key in keys:
        if not out or out[-1] != key:
            out.append(key)
    return out


def compare_step(step: Step, lab: list[Msg]) -> list[str]:
    """Differences between a recorded step and the lab's answer to the same request ([] if none)."""
    problems: list[str] = []
    rec_sol = [m for m in step.replies if solicited(m, step.action_id)]
    lab_sol = [m for m in lab if solicited(m, step.action_id)]
    if [m.name for m in rec_sol] != [m.name for m in lab_sol]:
        rec_names, lab_names = [m.name for m in rec_sol], [m.name for m in lab_sol]
        problems.append(f"answer messages differ: recorded {rec_names}, lab {lab_names}")
    for rec, got in zip(rec_sol, lab_sol, strict=False):
        problems += _compare_msg(rec, got)
    if step.replies and lab and solicited(step.replies[0], step.action_id) and not solicited(lab[0], step.action_id):
        problems.append(f"the answer must come first, lab sent {lab[0].name} first")
    rec_ev = [m for m in step.replies if not solicited(m, step.action_id) and m.name in MODELED]
    lab_ev = [m for m in lab if not solicited(m, step.action_id)]
    unknown = sorted({m.name for m in lab_ev} - MODELED)
    if unknown:
        problems.append(f"lab sent events outside the modelled set: {unknown}")
    rec_names = _first_seen(rec_ev)
    lab_names = [n for n in _first_seen(lab_ev) if n not in LAB_ONLY or n in rec_names]
    if rec_names != lab_names:
        problems.append(f"event kinds (first-seen order) differ: recorded {rec_names}, lab {lab_names}")
    schemas: dict[str, list[list[str]]] = {}
    for m in rec_ev:
        schemas.setdefault(m.name, []).append(collapse(m.keys))
    for m in lab_ev:
        if m.name in schemas and collapse(m.keys) not in schemas[m.name]:
            problems.append(f"{m.name} fields {collapse(m.keys)} not among recorded {schemas[m.name]}")
    for rec_m in rec_ev:
        if rec_m.name in ("OriginateResponse", "Shutdown", "FullyBooted"):
            twin = next((m for m in lab_ev if m.name == rec_m.name), None)
            if twin is not None:
                problems += _compare_msg(rec_m, twin)
    return problems


def _first_seen(msgs: list[Msg]) -> list[str]:
    seen: list[str] = []
    for m in msgs:
        if m.name not in seen:
            seen.append(m.name)
    return seen


def _compare_msg(rec: Msg, got: Msg) -> list[str]:
    problems = []
    if collapse(rec.keys) != collapse(got.keys):
        problems.append(f"{rec.name}: fields {collapse(got.keys)} != recorded {collapse(rec.keys)}")
    for key, value in rec.fields:
        if key in VALUE_KEYS and got.get(key) != value:
            problems.append(f"{rec.name}: {key}={got.get(key)!r}, recorded {value!r}")
    return problems


def check_framing(raw: bytes) -> list[str]:
    """Banner, CRLF-only line ends, and every message closed by an empty line."""
    problems = []
    if not raw.startswith(BANNER):
        problems.append(f"stream does not start with the banner: {raw[:40]!r}")
    body = raw[len(BANNER):]
    if re.search(rb"(?<!\r)\n", body):
        problems.append("a bare LF line ending")
    if body and not body.endswith(b"\r\n\r\n"):
        problems.append("the stream does not end with a complete message")
    if b"\r\n\r\n\r\n" in body:
        problems.append("an empty line between messages")
    return problems
