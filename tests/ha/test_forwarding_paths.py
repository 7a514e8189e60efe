"""The forwarding middleware's paths one by one (controller/api/forward.py), fast: the follower is the real
middleware in process; the other members are small HTTP servers on real loopback sockets standing in for
members in states that two real member processes cannot be put in on demand (a member that accepts the
connection and never answers, a member that answers /leader 200 while this member's election has not
seen it yet). The forwarding between two real `ccfo controller --member` processes on etcd is
tests/ha/test_follower_forwarding.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ccfo.platform.auth import TokenStore, add_token
from controller.api.forward import Forwarding, ForwardSettings
from controller.cluster.members import MemberInfo
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio


@dataclass
class Snap:
    leader: str | None


@dataclass
class Timing:
    lease_ttl_s: float = 5.0


@dataclass
class StubElection:
    """What the middleware reads of the election: this member's name, the leader it saw, its one line."""

    name: str = "ctl-a"
    leader: str | None = None
    timing: Timing = field(default_factory=Timing)

    def snapshot(self) -> Snap:
        return Snap(self.leader)

    def describe(self) -> str:
        return f"{self.name} is a follower; {self.leader or 'no leader now'}"


@dataclass
class StubView:
    election: StubElection
    members: list[MemberInfo]


def member_app(name: str, leads: bool) -> FastAPI:
    """A member stand-in: /leader 200 when it leads; any /api/v1 change is echoed back with what arrived."""
    app = FastAPI()

    @app.get("/leader")
    async def leader() -> JSONResponse:
        return JSONResponse({"leader": name if leads else None, "me": name}, status_code=200 if leads else 503)

    @app.api_route("/api/v1/{rest:path}", methods=["POST", "PUT", "DELETE", "PATCH"])
    async def change(rest: str, request: Request) -> JSONResponse:
        return JSONResponse({"member": name, "method": request.method, "path": request.url.path,
                             "query": request.url.query, "body": (await request.body()).decode(),
                             "headers": {k: v for k, v in request.headers.items()}},
                            status_code=201, headers={"X-Ccfo-Member": name, "X-Upstream": "kept"})

    return app


@dataclass
class Members:
    urls: dict[str, str]
    servers: list[uvicorn.Server]
    hang: asyncio.Server


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture
async def members() -> AsyncIterator[Members]:
    """ctl-b refuses connections (dead), ctl-c leads, ctl-d is a follower, ctl-e accepts and never answers."""
    servers = []
    urls = {"ctl-b": f"http://127.0.0.1:{_dead_port()}"}
    for name, leads in (("ctl-c", True), ("ctl-d", False)):
        server = uvicorn.Server(uvicorn.Config(member_app(name, leads), host="127.0.0.1", port=0, lifespan="off",
                                               log_level="warning"))
        task = asyncio.get_running_loop().create_task(server.serve())
        await async_wait_until(lambda server=server: server.started, timeout=10)
        server.task = task  # type: ignore[attr-defined]
        servers.append(server)
        urls[name] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    held: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hang = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    urls["ctl-e"] = f"http://127.0.0.1:{hang.sockets[0].getsockname()[1]}"
    try:
        yield Members(urls, servers, hang)
    finally:
        for w in held:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        hang.close()
        await hang.wait_closed()
        for server in servers:
            server.should_exit = True
            await server.task  # type: ignore[attr-defined]


