"""Fuzzing the FastAGI admission server (agents/fastagi) over real TCP on 127.0.0.1: malformed environment
blocks (odd names, URLs that do not parse, binary junk, no end, too long), and junk replies to our
SET VARIABLE commands (unknown codes, a usage text that never ends, lines over the stream limit, binary).

Properties: the server never logs an error or lets asyncio see an exception; it closes every connection
within its own deadlines; a complete request (ended by an empty line, within the size limit) answered with
`200 result=1` always gets CCFO_ADMIT, by decision or by the fail-open/fail-closed policy (the dialplan
treats a missing CCFO_ADMIT as "not admitted", so a request that got none was silently refused); and a valid
request after each example is still admitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.fastagi import AdmissionServer, LiveCapacity
from agents.fastagi.protocol import MAX_ENV_BYTES, BadRequest, parse_request
from ccfo.domain.capacity import HostLoad
from ccfo.domain.site import CapacityPolicy

HEADER_S, REPLY_S = 0.15, 0.15
BASE = {"agi_network": "yes", "agi_channel": "SIP/sipp-00000011", "agi_uniqueid": "1795427911.33",
        "agi_version": "20.20.1", "agi_context": "from-trunk", "agi_extension": "200", "agi_priority": "4"}
URLISH = st.text(st.sampled_from(list("admit?kind=agentivrfaxdirection&inboundoutbound/:[]%@#\\ .,=é1"))
                 | st.characters(codec="utf-8", exclude_characters="\n"), max_size=60)
KINDS = st.sampled_from(["agent", "ivr", "fax", "AGENT", "", "x", "agent&kind=ivr", "%61gent"])


@st.composite
def env(draw: st.DrawFn) -> dict[str, str]:
    fields = dict(BASE)
    script = draw(st.sampled_from(["admit", "/admit", "admit/", "other", "", "admit?kind="]) | URLISH)
    if draw(st.booleans()):
        fields["agi_network_script"] = script
    if draw(st.booleans()):
        host = draw(st.sampled_from(["127.0.0.1:4573", "[::1]:4573", "[::1", "h]:1", "host:99999", "", "[", "@"]))
        fields["agi_request"] = f"{draw(st.sampled_from(['agi://', 'agi:', '', 'http://']))}{host}/{script}"
    for i in range(1, draw(st.integers(0, 4)) + 1):
        fields[f"agi_arg_{i}"] = draw(KINDS | URLISH)
    for _ in range(draw(st.integers(0, 3))):
        fields[draw(st.from_regex(r"agi_[a-z_0-9]{1,12}", fullmatch=True))] = draw(URLISH)
    return fields


def render(fields: dict[str, str], eol: bytes = b"\n") -> bytes:
    return b"".join(f"{k}: {v}".encode() + eol for k, v in fields.items()) + eol


@st.composite
def request(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["env", "env", "mutated", "junk", "crlf", "huge", "cut"]))
    block = render(draw(env()))
    if kind == "mutated":
        data = bytearray(block)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b"\n", b"\n\n", b":", b"\r"]))
        return bytes(data)
    if kind == "junk":
        return draw(st.binary(max_size=400))
    if kind == "crlf":
        return render(draw(env()), b"\r\n")
    if kind == "huge":
        return b"agi_request: agi://h/admit?kind=" + b"a" * draw(st.integers(MAX_ENV_BYTES - 100, 3 * MAX_ENV_BYTES)) \
            + draw(st.sampled_from([b"\n\n", b"\n", b""]))
    if kind == "cut":
        return block[: draw(st.integers(0, len(block) - 1))]
    return block


REPLY = st.one_of(
    st.sampled_from([b"200 result=1\n", b"200 result=1\n", b"510 Invalid or unknown command\n", b"511 Command Not "
                     b"Permitted on a dead channel\n", b"HANGUP\n", b"HANGUP\n200 result=1\n", b"520-Invalid command "
                     b"syntax.  Proper usage follows:\nUsage: SET VARIABLE\n520 End of proper usage.\n",
                     b"520-never ends\n", b"\n", b"200\n", b"999 result=x\n", b"200 result=-1\n"]),
    st.binary(max_size=200),
    st.integers(MAX_ENV_BYTES, 3 * MAX_ENV_BYTES).map(lambda n: b"2" * n + b"\n"),  # a line over the limit
)


class Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()}"
                           + (f" [{record.exc_info[1]!r}]" if record.exc_info else ""))


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[AdmissionServer, Watch]]:
    watch = Watch()
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _l, ctx: watch.errors.append(f"asyncio: {ctx.get('message')} "
                                                                      f"{ctx.get('exception')!r}"))
    for name in ("agents", "asyncio"):
        logging.getLogger(name).addHandler(watch)
    srv = AdmissionServer(lambda: LiveCapacity(30, HostLoad(), CapacityPolicy()), port=0, header_timeout_s=HEADER_S,
                          reply_timeout_s=REPLY_S, answer_within_s=0.1)
    await srv.start()
    try:
        yield srv, watch
    finally:
        await srv.close()
        for name in ("agents", "asyncio"):
            logging.getLogger(name).removeHandler(watch)
        loop.set_exception_handler(old)


async def exchange(port: int, block: bytes, replies: list[bytes], eof: bool) -> tuple[dict[str, str], float]:
    """Send the block (then EOF if asked), answer each command with the next reply; the variables set, and
    how long the server kept the connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    variables: dict[str, str] = {}
    try:
        writer.write(block)
        if eof:
            writer.write_eof()
        while True:
            line = await asyncio.wait_for(reader.readline(), HEADER_S + 2 * REPLY_S + 3.0)
            if not line:
                break
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith("SET VARIABLE "):
                name, _, value = text[len("SET VARIABLE "):].partition(" ")
                variables[name] = value
            if not eof and not writer.is_closing():
                writer.write(replies.pop(0) if replies else b"200 result=1\n")
    except ConnectionError:
        pass
    finally:
        writer.close()
    return variables, time.monotonic() - started


