"""The agent's view of its managed services and board driver: last known state, since when, and changes.

Wraps a backend with what the report and the actions need: the state of every service (including the
board driver, handled the same way: isolate_board = stop it, restore_board = start it), the time of the
last observed change, change listeners (the reporter pushes on change), and verified changes: a `stop`
returns only once the service reports inactive, a `start` once it reports active. Changes to one service
are serialised; a status result that started before a newer one finished is discarded, so a slow poll
cannot overwrite a fresher state. `since` is the first time *this agent* saw the state.

Liveness probes (agents/probes.py) feed `set_probe`: a service the backend says is active but whose
probe verdict is hung is reported `hung` (since the verdict turned), with the probe's last error. A stop
escalates: when the stop command does not bring the service down within the spec's `stop_timeout_s`
(a hung process ignores SIGTERM), the backend's `kill` (SIGKILL of all its processes) follows; the
returned `StopOutcome` says which was needed, for the action's result and the controller's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.services.base import (
    ServiceBackend,
    ServiceError,
    ServiceNotConfigured,
    ServiceSpec,
    ServiceState,
    ServiceTimeout,
)

log = logging.getLogger(__name__)


class ServiceVerifyFailed(ServiceError):
    """The command succeeded but the service did not reach the wanted state in time."""


class UnknownService(KeyError):
    """Not a service managed on this host."""


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    state: ServiceState
    since: float  # Unix time of the last change this agent observed (or of its first check)
    checked: float | None  # Unix time of the last check; None: never checked
    probe: Mapping[str, object] | None = None  # the probe verdict (agents/probes.py), when one is configured

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state.value, "since": self.since}
        if self.probe is not None:
            out["probe"] = dict(self.probe)
        return out


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """How a stop ended: `escalated` when the stop command was not enough and the processes were killed."""

    status: ServiceStatus
    escalated: bool
    detail: str


class ServiceManager:
    """Services and board driver of one host, over one backend. A managed server has no board: `driver`
    None, and board actions raise UnknownService."""

    def __init__(self, backend: ServiceBackend, services: Mapping[str, ServiceSpec], driver: ServiceSpec | None, *,
                 clock: Callable[[], float] = time.time, verify_timeout_s: float = 10.0,
                 verify_interval_s: float = 0.1) -> None:
        if driver is not None and driver.name in services:
            raise ValueError(f"the board driver {driver.name!r} is also a managed service")
        self.backend = backend
        self.driver_name = driver.name if driver is not None else None
        self._specs: dict[str, ServiceSpec] = {**services, **({driver.name: driver} if driver is not None else {})}
        self._clock = clock
        self.verify_timeout_s = verify_timeout_s
        self.verify_interval_s = verify_interval_s
        now = clock()
        self._known = {n: ServiceStatus(n, ServiceState.UNKNOWN, now, None) for n in self._specs}
        self._observed_at = dict.fromkeys(self._specs, 0.0)  # monotonic start of the recorded check
        self._locks = {n: asyncio.Lock() for n in self._specs}
        self._listeners: list[Callable[[], None]] = []
        self._probes: dict[str, object] = {}  # name -> ProbeVerdict (duck-typed: hung, hung_since, to_dict())
        self._reset_listeners: list[Callable[[str], None]] = []

    # --- views -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The managed services (not the board driver), in config order."""
        return [n for n in self._specs if n != self.driver_name]

    def has(self, name: str) -> bool:
        return name in self._specs and name != self.driver_name

    def services(self) -> dict[str, ServiceStatus]:
        return {n: self.effective(n) for n in self.names()}

    def backend_state(self, name: str) -> ServiceState:
        """What the backend last said (active even when hung)."""
        return self._known[name].state

    def effective(self, name: str) -> ServiceStatus:
        """The reported status: `hung` when active but its probe says hung; the probe verdict attached."""
        known = self._known[name]
        verdict: Any = self._probes.get(name)
        if verdict is None:
            return known
        probe = verdict.to_dict()
        if known.state is ServiceState.ACTIVE and verdict.hung:
            since = verdict.hung_since if verdict.hung_since is not None else known.since
            return ServiceStatus(name, ServiceState.HUNG, since, known.checked, probe)
        return ServiceStatus(name, known.state, known.since, known.checked, probe)

    def set_probe(self, name: str, verdict: object) -> None:
        """The probe runner's verdict for `name` (listeners hear when hung-ness changes the state)."""
        before = self.effective(name).state if name in self._known else None
        self._probes[name] = verdict
        after = self.effective(name).state
        if before is not None and before is not after:
            log.info("service %s: %s -> %s (probe)", name, before.value, after.value)
            self._changed()

    def add_reset_listener(self, callback: Callable[[str], None]) -> None:
        """`callback(name)` before a service is stopped, started or restarted (the probe streak is reset)."""
        self._reset_listeners.append(callback)

    def driver(self) -> ServiceStatus:
        return self._known[self._driver()]

    def _driver(self) -> str:
        if self.driver_name is None:
            raise UnknownService("board driver (this machine has no board)")
        return self.driver_name

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs (synchronously, must not raise) whenever a state changes."""
        self._listeners.append(callback)

    # --- observation -------------------------------------------------------------------------
    def _spec(self, name: str) -> ServiceSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownService(name) from None

    def _record(self, name: str, state: ServiceState, started: float) -> ServiceStatus:
        if started < self._observed_at[name]:
            return self._known[name]  # a newer observation already landed
        self._observed_at[name] = started
        old = self._known[name]
        now = self._clock()
        if state is old.state and old.checked is not None:
            self._known[name] = ServiceStatus(name, state, old.since, now)
            return self._known[name]
        self._known[name] = ServiceStatus(name, state, now, now)
        if old.checked is not None:
            log.info("service %s: %s -> %s", name, old.state.value, state.value)
        self._changed()
        return self._known[name]

    def _changed(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # an observer must never break the manager
                log.exception("service change listener failed")

    async def check(self, name: str) -> ServiceStatus:
        spec = self._spec(name)
        started = time.monotonic()
        state = await self.backend.status(spec)
        return self._record(name, state, started)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(n) for n in self._specs))

    async def poll_forever(self, interval_s: float) -> None:
        """Check every service every `interval_s` (the safety net that catches a crash). Owned by the
        runtime, which cancels it; an unexpected error is logged and the loop goes on."""
        while True:
            started = time.monotonic()
            try:
                await self.check_all()
            except Exception:
                log.exception("service poll failed")
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))

    # --- changes -----------------------------------------------------------------------------
    async def _wait_for(self, name: str, wanted: ServiceState, verb: str,
                        timeout_s: float | None = None, *, also: ServiceState | None = None) -> ServiceStatus:
        timeout = self.verify_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while True:
            status = await self.check(name)
            if status.state is wanted or status.state is also:
                return status
            if time.monotonic() >= deadline:
                raise ServiceVerifyFailed(name, f"{verb} finished but the service is {status.state.value}, "
                                                f"not {wanted.value}, after {timeout:g} s")
            await asyncio.sleep(self.verify_interval_s)

    def _reset(self, name: str) -> None:
        for callback in self._reset_listeners:
            try:
                callback(name)
            except Exception:
                log.exception("service reset listener failed")

    async def _change(self, name: str, verb: str, wanted: ServiceState) -> ServiceStatus:
        spec = self._spec(name)
        self._reset(name)
        async with self._locks[name]:
            try:
                await getattr(self.backend, verb)(spec)
            except ServiceError:
                with contextlib.suppress(Exception):
                    await self.check(name)  # the report shows what the failed command left behind
                raise
            return await self._wait_for(name, wanted, verb)

    async def start(self, name: str) -> ServiceStatus:
        return await self._change(name, "start", ServiceState.ACTIVE)

    async def stop(self, name: str) -> ServiceStatus:
        return (await self.stop_escalating(name)).status

    async def stop_escalating(self, name: str) -> StopOutcome:
        """Stop `name`: its stop command, given `stop_timeout_s` to bring it down; if it does not (a hung
        process never handles SIGTERM), kill its processes (SIGKILL) and verify it is down."""
        spec = self._spec(name)
        was = self.effective(name).state
        self._reset(name)
        async with self._locks[name]:
            t0 = time.monotonic()
            grace = min(spec.stop_timeout_s, self.verify_timeout_s)
            try:
                await self.backend.stop(spec, timeout_s=grace)
                left = max(0.0, grace - (time.monotonic() - t0))
                status = await self._wait_for(name, ServiceState.INACTIVE, "stop", left)
                return StopOutcome(status, False, f"{name} stopped by its stop command (SIGTERM) "
                                                  f"in {time.monotonic() - t0:.1f} s, was {was.value}")
            except ServiceTimeout:
                failure: ServiceError = ServiceVerifyFailed(
                    name, f"the stop command did not finish within {grace:g} s")
            except ServiceVerifyFailed as exc:
                failure = exc
            except ServiceNotConfigured:
                raise
            except ServiceError as exc:
                failure = exc
            why = str(failure).removeprefix(f"{name}: ")
            log.warning("service %s (was %s): %s: escalating to SIGKILL", name, was.value, why)
            try:
                how = await self.backend.kill(spec)
            except ServiceNotConfigured as exc:
                raise type(failure)(name, f"{why}; no kill command to escalate to") from exc
            except ServiceError as exc:
                with contextlib.suppress(Exception):
                    await self.check(name)
                raise ServiceError(name, f"{why}; escalation to SIGKILL failed: {exc}") from exc
            status = await self._wait_for_down(name, "kill")
            return StopOutcome(status, True, f"{name} did not stop ({why}; was {was.value}): escalated to SIGKILL "
                                             f"({how}); {name} is {status.state.value}")

    async def _wait_for_down(self, name: str, verb: str) -> ServiceStatus:
        """After a kill: inactive or failed (a killed daemon may leave a stale pid file) both mean down."""
        return await self._wait_for(name, ServiceState.INACTIVE, verb, also=ServiceState.FAILED)

    async def restart(self, name: str) -> ServiceStatus:
        return await self._change(name, "restart", ServiceState.ACTIVE)

    async def isolate_board(self) -> ServiceStatus:
        """Take the board out of service: stop the board driver (rule: primary line/driver fault)."""
        return await self._change(self._driver(), "stop", ServiceState.INACTIVE)

    async def restore_board(self) -> ServiceStatus:
        return await self._change(self._driver(), "start", ServiceState.ACTIVE)
