"""AMI wire format as Asterisk 20 writes it: message rendering, request parsing, event-class masks.

Holds only byte/str shaping and the event-class table; no sockets, no state. Everything here mirrors
what the recorded transcripts in `tests/fixtures/asterisk-ami/` show (CRLF line ends, one empty
line after each message, the banner as a single line with no empty line after it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
AMI_VERSION = "9.0.0"
ASTERISK_VERSION = "20.20.1"

Fields = Sequence[tuple[str, str]]

# Event classes (manager.c `perms[]`), with the bit each one takes in a session's event mask.
EVENT_CLASSES: dict[str, int] = {
    name: 1 << i
    for i, name in enumerate((
        "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
        "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security", "message",
    ))
}
ALL_EVENTS = (1 << len(EVENT_CLASSES)) - 1
_TRUE = {"on", "yes", "true", "y", "t", "1"}
_FALSE = {"off", "no", "false", "n", "f", "0"}


def parse_event_mask(text: str) -> int:
    """Turn an `Events:`/`EventMask:` value into a bit mask the way Asterisk's `strings_to_mask` does.

    `on`/`yes`/... mean every class, `off`/`no`/... none, digits are a raw mask, anything else a comma
    list of class names (unknown names are ignored, `all` means every class).
    """
    value = text.strip().lower()
    if value in _TRUE:
        return ALL_EVENTS
    if value in _FALSE or not value:
        return 0
    if value.isdigit():
        return int(value) & ALL_EVENTS
    mask = 0
    for name in value.split(","):
        name = name.strip()
        if name == "all":
            mask |= ALL_EVENTS
        else:
            mask |= EVENT_CLASSES.get(name, 0)
    return mask


def privilege(event_class: str) -> str:
    """The lower-case `Privilege:` value an unsolicited event carries, e.g. `call,all`."""
    return f"{event_class},all"


def render(fields: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message: `Key: value` lines joined by CRLF, closed by an empty line."""
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode("utf-8")


def render_event(name: str, event_class: str, fields: Fields) -> bytes:
    """An unsolicited event: `Event`, then `Privilege`, then its own fields, as manager_event() does."""
    return render((("Event", name), ("Privilege", privilege(event_class)), *fields))


def with_action_id(fields: Fields, action_id: str) -> list[tuple[str, str]]:
    """Insert `ActionID` as the 2nd line (where astman_send_* put it) when the request carried one."""
    out = list(fields)
    if action_id:
        out.insert(1, ("ActionID", action_id))
    return out


def response(status: str, message: str | None, action_id: str, *extra: tuple[str, str]) -> bytes:
    """`Response: <status>`, the ActionID, an optional `Message`, then extra fields."""
    fields: list[tuple[str, str]] = [("Response", status)]
    if message is not None:
        fields.append(("Message", message))
    fields.extend(extra)
    return render(with_action_id(fields, action_id))


def error(message: str, action_id: str) -> bytes:
    return response("Error", message, action_id)


def list_start(message: str, action_id: str) -> bytes:
    """The opening of a list answer: Success, ActionID, `EventList: start`, Message."""
    return render(with_action_id([("Response", "Success"), ("EventList", "start"), ("Message", message)],
                                 action_id))


def list_item(name: str, fields: Fields, action_id: str, *, id_last: bool = False) -> bytes:
    """A list item event. No Privilege line; ActionID 2nd, or last for Status/DB*/DAHDI/PRI items."""
    body: list[tuple[str, str]] = [("Event", name), *fields]
    if action_id:
        if id_last:
            body.append(("ActionID", action_id))
        else:
            body.insert(1, ("ActionID", action_id))
    return render(body)


def list_complete(name: str, count: int, action_id: str, *, legacy_items: bool = False) -> bytes:
    """The `...Complete` event; `Items` is the legacy duplicate some lists still send."""
    fields: list[tuple[str, str]] = [("Event", name), ("EventList", "Complete"), ("ListItems", str(count))]
    if legacy_items:
        fields.append(("Items", str(count)))
    return render(with_action_id(fields, action_id))


def parse_request(block: str) -> list[tuple[str, str]]:
    """Headers of one client message, in order. Lines without a colon are ignored, like Asterisk does."""
    headers: list[tuple[str, str]] = []
    for line in block.replace("\r\n", "\n").split("\n"):
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            continue
        headers.append((key.strip(), value.strip()))
    return headers


def header(headers: Sequence[tuple[str, str]], name: str, default: str = "") -> str:
    """First value of a header, matched case-insensitively (astman_get_header)."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return default


def headers_all(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    lname = name.lower()
    return [value for key, value in headers if key.lower() == lname]


def event_tv(now: float | None = None) -> str:
    """Security-event timestamp, e.g. `2026-11-23T09:52:33.232+0000`."""
    now = time.time() if now is None else now
    millis = int((now % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}+0000"
