"""The command backend: configured start/stop/status argv lists, for anything that is not a systemd unit.

Status follows the LSB/systemd convention: exit 0 = active, 3 = inactive, anything else = failed (LSB 1
"dead, pid file exists" is a crash: failed), no answer in time = unknown. A restart is stop then start
(there is no restart command in the config). `kill` runs the optional kill command (SIGKILL of every
process of the service), which the manager uses when a stop did not finish in time. Commands run with
`cwd` (the config directory, so a lab config can use relative paths) and never through a shell.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.services.base import ServiceError, ServiceNotConfigured, ServiceSpec, ServiceState, ServiceTimeout
from agents.services.proc import CommandError, CommandTimeout, run_command

EXIT_ACTIVE = 0
EXIT_INACTIVE = 3


def map_status_exit(returncode: int) -> ServiceState:
    if returncode == EXIT_ACTIVE:
        return ServiceState.ACTIVE
    if returncode == EXIT_INACTIVE:
        return ServiceState.INACTIVE
    return ServiceState.FAILED


class CommandBackend:
    """Services driven by their own start/stop/status commands."""

    kind = "command"

    def __init__(self, *, cwd: str | None = None, env: Mapping[str, str] | None = None,
                 status_timeout_s: float = 5.0, action_timeout_s: float = 60.0) -> None:
        self.cwd = cwd
        self.env = env
        self.status_timeout_s = status_timeout_s
        self.action_timeout_s = action_timeout_s

    async def status(self, spec: ServiceSpec) -> ServiceState:
        if not spec.status:
            return ServiceState.UNKNOWN
        try:
            done = await run_command(spec.status, self.status_timeout_s, cwd=self.cwd, env=self.env)
        except (CommandError, CommandTimeout):
            return ServiceState.UNKNOWN
        return map_status_exit(done.returncode)

    async def _do(self, verb: str, spec: ServiceSpec, argv: tuple[str, ...] | None,
                  timeout_s: float | None = None) -> None:
        if not argv:
            raise ServiceNotConfigured(spec.name, f"no {verb} command configured")
        try:
            done = await run_command(argv, timeout_s or self.action_timeout_s, cwd=self.cwd, env=self.env)
        except CommandTimeout as exc:
            raise ServiceTimeout(spec.name, f"{verb}: {exc}") from exc
        except CommandError as exc:
            raise ServiceError(spec.name, f"{verb}: {exc}") from exc
        if done.returncode != 0:
            tail = f": {done.output}" if done.output else ""
            raise ServiceError(spec.name, f"{verb} command exited {done.returncode}{tail}")

    async def start(self, spec: ServiceSpec) -> None:
        await self._do("start", spec, spec.start)

    async def stop(self, spec: ServiceSpec, timeout_s: float | None = None) -> None:
        await self._do("stop", spec, spec.stop, timeout_s)

    async def kill(self, spec: ServiceSpec) -> str:
        await self._do("kill", spec, spec.kill)
        return f"kill command {spec.kill[0] if spec.kill else ''} (SIGKILL)"

    async def restart(self, spec: ServiceSpec) -> None:
        await self.stop(spec)
        await self.start(spec)
