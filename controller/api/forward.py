"""Follower forwarding (controller HA, issue 14 item 6): a change sent to a follower is done by the leader.

An ASGI middleware a cluster member's app wears outermost. A mutating request (POST, PUT, PATCH, DELETE)
under `/api/v1/` that reaches a member which is not the leader is

1. **authenticated here first**: a missing, wrong or expired token is 401 on this member and is never
   sent on (the follower is no open proxy; the leader checks the token and the role again, and its
   journal names the token's owner as the actor, as for a request sent to it directly);
2. **forwarded** to the leader (the holder of the leader key as this member's election saw it, else the
   member whose `GET /leader` answers 200) with the same method, path, query, body, `Authorization`,
   `Idempotency-Key`, `Content-Type` and `Accept`, over HTTPS verified with `controller.ca_file` when the
   members serve TLS, under a short timeout, marked `X-Ccfo-Forwarded-By: <this member>` (`Origin` too, so
   the leader's CORS answer is the one a browser gets);
3. answered with the **leader's answer unchanged** (status, body, headers), plus `X-Ccfo-Forwarded-By`.

Every answer of a member carries `X-Ccfo-Member: <name>`, the member that handled it, so a forwarded
answer names the leader. A request is forwarded at most once: one carrying `X-Ccfo-Forwarded-By` that
reaches a member which is not the leader (the leadership moved on the way) gets 503 with `Retry-After`,
never a second hop, so no loop can form. With no leader to be found (an election in progress, etcd lost)
the answer is 503 with `Retry-After`, naming each member tried and what it answered. The leader not
answering in time after the request was sent is 504: the request may have been applied, so a client
retries with the same `Idempotency-Key` (the leader then answers it as it answered the first).

Agents' report pushes (`POST /api/v1/agents/NAME/report`) are not forwarded: every member ingests them.
Reads are never forwarded: any member serves them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx

from ccfo.platform.auth import TokenStore
from controller.api.deps import AUTH_FAILED
from controller.cluster.members import ClusterView

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORWARDED_BY = "x-ccfo-forwarded-by"
MEMBER = "x-ccfo-member"
SENT_ON = ("authorization", "idempotency-key", "content-type", "accept", "origin")  # origin: the leader's CORS answers
NOT_PASSED_BACK = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding",
                             "date", "server"})  # this member's server sets its own
AGENT_REPORT = re.compile(r"^/api/v1/agents/[^/]+/report$")


@dataclass(frozen=True, slots=True)
class ForwardSettings:
    """How a member forwards: the TLS trust for the other members (`controller.ca_file`, else the
    default store), the time the leader has to answer, the time a member has to answer `/leader`."""

    verify: ssl.SSLContext | bool = True
    timeout_s: float = 10.0
    probe_timeout_s: float = 1.0
    max_body: int = 64 * 1024


class _NotSent(Exception):
    """The leader could not be reached: the request never left this member."""


class Forwarding:
    def __init__(self, app: App, *, view: ClusterView, tokens: TokenStore, clock: Callable[[], float],
                 settings: ForwardSettings | None = None) -> None:
        self.app = app
        self.view = view
        self.tokens = tokens
        self.clock = clock
        self.settings = settings or ForwardSettings()
        self.me = view.election.name
        self.urls = {m.name: m.url.rstrip("/") for m in view.members}
        self._member = (MEMBER.encode(), self.me.encode())
        self.retry_after = str(max(1, math.ceil(view.election.timing.lease_ttl_s)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._to_forward(scope):
            await self.app(scope, receive, self._named(send))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        if not self._authenticated(headers.get("authorization", "")):
            await _answer(send, 401, AUTH_FAILED, [(b"www-authenticate", b"Bearer"), self._member])
            return
        came_from = headers.get(FORWARDED_BY)
        if came_from is not None:  # the leadership moved while the request travelled: no second hop
            await self._unavailable(send, f"{came_from} forwarded this request to {self.me}, which does not lead "
                                          f"now ({self.view.election.describe()}); a request is forwarded once only")
            return
        body = await _body(receive, self.settings.max_body)
        if body is None:
            await _answer(send, 413, "request body too large", [self._member])
            return
        await self._forward(scope, headers, body, send)

    def _to_forward(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if scope["method"] not in MUTATING or not path.startswith("/api/v1/") or AGENT_REPORT.match(path):
            return False
        return self.view.election.snapshot().leader != self.me  # the leader handles it, acting or not

    def _authenticated(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and bool(token) and self.tokens.authenticate(token, self.clock()) is not None

    def _named(self, send: Send) -> Send:
        async def named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._member]
            await send(message)

        return named

    async def _forward(self, scope: Scope, headers: dict[str, str], body: bytes, send: Send) -> None:
        notes: list[str] = []  # each member tried and what it answered, for the 503
        asked = {self.me}
        seen = self.view.election.snapshot().leader
        if seen not in self.urls or seen == self.me:
            notes.append(f"{self.me}: {self.view.election.describe()}")
            seen = None
        async with httpx.AsyncClient(verify=self.settings.verify, timeout=self.settings.timeout_s) as client:
            leader = seen
            while True:
                if leader is None:
                    leader = await self._find_leader(client, asked, notes)
                    if leader is None:
                        await self._unavailable(send, f"no controller member leads now ({'; '.join(notes)})")
                        return
                asked.add(leader)
                try:
                    r = await self._send(client, leader, scope, headers, body)
                except _NotSent as exc:  # never reached it: another member may lead by now
                    notes.append(f"{leader}: unreachable ({exc})")
                    leader = None
                    continue
                except httpx.HTTPError as exc:
                    await _answer(send, 504, f"{self.me} forwarded this request to the leader {leader}, which did "
                                             f"not answer in time ({type(exc).__name__}): it may have been applied; "
                                             f"send it again with the same Idempotency-Key to get its answer",
                                  [self._member])
                    return
                await _pass_back(send, r, self.me)
                return

    async def _send(self, client: httpx.AsyncClient, leader: str, scope: Scope, headers: dict[str, str],
                    body: bytes) -> httpx.Response:
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.urls[leader] + scope["path"] + (f"?{query}" if query else "")
        sent = {k: headers[k] for k in SENT_ON if k in headers}
        sent[FORWARDED_BY] = self.me
        try:
            return await client.request(scope["method"], url, content=body, headers=sent)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _NotSent(type(exc).__name__) from exc

    async def _find_leader(self, client: httpx.AsyncClient, asked: set[str], notes: list[str]) -> str | None:
        """The member not asked yet whose `GET /leader` answers 200 now (all asked at once); the others'
        answers go to `notes`."""
        names = [n for n in self.urls if n not in asked]

        async def ask(name: str) -> tuple[str, int | None, str]:
            try:
                r = await client.get(self.urls[name] + "/leader", timeout=self.settings.probe_timeout_s)
            except httpx.HTTPError as exc:
                return name, None, f"unreachable ({type(exc).__name__})"
            return name, r.status_code, "leads" if r.status_code == 200 else f"not the leader (/leader {r.status_code})"

        answers = await asyncio.gather(*(ask(n) for n in names))
        asked.update(names)
        leader = next((name for name, status, _ in answers if status == 200), None)
        notes.extend(f"{name}: {said}" for name, status, said in answers if name != leader)
        return leader

    async def _unavailable(self, send: Send, detail: str) -> None:
        await _answer(send, 503, f"{detail}; try again in {self.retry_after} s",
                      [(b"retry-after", self.retry_after.encode()), self._member])


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _pass_back(send: Send, r: httpx.Response, me: str) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers.multi_items()
               if k.lower() not in NOT_PASSED_BACK]
    body = r.content
    headers += [(b"content-length", str(len(body)).encode()), (FORWARDED_BY.encode(), me.encode())]
    await send({"type": "http.response.start", "status": r.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})
