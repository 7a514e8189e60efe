"""`BodyLimit`: an ASGI middleware that refuses request bodies over a size, announced or streamed.

Checking the Content-Length header alone is not enough: a client that sends `Transfer-Encoding: chunked`
announces no length, and the app would read as much as it is sent before validating anything. This
counts the bytes as the app reads them and answers 413 once they pass the limit. Used by the controller's
API and the agent's. No I/O of its own, no state between requests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
TOO_LARGE = b'{"detail":"request body too large"}'


class BodyLimit:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(TOO_LARGE)).encode())]})
            await send({"type": "http.response.body", "body": TOO_LARGE})
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # raised where the app reads the body: its handler answers 413
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, counted, send)
