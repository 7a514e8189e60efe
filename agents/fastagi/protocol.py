"""The FastAGI wire protocol, as far as admission needs it: the environment block, commands, replies.

Asterisk opens a TCP connection, sends `agi_<name>: <value>` lines ending with an empty line (LF line
ends, see tests/fixtures/asterisk-agi), then reads one reply line per command we send:
`200 result=1`, `200 result=1 (value)`, `510 Invalid or unknown command`, a multi-line `520-...` usage
reply closed by `520 End of proper usage.`, and `511 Command Not Permitted on a dead channel`. After a
caller hangs up it may send an unsolicited `HANGUP` line before the next reply.

Arguments are parsed by Asterisk like a shell: double quotes group, a backslash escapes the next
character. `quote` escapes both and removes line breaks (a command is one line). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from ccfo.domain.capacity import CallKind, Direction

MAX_ENV_BYTES = 16 * 1024
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_()]*$")
_REPLY = re.compile(r"^(\d{3})(?:[ -](.*))?$")
_RESULT = re.compile(r"result=(-?\d+)(?:\s+\((.*)\))?")


class AgiProtocolError(ValueError):
    """The peer sent something that is not FastAGI (bad environment line, bad reply)."""


class BadRequest(ValueError):
    """A well-formed FastAGI request that does not ask for a valid admission."""


def parse_env(block: bytes) -> dict[str, str]:
    """The environment block (up to and including its empty line) as a dict of `agi_*` headers."""
    if len(block) > MAX_ENV_BYTES:
        raise AgiProtocolError(f"environment block over {MAX_ENV_BYTES} bytes")
    text = block.decode("utf-8", "replace")
    env: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_") or " " in key:
            raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
        env[key] = value.strip()
    if "agi_request" not in env and "agi_network_script" not in env:
        raise AgiProtocolError("environment has neither agi_request nor agi_network_script")
    return env


def quote(value: str) -> str:
    """One AGI argument: in double quotes, with backslash and double quote escaped, on one line."""
    flat = " ".join(str(value).splitlines())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable(name: str, value: str) -> bytes:
    if not _NAME.match(name):
        raise ValueError(f"bad channel variable name {name!r}")
    return f"SET VARIABLE {name} {quote(value)}\n".encode()


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    result: int | None
    data: str | None
    text: str

    @property
    def ok(self) -> bool:
        return self.code == 200 and (self.result is None or self.result >= 0)


def parse_reply(line: str) -> Reply:
    m = _REPLY.match(line.strip())
    if not m:
        raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
    code, rest = int(m.group(1)), m.group(2) or ""
    r = _RESULT.search(rest) if code == 200 else None
    return Reply(code, int(r.group(1)) if r else None, r.group(2) if r else None, rest)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    kind: CallKind
    direction: Direction | None = None


def parse_request(env: dict[str, str]) -> AdmitRequest:
    """What the dialplan asked for: `agi://host:port/admit?kind=agent[&direction=inbound]`.

    Also accepted: arguments, as in `AGI(agi://host:port/admit,agent,inbound)` or `...,kind=agent`.
    The kind defaults to `agent` (the check before a transfer).
    """
    try:
        url = urlsplit(env.get("agi_request", ""))
    except ValueError as exc:  # e.g. "Invalid IPv6 URL": a bad request, answered by policy, not a crash
        raise BadRequest(f"agi_request does not parse as a URL: {exc}") from None
    script = env.get("agi_network_script") or url.path.lstrip("/")
    path, _, query = script.partition("?")
    if not query:
        query = url.query
    if path.strip("/") != "admit":
        raise BadRequest(f"unknown script {path!r} (only 'admit')")
    params = {k.lower(): v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    positional = []
    for i in range(1, 33):
        arg = env.get(f"agi_arg_{i}")
        if arg is None:
            break
        key, sep, value = arg.partition("=")
        if sep:
            params.setdefault(key.strip().lower(), value.strip())
        else:
            positional.append(arg.strip())
    if positional:
        params.setdefault("kind", positional[0])
    if len(positional) > 1:
        params.setdefault("direction", positional[1])
    kind_text = (params.get("kind") or "agent").lower()
    try:
        kind = CallKind(kind_text)
    except ValueError:
        raise BadRequest(f"unknown kind {kind_text!r} (ivr, agent or fax)") from None
    direction_text = (params.get("direction") or "").lower()
    try:
        direction = Direction(direction_text) if direction_text else None
    except ValueError:
        raise BadRequest(f"unknown direction {direction_text!r} (inbound or outbound)") from None
    return AdmitRequest(kind, direction)
