"""Liveness probes: is an active service still answering, or is it hung?

A running process that no longer answers (deadlocked, SIGSTOPped, stuck on a dead disk) is `active` to
systemd and to a status command; callers hear silence all the same. Each service may carry one probe
(site.yaml `probe:`): `tcp` (connect, and read `expect` when given: a bare connect succeeds even for a
stopped process, the kernel completes the handshake), `http` (a GET answered with `expect_status`),
`command` (an argv that exits 0 within its timeout) or `ami` (the AMI link to this host's Asterisk is up).

`ProbeRunner` runs every probe in its own task, one attempt every `interval_s`, each under `timeout_s`
(config checks keep timeout_s <= interval_s), so a slow probe delays nothing but itself and never the
heartbeat. `failures` consecutive failures make the verdict `hung`, with the last error, since when the
probes fail and since when the service counts as hung; the first success clears it. Only services the
backend says are active are probed; any other state resets the count. A probe that cannot even run (no
such command) is a failed probe with that error, never an agent crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from agents.services.proc import CommandError, CommandTimeout, run_command

log = logging.getLogger("ccfo.agent.probes")


class ProbeError(Exception):
    """One failed probe attempt; the message says what was seen (no secrets)."""


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    kind: str  # tcp | http | command | ami
    tcp: str | None = None
    expect: str | None = None
    http: str | None = None
    expect_status: int = 200
    command: tuple[str, ...] | None = None
    interval_s: float = 1.0
    timeout_s: float = 1.0
    failures: int = 3

    @property
    def target(self) -> str:
        if self.kind == "command":
            return " ".join(self.command or ())
        return {"tcp": self.tcp, "http": self.http, "ami": "AMI link"}.get(self.kind) or ""


def spec_from_model(model: Any) -> ProbeSpec:
    """A ProbeSpec from a config ProbeModel (duck-typed)."""
    return ProbeSpec(model.kind, model.tcp, model.expect, model.http, model.expect_status,
                     tuple(model.command) if model.command else None, model.interval_s, model.timeout_s,
                     model.failures)


@dataclass(frozen=True, slots=True)
class ProbeVerdict:
    """What the probes of one service say now. Times are Unix seconds."""

    kind: str
    hung: bool = False
    failures: int = 0  # consecutive failed attempts
    error: str | None = None  # the last failed attempt's error (kept until a success)
    failing_since: float | None = None  # the first failure of the current streak
    hung_since: float | None = None
    last_ok: float | None = None
    checked: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hung": self.hung, "failures": self.failures, "error": self.error,
                "failing_since": self.failing_since, "hung_since": self.hung_since, "last_ok": self.last_ok,
                "checked": self.checked}


# --- one attempt of each kind ----------------------------------------------------------------------

async def probe_tcp(host_port: str, expect: str | None, timeout_s: float) -> str:
    host, _, port = host_port.rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            try:
                if expect is None:
                    return "connected"
                seen = b""
                want = expect.encode()
                while want not in seen and len(seen) < 4096:
                    chunk = await reader.read(4096)
                    if not chunk:
                        raise ProbeError(f"tcp {host_port}: closed before sending {expect!r} (got {seen[:80]!r})")
                    seen += chunk
                return f"got {expect!r}"
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except TimeoutError:
        raise ProbeError(f"tcp {host_port}: no {'answer' if expect else 'connection'} within {timeout_s:g} s") \
            from None
    except OSError as exc:
        raise ProbeError(f"tcp {host_port}: {os.strerror(exc.errno) if exc.errno else exc}") from None


async def probe_http(client: httpx.AsyncClient, url: str, expect_status: int, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            answer = await client.get(url, timeout=timeout_s)
    except (TimeoutError, httpx.TimeoutException):
        raise ProbeError(f"http {url}: no answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise ProbeError(f"http {url}: {type(exc).__name__}: {exc}") from None
    if answer.status_code != expect_status:
        raise ProbeError(f"http {url}: status {answer.status_code}, expected {expect_status}")
    return f"status {answer.status_code}"


async def probe_command(argv: tuple[str, ...], timeout_s: float, cwd: str | None) -> str:
    try:
        done = await run_command(argv, timeout_s, cwd=cwd)
    except CommandTimeout:
        raise ProbeError(f"command {argv[0]}: no exit within {timeout_s:g} s (killed)") from None
    except CommandError as exc:
        raise ProbeError(f"probe command cannot run: {exc}") from None
    if done.returncode != 0:
        tail = f": {done.output[-200:]}" if done.output else ""
        raise ProbeError(f"command {argv[0]} exited {done.returncode}{tail}")
    return "exit 0"


def probe_ami(ami: Any) -> str:
    if ami is None:
        raise ProbeError("ami: this agent has no AMI link")
    snap = ami.snapshot()
    if not snap.connected:
        raise ProbeError(f"ami: {snap.error or 'not connected'}")
    return "AMI link up"


# --- the runner --------------------------------------------------------------------------------------

class ProbeRunner:
    """The probes of one host's services: one task per probe. `start()`, `stop()`, `verdicts()`."""

    def __init__(self, specs: Mapping[str, ProbeSpec], *, is_active: Callable[[str], bool],
                 on_change: Callable[[str, ProbeVerdict], None] = lambda name, verdict: None,
                 ami: Any = None, cwd: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.specs = dict(specs)
        self._is_active = is_active
        self._on_change = on_change
        self._ami = ami
        self._cwd = cwd
        self._clock = clock
        self._verdicts = {n: ProbeVerdict(s.kind) for n, s in self.specs.items()}
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self.attempts = 0

    def verdicts(self) -> dict[str, ProbeVerdict]:
        return dict(self._verdicts)

    def verdict(self, name: str) -> ProbeVerdict | None:
        return self._verdicts.get(name)

    def reset(self, name: str) -> None:
        """Forget the failure streak (the service was stopped, started or restarted)."""
        old = self._verdicts.get(name)
        if old is not None and (old.failures or old.hung or old.error):
            self._set(name, ProbeVerdict(old.kind, last_ok=old.last_ok, checked=old.checked))

    async def start(self) -> None:
        if self._tasks or not self.specs:
            return
        self._client = httpx.AsyncClient(headers={"User-Agent": "ccfo-agent-probe"}, follow_redirects=False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop(n), name=f"probe-{n}") for n in self.specs]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def alive(self) -> bool:
        return not any(t.done() for t in self._tasks)

    async def _loop(self, name: str) -> None:
        spec = self.specs[name]
        while True:
            due = time.monotonic() + spec.interval_s
            try:
                if self._is_active(name):
                    await self.probe_once(name)
                else:
                    self.reset(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end this service's probes
                log.exception("probe of %s failed unexpectedly", name)
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def attempt(self, spec: ProbeSpec) -> str:
        """One probe attempt; raises ProbeError on failure."""
        match spec.kind:
            case "tcp":
                return await probe_tcp(spec.tcp or "", spec.expect, spec.timeout_s)
            case "http":
                if self._client is None:
                    self._client = httpx.AsyncClient(headers={"User-Agent": "ccfo-agent-probe"})
                return await probe_http(self._client, spec.http or "", spec.expect_status, spec.timeout_s)
            case "command":
                return await probe_command(spec.command or (), spec.timeout_s, self._cwd)
            case "ami":
                return probe_ami(self._ami)
        raise ProbeError(f"unknown probe kind {spec.kind!r}")

    async def probe_once(self, name: str) -> ProbeVerdict:
        spec = self.specs[name]
        self.attempts += 1
        try:
            await self.attempt(spec)
            error = None
        except ProbeError as exc:
            error = str(exc)
        except Exception as exc:  # an odd library error is a failed probe, not a dead task
            error = f"probe error: {type(exc).__name__}: {exc}"
        now = self._clock()
        old = self._verdicts[name]
        if error is None:
            if old.hung:
                log.info("service %s answers its %s probe again", name, spec.kind)
            new = ProbeVerdict(spec.kind, last_ok=now, checked=now)
        else:
            failures = old.failures + 1
            hung = failures >= spec.failures
            new = replace(old, failures=failures, error=error, checked=now,
                          failing_since=old.failing_since if old.failing_since is not None else now,
                          hung=hung, hung_since=(old.hung_since or now) if hung else None)
            if hung and not old.hung:
                log.warning("service %s hung: %d %s probe(s) failed in a row: %s", name, failures, spec.kind, error)
        self._set(name, new)
        return new

    def _set(self, name: str, new: ProbeVerdict) -> None:
        self._verdicts[name] = new
        try:
            self._on_change(name, new)  # every verdict; the manager tells listeners only of state changes
        except Exception:
            log.exception("probe change listener failed")
