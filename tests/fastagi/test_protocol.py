"""The pure FastAGI helpers, checked against the recorded Asterisk 20 session."""

from __future__ import annotations

import pytest

from agents.fastagi.protocol import (
    AgiProtocolError,
    BadRequest,
    parse_env,
    parse_reply,
    parse_request,
    quote,
    set_variable,
)
from ccfo.domain.capacity import CallKind, Direction
from tests.recordings import AGI_FIXTURES, recording

FIXTURE = AGI_FIXTURES / "fastagi_admit_session.rx.raw"


def recorded_env() -> bytes:
    return recording(FIXTURE).read_bytes().split(b"\n\n", 1)[0] + b"\n\n"


def test_parse_the_recorded_environment() -> None:
    env = parse_env(recorded_env())
    assert env["agi_network_script"] == "admit"
    assert env["agi_channel"] == "SIP/sipp-00000011"
    assert env["agi_accountcode"] == ""
    assert len(env) == 22
    assert parse_request(env).kind is CallKind.AGENT  # no arguments: the check before a transfer


@pytest.mark.parametrize(("script", "args", "kind", "direction"), [
    ("admit?kind=agent", {}, CallKind.AGENT, None),
    ("admit?kind=ivr&direction=inbound", {}, CallKind.IVR, Direction.INBOUND),
    ("admit", {"agi_arg_1": "ivr", "agi_arg_2": "outbound"}, CallKind.IVR, Direction.OUTBOUND),
    ("admit", {"agi_arg_1": "kind=fax"}, CallKind.FAX, None),
    ("admit?kind=IVR", {}, CallKind.IVR, None),
])
def test_parse_request_forms(script: str, args: dict[str, str], kind: CallKind, direction: Direction | None) -> None:
    env = {"agi_network_script": script, "agi_request": f"agi://127.0.0.1:4573/{script}", **args}
    request = parse_request(env)
    assert (request.kind, request.direction) == (kind, direction)


@pytest.mark.parametrize("script", ["admit?kind=vip", "other", "admit?direction=sideways"])
def test_parse_request_rejects(script: str) -> None:
    with pytest.raises(BadRequest):
        parse_request({"agi_network_script": script})


@pytest.mark.parametrize("block", [b"hello\n\n", b"agi_network: yes\n\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\n\n"])
def test_parse_env_rejects_what_is_not_agi(block: bytes) -> None:
    with pytest.raises(AgiProtocolError):
        parse_env(block)


def test_quote_escapes_quotes_backslashes_and_line_breaks() -> None:
    assert quote('X + 2Y = 30, "full"') == '"X + 2Y = 30, \\"full\\""'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("two\nlines\r\n") == '"two lines"'
    assert set_variable("CCFO_ADMIT", "yes") == b'SET VARIABLE CCFO_ADMIT "yes"\n'
    with pytest.raises(ValueError):
        set_variable("BAD NAME", "x")


def test_parse_the_recorded_replies() -> None:
    assert parse_reply("200 result=1").ok
    r = parse_reply("200 result=1 (SIP/sipp-00000011)")
    assert (r.code, r.result, r.data) == (200, 1, "SIP/sipp-00000011")
    assert parse_reply("200 result=0").result == 0
    assert not parse_reply("510 Invalid or unknown command").ok
    assert not parse_reply("200 result=-1").ok
    with pytest.raises(AgiProtocolError):
        parse_reply("HANGUP")
