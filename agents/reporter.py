"""Push the host report to the controller: at once on every change, and as a heartbeat.

`poke()` (from the service manager and the AMI monitor, synchronous, cheap) wakes the loop; a report
whose content did not change is not pushed before the heartbeat is due. A push is a JSON POST with the
agent token as bearer, under a timeout. The controller being away is normal (it restarts, it fails
over): failures are counted and logged at most once per minute per kind of error (connection refused,
timeout, HTTP 401, ...), and the first success afterwards is logged once. Never logs the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from agents.auth import Token
from agents.report import content_key

log = logging.getLogger("ccfo.agent.reporter")
LOG_EVERY_S = 60.0


def report_url(controller_url: str | None, listen: str, host: str) -> str:
    """Where to push: controller.url, else http://LISTEN (a wildcard bind address means this machine)."""
    base = controller_url or f"http://{listen}"
    for wildcard, local in (("//0.0.0.0", "//127.0.0.1"), ("//[::]", "//[::1]")):
        base = base.replace(wildcard, local)
    return f"{base.rstrip('/')}/api/v1/agents/{host}/report"


def _describe(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused`: the library error and, if any, the OS error under it."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return f"{text} ({os.strerror(cause.errno)})"
        cause = cause.__cause__ or cause.__context__
    return text


class Reporter:
    """The push loop for one host. Owned by the runtime: `run()` in a task, cancelled at shutdown."""

    def __init__(self, build: Callable[[], Awaitable[dict[str, Any]]], url: str, token: Token, *,
                 heartbeat_s: float = 1.0, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_push: Callable[[float, bool], None] | None = None) -> None:
        self.build = build
        self.url = url
        self.token = token
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s if timeout_s is not None else max(0.5, min(5.0, 2 * heartbeat_s))
        self._clock = clock
        self._transport = transport  # tests: an in-memory controller
        self._wake = asyncio.Event()
        self._last_key: str | None = None
        self._last_push = float("-inf")
        self._logged: dict[str, float] = {}
        self.pushed = 0
        self.failed = 0
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.on_push = on_push  # (seconds, ok) after every push: the /metrics latency histogram

    def poke(self, *_: object) -> None:
        """Something changed: push now (callable from listeners with any arguments)."""
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, headers={"User-Agent": "ccfo-agent"},
                                     transport=self._transport) as client:
            while True:
                wait = max(0.0, self._last_push + self.heartbeat_s - self._clock())
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
                # with the wake-up, and the agent would never stop (seen in the engine loop).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    report = await self.build()
                except Exception:  # a bug in a report source must not stop the heartbeat
                    log.exception("building the report failed")
                    await asyncio.sleep(self.heartbeat_s)
                    continue
                key = content_key(report)
                if key == self._last_key and self._clock() < self._last_push + self.heartbeat_s:
                    continue
                self._last_push = self._clock()
                if await self.push(client, report):
                    self._last_key = key

    async def push(self, client: httpx.AsyncClient, report: dict[str, Any]) -> bool:
        """POST one report; True when the controller took it (2xx)."""
        started = time.monotonic()
        ok = await self._post(client, report)
        if self.on_push is not None:
            self.on_push(time.monotonic() - started, ok)
        return ok

    async def _post(self, client: httpx.AsyncClient, report: dict[str, Any]) -> bool:
        try:
            answer = await client.post(self.url, json=report,
                                       headers={"Authorization": f"Bearer {self.token.secret}"})
        except httpx.TimeoutException:
            return self._failed("timeout", f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return self._failed(type(exc).__name__, _describe(exc))
        if answer.is_success:
            self._succeeded()
            return True
        return self._failed(f"HTTP {answer.status_code}", f"HTTP {answer.status_code}: {answer.text[:200]}")

    def _succeeded(self) -> None:
        if self.failing_since is not None:
            log.info("report push to %s works again after %d failed pushes", self.url, self.failed)
        self.pushed += 1
        self.failed = 0
        self.failing_since = None
        self.last_error = None
        self._logged.clear()

    def _failed(self, kind: str, message: str) -> bool:
        now = self._clock()
        self.failed += 1
        self.last_error = message
        if self.failing_since is None:
            self.failing_since = now
        if now - self._logged.get(kind, float("-inf")) >= LOG_EVERY_S:
            self._logged[kind] = now
            log.warning("report push to %s failed (%s); %d failed so far, retrying every %g s "
                        "(logged at most once a minute per kind)", self.url, message, self.failed, self.heartbeat_s)
        return False
