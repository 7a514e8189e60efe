"""What a service backend is: the state enum, the per-service spec, the backend interface and its errors.

The agent asks a backend a few things about a service (status, start, stop, kill, restart) and nothing else;
how that is done (systemctl, configured commands) stays behind `ServiceBackend`. Holds no state and
runs no process: `proc.py` runs commands, `manager.py` remembers states and when they changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ServiceState(StrEnum):
    """A service's state as the host reports it. `unknown`: the status check itself did not answer."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    FAILED = "failed"
    HUNG = "hung"  # active per the backend, but failing its liveness probe (agents/probes.py)
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One managed service: systemd uses `unit` (default NAME.service), the command backend the argvs."""

    name: str
    unit: str | None = None
    start: tuple[str, ...] | None = None
    stop: tuple[str, ...] | None = None
    status: tuple[str, ...] | None = None
    kill: tuple[str, ...] | None = None  # command backend: SIGKILL every process of the service
    stop_timeout_s: float = 5.0  # how long a stop may take before the manager escalates to kill

    @property
    def unit_name(self) -> str:
        return self.unit or f"{self.name}.service"


class ServiceError(Exception):
    """A service command failed; the message is for an operator (no secrets: argv and output tail)."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class ServiceTimeout(ServiceError):
    """A service command did not finish within its timeout (it was killed)."""


class ServiceNotConfigured(ServiceError):
    """The backend has no way to do this for the service (e.g. no stop command configured)."""


class ServiceBackend(Protocol):
    """How to query and change a service. Every method has its own timeout; none raises anything but
    ServiceError (and its subclasses). `status` never raises for a slow or odd answer: it says unknown."""

    kind: str

    async def status(self, spec: ServiceSpec) -> ServiceState: ...

    async def start(self, spec: ServiceSpec) -> None: ...

    async def stop(self, spec: ServiceSpec, timeout_s: float | None = None) -> None: ...

    async def kill(self, spec: ServiceSpec) -> str:
        """SIGKILL every process of the service (a stop that did not finish); returns what was done."""
        ...

    async def restart(self, spec: ServiceSpec) -> None: ...
