"""The interfaces the engine and executor need from the world, and the errors adapters raise.

Adapters (HTTP to agents, SNMP to the PDU, the journal) implement these; the engine and executor know
nothing else of them. Timing contract: every method returns or raises within its own timeout; none
blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ccfo.domain.health import HostHealth


class AgentUnreachable(Exception):
    """The agent did not answer (connection refused, timeout, TLS failure)."""


class AgentActionFailed(Exception):
    """The agent answered and the action failed; the message is the agent's reason."""


class FenceFailed(Exception):
    """The PDU could not power the host off, or the read-back did not confirm it."""


class RouteFailed(Exception):
    """The inbound router (the SIP front) could not be set, or the read-back did not confirm it."""


class InboundRouter(Protocol):
    """Which hosts receive new inbound calls, set at the site's SIP front (routing.method: kamailio)."""

    async def route(self, hosts: tuple[str, ...]) -> str:
        """Set and read back; returns what was done; raises RouteFailed with the reason."""
        ...


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    detail: str
    data: Mapping[str, Any]


class AgentClient(Protocol):
    async def report(self, host: str) -> HostHealth:
        """The host's current report, fetched now (not the last pushed one)."""
        ...

    async def action(self, host: str, action_id: str, action: str, *, service: str | None = None,
                     to_site: str | None = None, hosts: list[str] | None = None,
                     reason: str | None = None, timeout_s: float = 30.0) -> ActionResult:
        """Run an agent action, idempotent by `action_id`."""
        ...


class Fencer(Protocol):
    async def power_off(self, host: str) -> None:
        """Cut the host's power and read it back; raise FenceFailed unless it is confirmed off."""
        ...

    async def power_on(self, host: str) -> None:
        ...

    @property
    def available(self) -> bool:
        """False when the site has no automatic fencing (operator confirmation only)."""
        ...


class Notifier(Protocol):
    async def notify(self, event: str, message: str, data: Mapping[str, Any]) -> None:
        """Tell the operators / the NMS. Must never raise into the caller."""
        ...