async def _local(scope: Any, receive: Any, send: Any) -> None:
    """This member's own app: answers 200 'local' (what a leader or a read gets)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"local"})


def follower(tmp: Path, urls: dict[str, str], leader: str | None, names: tuple[str, ...],
             timeout_s: float = 5.0) -> tuple[httpx.AsyncClient, dict[str, str]]:
    tokens = tmp / "tokens.yaml"
    token = add_token(tokens, "olga", "operator")
    view = StubView(StubElection("ctl-a", leader), [MemberInfo("ctl-a", "http://127.0.0.1:1"),
                                                    *(MemberInfo(n, urls[n]) for n in names)])
    app = Forwarding(_local, view=view, tokens=TokenStore.load(tokens), clock=lambda: 1000.0,  # type: ignore[arg-type]
                     settings=ForwardSettings(timeout_s=timeout_s, probe_timeout_s=1.0, max_body=1024))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ctl-a")
    return client, {"Authorization": f"Bearer {token}"}


async def test_forwarded_as_sent_and_answered_unchanged(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, "ctl-c", ("ctl-c",))
    async with client:
        r = await client.post("/api/v1/failover?dry_run=true", content=b'{"to": "ipc-b"}',
                              headers={**auth, "Content-Type": "application/json", "Idempotency-Key": "k1",
                                       "Origin": "https://ops.example", "X-Not-Sent": "dropped"})
        assert r.status_code == 201 and r.headers["x-upstream"] == "kept"
        assert r.headers["x-ccfo-member"] == "ctl-c" and r.headers["x-ccfo-forwarded-by"] == "ctl-a"
        got = r.json()
        assert (got["member"], got["method"], got["path"], got["query"], got["body"]) == (
            "ctl-c", "POST", "/api/v1/failover", "dry_run=true", '{"to": "ipc-b"}')
        assert got["headers"]["authorization"] == auth["Authorization"]
        assert got["headers"]["idempotency-key"] == "k1" and got["headers"]["x-ccfo-forwarded-by"] == "ctl-a"
        assert got["headers"]["origin"] == "https://ops.example" and "x-not-sent" not in got["headers"]
        # reads, health checks and agents' report pushes are this member's own
        for method, path in (("GET", "/api/v1/status"), ("POST", "/api/v1/agents/ipc-a/report"),
                             ("POST", "/healthz")):
            own = await client.request(method, path, headers=auth)
            assert own.text == "local" and own.headers["x-ccfo-member"] == "ctl-a", (method, path)


async def test_a_dead_leader_is_skipped_for_the_member_that_leads(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, "ctl-b", ("ctl-b", "ctl-c", "ctl-d"))
    async with client:
        r = await client.put("/api/v1/mode", json={"mode": "manual"}, headers=auth)
    assert r.status_code == 201 and r.json()["member"] == "ctl-c", r.text


async def test_no_leader_seen_asks_every_member(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, None, ("ctl-b", "ctl-d", "ctl-c"))
    async with client:
        r = await client.put("/api/v1/mode", json={"mode": "manual"}, headers=auth)
    assert r.status_code == 201 and r.json()["member"] == "ctl-c", r.text


async def test_nobody_leads_is_503_naming_each_member_tried(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, "ctl-b", ("ctl-b", "ctl-d"))
    async with client:
        r = await client.put("/api/v1/mode", json={"mode": "manual"}, headers=auth)
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and r.headers["x-ccfo-member"] == "ctl-a"
    detail = r.json()["detail"]
    assert detail.startswith("no controller member leads now (ctl-b: unreachable (ConnectError); ctl-d: not the "
                             "leader (/leader 503))"), detail


async def test_a_leader_that_does_not_answer_is_504(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, "ctl-e", ("ctl-e", "ctl-c"), timeout_s=0.5)
    async with client:
        r = await client.put("/api/v1/mode", json={"mode": "manual"}, headers=auth)
    assert r.status_code == 504 and "ctl-e, which did not answer in time (ReadTimeout)" in r.json()["detail"]
    assert "same Idempotency-Key" in r.json()["detail"]


async def test_refused_on_the_follower_and_never_sent(tmp_path: Path, members: Members) -> None:
    client, auth = follower(tmp_path, members.urls, "ctl-c", ("ctl-c",))
    async with client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
            r = await client.put("/api/v1/mode", json={"mode": "manual"}, headers=headers)
            assert r.status_code == 401 and r.headers["x-ccfo-member"] == "ctl-a", r.text
            assert json.loads(r.text) == {"detail": "missing, wrong or expired token"}
        big = await client.put("/api/v1/mode", content=b"x" * 2000, headers=auth)
        assert big.status_code == 413 and big.headers["x-ccfo-member"] == "ctl-a"
        hop = await client.put("/api/v1/mode", json={}, headers={**auth, "X-Ccfo-Forwarded-By": "ctl-d"})
        assert hop.status_code == 503 and "forwarded once only" in hop.json()["detail"]
