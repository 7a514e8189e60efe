"""The controller's agent client against a real HTTP peer that answers garbage: every malformed report is
an `AgentUnreachable` (which the executor and the engine handle), never another exception."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ccfo.clients.agent_http import AgentHttpClient, AgentUnreachable, parse_report

GOOD = {"host": "ipc-a", "ami": {"connected": True}, "board": {"driver": "up"},
        "spans": [{"span": 1, "alarm": "ok", "dchannel": "up", "channels": 30}],
        "services": {"cti": {"state": "active"}}, "calls": {"ivr": 1, "agent": 0, "fax": 0}, "db": {"site": "a"}}

BAD_BODIES = [
    {**GOOD, "services": None},  # found by the API fuzzing: AttributeError escaped
    {**GOOD, "services": ["cti"]},
    {**GOOD, "ami": None},
    {**GOOD, "board": "up"},
    {**GOOD, "spans": [None]},
    {**GOOD, "spans": [{"span": "x"}]},
    {**GOOD, "calls": {"ivr": "many"}},
    {**GOOD, "calls": [1]},
    {**GOOD, "host": "ipc-b"},
    [1, 2, 3],
    "a string",
    None,
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_parse_report_raises_only_the_documented_errors(body: object) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        parse_report("ipc-a", body, 0.0)  # type: ignore[arg-type]


def test_a_good_report_parses() -> None:
    h = parse_report("ipc-a", GOOD, 5.0)
    assert h.ami_connected and h.spans[0].channels == 30 and h.ivr_calls == 1


def test_hung_service_and_hung_ami_parse_apart_from_down_and_lost() -> None:
    body = {**GOOD, "ami": {"connected": False, "state": "hung"}, "spans": None, "calls": None,
            "services": {"cti": {"state": "hung", "since": 1.0, "probe": {"error": "no answer"}},
                         "ivr": {"state": "inactive"}}}
    h = parse_report("ipc-a", body, 5.0)
    assert h.ami_hung and not h.ami_connected
    assert h.services["cti"].value == "hung" and h.services["ivr"].value == "inactive"
    lost = parse_report("ipc-a", {**body, "ami": {"connected": False, "state": "lost"}}, 5.0)
    assert not lost.ami_hung
    old_agent = parse_report("ipc-a", {**body, "ami": {"connected": False}}, 5.0)  # before ami.state existed
    assert not old_agent.ami_hung


class Peer:
    """A minimal HTTP/1.1 server on loopback that answers every request with `payload` as the body."""

    def __init__(self) -> None:
        self.payload = b""
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(self.payload) + self.payload)
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


@pytest_asyncio.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    p.server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    yield p
    p.server.close()
    await p.server.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("payload", [b"not json", b"{\"host\": ", *[json.dumps(b).encode() for b in BAD_BODIES]])
async def test_a_malformed_report_over_http_is_agent_unreachable(peer: Peer, payload: bytes) -> None:
    peer.payload = payload
    client = AgentHttpClient({"ipc-a": peer.url}, "token")
    try:
        with pytest.raises(AgentUnreachable, match="ipc-a"):
            await client.report("ipc-a")
        peer.payload = json.dumps(GOOD).encode()
        assert (await client.report("ipc-a")).host == "ipc-a", "the next good report is read"
    finally:
        await client.aclose()
