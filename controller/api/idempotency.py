"""Idempotent operator requests: a repeated request with the same `Idempotency-Key` gets the first answer.

A client retry or a double click must not start a second plan (issue 19). The CLI and the dashboard send
an `Idempotency-Key` header with every mutating request; this ASGI middleware remembers the answer to
the first request under (token, method, path, key) and replays it, status, headers and body, to every
repetition, marked `Idempotent-Replayed: true`. A repetition that arrives while the first is still being
answered waits for that answer rather than running the request again. The memory is bounded (the
newest `max_entries` keys, each kept `ttl_s`, bodies up to `max_body` bytes); the token is kept only as
a hash. Answers of 5xx are not kept (a retry may then run). Requests without the header pass through.
What it must not do: look inside bodies, or apply to reads (GET and HEAD pass through).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

HEADER = b"idempotency-key"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY = 200


@dataclass
class _Answer:
    created: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | None = None  # None: not kept (5xx, too large, or the first request failed)


class Idempotency:
    def __init__(self, app: Any, max_entries: int = 1024, ttl_s: float = 24 * 3600.0, max_body: int = 256 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app, self.max_entries, self.ttl_s, self.max_body, self.clock = app, max_entries, ttl_s, max_body, clock
        self._answers: OrderedDict[tuple[str, str, str, bytes], _Answer] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY:
            await _plain(send, 422, f"the Idempotency-Key header must be 1 to {MAX_KEY} characters")
            return
        token = hashlib.sha256(headers.get(b"authorization", b"")).hexdigest()
        slot = (token, scope["method"], scope["path"], key)
        self._expire()
        first = self._answers.get(slot)
        if first is not None:
            await first.done.wait()
            if first.body is not None and first.status is not None:
                await _replay(send, first)
                return
        answer = _Answer(self.clock())
        self._answers[slot] = answer
        self._answers.move_to_end(slot)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)
        await self._first(scope, receive, send, answer)

    async def _first(self, scope: Scope, receive: Receive, send: Send, answer: _Answer) -> None:
        chunks: list[bytes] = []
        size = 0

        async def keep(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False) and answer.status is not None and answer.status < 500 \
                        and size <= self.max_body:
                    answer.body = b"".join(chunks)
            await send(message)
        try:
            await self.app(scope, receive, keep)
        finally:
            answer.done.set()

    def _expire(self) -> None:
        now = self.clock()
        while self._answers:
            slot, oldest = next(iter(self._answers.items()))
            if now - oldest.created < self.ttl_s:
                break
            del self._answers[slot]


async def _replay(send: Send, answer: _Answer) -> None:
    headers = [(k, v) for k, v in answer.headers if k.lower() != b"content-length"]
    body = answer.body or b""
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
