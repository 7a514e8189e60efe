"""The systemd backend: `systemctl is-active|start|stop|restart UNIT`, blocking, each under a timeout.

`start`/`stop`/`restart` wait for systemd's job to finish (no `--no-block`): the agent reports an action
done only when it is, and `--no-ask-password` keeps a polkit prompt from hanging a daemon. `is-active`
prints the state; its text is what we map (exit code 0 = active is only the fallback when it printed
nothing). Transitional states (activating, deactivating) are `unknown`: neither running nor stopped yet.
`kill` is `systemctl kill --signal=SIGKILL UNIT` (every process of the unit's cgroup), for a stop that did
not finish in time: the manager escalates to it.
"""

from __future__ import annotations

from agents.services.base import ServiceError, ServiceSpec, ServiceState, ServiceTimeout
from agents.services.proc import CommandError, CommandTimeout, run_command

_TEXT_STATES = {
    "active": ServiceState.ACTIVE,
    "reloading": ServiceState.ACTIVE,
    "refreshing": ServiceState.ACTIVE,
    "inactive": ServiceState.INACTIVE,
    "failed": ServiceState.FAILED,
}


def map_is_active(returncode: int, output: str) -> ServiceState:
    """Map `systemctl is-active` output and exit code to a ServiceState."""
    words = output.split()
    if words:
        return _TEXT_STATES.get(words[-1], ServiceState.UNKNOWN)
    return ServiceState.ACTIVE if returncode == 0 else ServiceState.UNKNOWN


class SystemdBackend:
    """Services as systemd units. `systemctl` is looked up on PATH unless given as a path."""

    kind = "systemd"

    def __init__(self, *, systemctl: str = "systemctl", status_timeout_s: float = 5.0,
                 action_timeout_s: float = 90.0) -> None:
        self.systemctl = systemctl
        self.status_timeout_s = status_timeout_s
        self.action_timeout_s = action_timeout_s

    def _argv(self, verb: str, spec: ServiceSpec) -> tuple[str, ...]:
        return (self.systemctl, "--no-ask-password", verb, spec.unit_name)

    async def status(self, spec: ServiceSpec) -> ServiceState:
        try:
            done = await run_command(self._argv("is-active", spec), self.status_timeout_s)
        except (CommandError, CommandTimeout):
            return ServiceState.UNKNOWN
        return map_is_active(done.returncode, done.output)

    async def _do(self, verb: str, spec: ServiceSpec, timeout_s: float | None = None,
                  argv: tuple[str, ...] | None = None) -> None:
        try:
            done = await run_command(argv or self._argv(verb, spec), timeout_s or self.action_timeout_s)
        except CommandTimeout as exc:
            raise ServiceTimeout(spec.name, f"systemctl {verb} {spec.unit_name}: {exc}") from exc
        except CommandError as exc:
            raise ServiceError(spec.name, f"systemctl {verb} {spec.unit_name}: {exc}") from exc
        if done.returncode != 0:
            tail = f": {done.output}" if done.output else ""
            raise ServiceError(spec.name, f"systemctl {verb} {spec.unit_name} exited {done.returncode}{tail}")

    async def start(self, spec: ServiceSpec) -> None:
        await self._do("start", spec)

    async def stop(self, spec: ServiceSpec, timeout_s: float | None = None) -> None:
        await self._do("stop", spec, timeout_s)

    async def kill(self, spec: ServiceSpec) -> str:
        """`systemctl kill --signal=SIGKILL UNIT`: every process of the unit's control group (whatever its
        KillMode), then systemd sees the unit die; the stop job still queued finishes at once."""
        argv = (self.systemctl, "--no-ask-password", "kill", "--kill-whom=all", "--signal=SIGKILL", spec.unit_name)
        await self._do("kill", spec, self.status_timeout_s, argv)
        return f"systemctl kill --signal=SIGKILL {spec.unit_name}"

    async def restart(self, spec: ServiceSpec) -> None:
        await self._do("restart", spec)
