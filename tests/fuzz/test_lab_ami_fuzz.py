"""The lab AMI server (lab/ami, the agent's peer in every lab test) read from the other side: a client over
real TCP sends malformed actions (odd headers and values for every action it knows, missing or repeated
ActionIDs, binary junk, broken line ends) before and after logging in. The server must never let an
exception escape a session (asyncio would report it) or log an error, and must keep serving: a fresh
client logs in and gets its Ping answered after every batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.ami import LabAmiServer
from lab.ami.actions import CORE_ACTIONS
from lab.ami.dahdi_actions import DAHDI_ACTIONS
from tests.lab.harness import FAST_LAB

ACTIONS = sorted(set(CORE_ACTIONS) | set(DAHDI_ACTIONS) | {"Challenge", "NoSuchAction", ""})
KEYS = ["ActionID", "Channel", "Timeout", "Async", "Span", "DAHDIChannel", "Family", "Key", "Val", "Module",
        "LoadType", "Events", "EventMask", "Username", "Secret", "Command", "Application", "Data", "Exten",
        "Context", "Priority", "Variable", "Level", "actionid", "ACTION", ""]
VALUES = st.sampled_from(["", "1", "-1", "0", "99999999999999999999", "x", "on", "off", "true", "Local/1@x", "DAHDI/1",
                          "chan_dahdi", "unload", "nan", "1e9", "\x00", "é", "ccfo", "ccfo-secret", "core show version",
                          "DAHDI/i1/1234", "Local/0123456@ccfo-linetest"]) \
    | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)


@st.composite
def action(draw: st.DrawFn) -> bytes:
    pairs = [("Action", draw(st.sampled_from(ACTIONS)))]
    pairs += draw(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=6))
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r\n", b"\r"]))
    return eol.join(f"{k}{draw(st.sampled_from([': ', ':', ' : ']))}{v}".encode() for k, v in pairs) + eol + eol


CLIENT_INPUT = st.one_of(action(), action(), st.binary(max_size=300),
                         action().map(lambda b: b[: len(b) // 2]))


class Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()[:300]}")


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[tuple[LabAmiServer, Watch]]:
    watch = Watch()
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _l, ctx: watch.errors.append(f"asyncio: {ctx.get('message')} "
                                                                      f"{ctx.get('exception')!r}"))
    for name in ("lab", "asyncio"):
        logging.getLogger(name).addHandler(watch)
    server = LabAmiServer("127.0.0.1", 0, **FAST_LAB)
    await server.start()
    try:
        yield server, watch
    finally:
        await server.close()
        for name in ("lab", "asyncio"):
            logging.getLogger(name).removeHandler(watch)
        loop.set_exception_handler(old)


async def read_until(reader: asyncio.StreamReader, needle: bytes) -> bytes:
    data = b""
    async with asyncio.timeout(5):
        while needle not in data:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError(f"closed before {needle!r}")
            data += chunk
    return data


async def client(server: LabAmiServer, login: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await read_until(reader, b"\r\n")
    if login:
        writer.write(f"Action: Login\r\nActionID: in\r\nUsername: {server.username}\r\nSecret: {server.secret}\r\n"
                     "Events: off\r\n\r\n".encode())
        await read_until(reader, b"ActionID: in")
    return reader, writer


@pytest.mark.asyncio
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(batch=st.lists(CLIENT_INPUT, min_size=1, max_size=6), login=st.booleans())
async def test_malformed_actions_never_break_the_lab_server(lab: tuple[LabAmiServer, Watch], batch: list[bytes],
                                                            login: bool) -> None:
    server, watch = lab
    _, writer = await client(server, login)
    try:
        writer.write(b"".join(batch) + b"\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass  # a Logoff or a failed Login in the batch: the server may close on us, as Asterisk does
    finally:
        writer.close()
    probe_reader, probe = await client(server, login=True)
    try:
        probe.write(b"Action: Ping\r\nActionID: probe\r\n\r\n")
        assert b"Ping: Pong" in await read_until(probe_reader, b"ActionID: probe\r\n")
    finally:
        probe.close()
    assert watch.errors == []
