"""Service backends (systemd, command) and the agent's service manager; see base.py for the interface.

Build from the site config with `from_host_config`; everything here runs commands only through
`asyncio.create_subprocess_exec` (never a shell) and under a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.services.base import (
    ServiceBackend,
    ServiceError,
    ServiceNotConfigured,
    ServiceSpec,
    ServiceState,
    ServiceTimeout,
)
from agents.services.command import CommandBackend
from agents.services.manager import (
    ServiceManager,
    ServiceStatus,
    ServiceVerifyFailed,
    StopOutcome,
    UnknownService,
)
from agents.services.systemd import SystemdBackend

__all__ = [
    "CommandBackend",
    "ServiceBackend",
    "ServiceError",
    "ServiceManager",
    "ServiceNotConfigured",
    "ServiceSpec",
    "ServiceState",
    "ServiceStatus",
    "ServiceTimeout",
    "ServiceVerifyFailed",
    "StopOutcome",
    "SystemdBackend",
    "UnknownService",
    "make_backend",
    "spec_from_model",
]


def spec_from_model(name: str, model: object) -> ServiceSpec:
    """A ServiceSpec from a config ServiceModel (duck-typed: unit, start, stop, status)."""
    def argv(field: str) -> tuple[str, ...] | None:
        value = getattr(model, field, None)
        return tuple(value) if value else None
    return ServiceSpec(name, getattr(model, "unit", None), argv("start"), argv("stop"), argv("status"), argv("kill"),
                       float(getattr(model, "stop_timeout_s", 5.0)))


def make_backend(kind: str, *, cwd: str | None = None, env: Mapping[str, str] | None = None,
                 status_timeout_s: float = 5.0, action_timeout_s: float = 60.0) -> ServiceBackend:
    if kind == "systemd":
        return SystemdBackend(status_timeout_s=status_timeout_s, action_timeout_s=action_timeout_s)
    if kind == "command":
        return CommandBackend(cwd=cwd, env=env, status_timeout_s=status_timeout_s,
                              action_timeout_s=action_timeout_s)
    raise ValueError(f"unknown service backend {kind!r}")
