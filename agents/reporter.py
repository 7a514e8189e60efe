"""Push the host report to the controller: at once on every change, and as a heartbeat.

`poke()` (from the service manager and the AMI monitor, synchronous, cheap) wakes the loop; a report
whose content did not change is not pushed before the heartbeat is due. A push is a JSON POST with the
agent token as bearer, under a timeout. The controller being away is normal (it restarts, it fails
over): failures are counted and logged at most once per minute per address and kind of error (connection
refused, timeout, HTTP 401, ...), and the first success afterwards is logged once. Never logs the token.

With a controller cluster (site.yaml `cluster:`), each report goes to every member at once: the members
all observe the site, and whichever leads hears the agent directly. A member's answer says whether it is
the acting leader (`X-Ccfo-Acting: yes|no`); only such an answer is *leader contact* (`on_leader`), which
is what self-fencing counts. A follower's answer is not: a primary cut off with a follower only must fence
itself, because the leader on the other side starts the standby after `self_fence_after_s` + margin
(docs/ha.md). An answer without the header is a controller alone, which always acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from agents.auth import Token
from agents.report import content_key
from ccfo.config.models import SiteFileModel
from ccfo.platform.headers import ACTING_HEADER

log = logging.getLogger("ccfo.agent.reporter")
LOG_EVERY_S = 60.0


def report_url(controller_url: str | None, listen: str, host: str) -> str:
    """Where to push: controller.url, else http://LISTEN (a wildcard bind address means this machine)."""
    base = controller_url or f"http://{listen}"
    for wildcard, local in (("//0.0.0.0", "//127.0.0.1"), ("//[::]", "//[::1]")):
        base = base.replace(wildcard, local)
    return f"{base.rstrip('/')}/api/v1/agents/{host}/report"


def members(site: SiteFileModel) -> list[str]:
    """The controller cluster's member URLs from site.yaml (none without `cluster:`)."""
    return [str(m.url) for m in site.cluster.members] if site.cluster is not None else []


def report_urls(controller_url: str | None, listen: str, host: str, members: Sequence[str] = ()) -> list[str]:
    """Every address to push to: each cluster member's, else the one controller's (`report_url`)."""
    if members:
        return [f"{str(m).rstrip('/')}/api/v1/agents/{host}/report" for m in members]
    return [report_url(controller_url, listen, host)]


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

    def __init__(self, build: Callable[[], Awaitable[dict[str, Any]]], url: str | Sequence[str], token: Token, *,
                 heartbeat_s: float = 1.0, timeout_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None,
                 on_push: Callable[[float, bool], None] | None = None,
                 on_leader: Callable[[], None] | None = None) -> None:
        self.build = build
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("a reporter needs at least one controller address")
        self.url = self.urls[0]
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
        self.on_leader = on_leader  # after every push the acting leader answered: self-fencing's contact
        self._url_failing: dict[str, int] = {}

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
        """POST one report to every address at once; True when at least one controller took it (2xx)."""
        started = time.monotonic()
        answers = await asyncio.gather(*(self._post(client, url, report) for url in self.urls))
        ok = any(taken for taken, _ in answers)
        if ok:
            self._succeeded()
        else:
            self.failed += 1
            if self.failing_since is None:
                self.failing_since = self._clock()
        if self.on_push is not None:
            self.on_push(time.monotonic() - started, ok)
        if self.on_leader is not None and any(acting for _, acting in answers):
            self.on_leader()
        return ok

    async def _post(self, client: httpx.AsyncClient, url: str, report: dict[str, Any]) -> tuple[bool, bool]:
        """(taken, acting) for one address: acting when a 2xx came from the acting leader."""
        try:
            answer = await client.post(url, json=report, headers={"Authorization": f"Bearer {self.token.secret}"})
        except httpx.TimeoutException:
            return self._failed(url, "timeout", f"no answer within {self.timeout_s:g} s"), False
        except httpx.HTTPError as exc:
            return self._failed(url, type(exc).__name__, _describe(exc)), False
        if answer.is_success:
            if self._url_failing.pop(url, 0):
                log.info("report push to %s works again", url)
            return True, answer.headers.get(ACTING_HEADER, "yes").lower() != "no"
        return self._failed(url, f"HTTP {answer.status_code}", f"HTTP {answer.status_code}: {answer.text[:200]}"), False

    def _succeeded(self) -> None:
        if self.failing_since is not None:
            log.info("report push works again after %d failed pushes", self.failed)
        self.pushed += 1
        self.failed = 0
        self.failing_since = None
        self.last_error = None

    def _failed(self, url: str, kind: str, message: str) -> bool:
        """Count and (at most once a minute per address and kind) log one address's failure; False."""
        now = self._clock()
        self._url_failing[url] = self._url_failing.get(url, 0) + 1
        self.last_error = message if len(self.urls) == 1 else f"{url}: {message}"
        if now - self._logged.get(f"{url} {kind}", float("-inf")) >= LOG_EVERY_S:
            self._logged[f"{url} {kind}"] = now
            log.warning("report push to %s failed (%s); %d failed in a row, retrying every %g s "
                        "(logged at most once a minute per kind)", url, message, self._url_failing[url],
                        self.heartbeat_s)
        return False