@pytest.mark.asyncio
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(block=request(), replies=st.lists(REPLY, max_size=3), eof=st.booleans())
async def test_fuzzed_requests_and_replies(server: tuple[AdmissionServer, Watch], block: bytes, replies: list[bytes],
                                           eof: bool) -> None:
    srv, watch = server
    variables, held_s = await exchange(srv.port, block, list(replies), eof)
    assert held_s < HEADER_S + 2 * REPLY_S + 2.0, "the server kept the connection past its deadlines"
    complete = b"\n\n" in block[:MAX_ENV_BYTES] and not replies
    if complete and not eof:
        assert variables.get("CCFO_ADMIT") in ('"yes"', '"no"'), (block[:300], variables)
    assert watch.errors == []
    ok, _ = await exchange(srv.port, render({**BASE, "agi_network_script": "admit?kind=agent"}), [], False)
    assert ok.get("CCFO_ADMIT") == '"yes"'


@pytest.mark.parametrize("request_url", ["agi://[::1/admit?kind=agent", "agi://h]:1/admit", "agi://[/admit"])
def test_a_request_url_that_does_not_parse_is_a_bad_request(request_url: str) -> None:
    """Regression: urlsplit's ValueError escaped parse_request, so the server logged a traceback and sent no
    answer at all instead of answering by its fail-open/fail-closed policy."""
    with pytest.raises(BadRequest, match="agi_request"):
        parse_request({"agi_request": request_url})


@pytest.mark.asyncio
async def test_unparsable_request_url_is_answered_by_policy(server: tuple[AdmissionServer, Watch]) -> None:
    srv, watch = server
    variables, _ = await exchange(srv.port, render({**BASE, "agi_request": "agi://[::1/admit?kind=agent"}), [], False)
    assert variables["CCFO_ADMIT"] == '"yes"' and "fail-open" in variables["CCFO_REASON"]
    assert watch.errors == [] and srv.stats.fallback == 1


@pytest.mark.asyncio
async def test_reply_line_over_the_stream_limit_ends_the_session_quietly(server: tuple[AdmissionServer, Watch]) -> None:
    """Regression: readline() raised ValueError (limit overrun) and the server logged it as an unexpected error."""
    srv, watch = server
    variables, _ = await exchange(srv.port, render({**BASE, "agi_network_script": "admit"}),
                                  [b"2" * (2 * MAX_ENV_BYTES) + b"\n"], False)
    assert "CCFO_ADMIT" not in variables  # we stop at the reply we cannot read: CCFO_REASON was the first command
    assert watch.errors == []
