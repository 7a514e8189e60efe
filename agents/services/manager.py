"""The agent's view of its managed services and board driver: last known state, since when, and changes.

Wraps a backend with what the report and the actions need: the state of every service (including the
board driver, handled the same way: isolate_board = stop it, restore_board = start it), the time of the
last observed change, change listeners (the reporter pushes on change), and verified changes: a `stop`
returns only once the service reports inactive, a `start` once it reports active. Changes to one service
are serialised; a status result that started before a newer one finished is discarded, so a slow poll
cannot overwrite a fresher state. `since` is the first time *this agent* saw the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agents.services.base import ServiceBackend, ServiceError, ServiceSpec, ServiceState

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

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state.value, "since": self.since}


class ServiceManager:
    """Services and board driver of one host, over one backend."""

    def __init__(self, backend: ServiceBackend, services: Mapping[str, ServiceSpec], driver: ServiceSpec, *,
                 clock: Callable[[], float] = time.time, verify_timeout_s: float = 10.0,
                 verify_interval_s: float = 0.1) -> None:
        if driver.name in services:
            raise ValueError(f"the board driver {driver.name!r} is also a managed service")
        self.backend = backend
        self.driver_name = driver.name
        self._specs: dict[str, ServiceSpec] = {**services, driver.name: driver}
        self._clock = clock
        self.verify_timeout_s = verify_timeout_s
        self.verify_interval_s = verify_interval_s
        now = clock()
        self._known = {n: ServiceStatus(n, ServiceState.UNKNOWN, now, None) for n in self._specs}
        self._observed_at = dict.fromkeys(self._specs, 0.0)  # monotonic start of the recorded check
        self._locks = {n: asyncio.Lock() for n in self._specs}
        self._listeners: list[Callable[[], None]] = []

    # --- views -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The managed services (not the board driver), in config order."""
        return [n for n in self._specs if n != self.driver_name]

    def has(self, name: str) -> bool:
        return name in self._specs and name != self.driver_name

    def services(self) -> dict[str, ServiceStatus]:
        return {n: self._known[n] for n in self.names()}

    def driver(self) -> ServiceStatus:
        return self._known[self.driver_name]

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
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # an observer must never break the manager
                log.exception("service change listener failed")
        return self._known[name]

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
    async def _wait_for(self, name: str, wanted: ServiceState, verb: str) -> ServiceStatus:
        deadline = time.monotonic() + self.verify_timeout_s
        while True:
            status = await self.check(name)
            if status.state is wanted:
                return status
            if time.monotonic() >= deadline:
                raise ServiceVerifyFailed(name, f"{verb} finished but the service is {status.state.value}, "
                                                f"not {wanted.value}, after {self.verify_timeout_s:g} s")
            await asyncio.sleep(self.verify_interval_s)

    async def _change(self, name: str, verb: str, wanted: ServiceState) -> ServiceStatus:
        spec = self._spec(name)
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
        return await self._change(name, "stop", ServiceState.INACTIVE)

    async def restart(self, name: str) -> ServiceStatus:
        return await self._change(name, "restart", ServiceState.ACTIVE)

    async def isolate_board(self) -> ServiceStatus:
        """Take the board out of service: stop the board driver (rule: primary line/driver fault)."""
        return await self._change(self.driver_name, "stop", ServiceState.INACTIVE)

    async def restore_board(self) -> ServiceStatus:
        return await self._change(self.driver_name, "start", ServiceState.ACTIVE)
