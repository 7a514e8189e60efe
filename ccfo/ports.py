"""The interfaces the engine and executor need from the world, and the errors adapters raise.

Adapters (HTTP to agents, SNMP to the PDU, the journal) implement these; the engine and executor know
nothing else of them. Timing contract: every method returns or raises within its own timeout; none
blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ccfo.domain.health import HostHealth


class AgentUnreachable(Exception):
    """The agent did not answer (connection refused, timeout, TLS failure)."""


class AgentActionFailed(Exception):
    """The agent answered and the action failed; the message is the agent's reason."""


class TermRefused(AgentActionFailed):
    """The agent refused the action: it has seen a newer leader term than ours (we are deposed)."""

    def __init__(self, host: str, term: int | None, highest: int, detail: str) -> None:
        self.host = host
        self.term = term
        self.highest = highest
        super().__init__(f"{host}: refused our leader term {term}: the agent has seen term {highest} ({detail})")


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
                     reason: str | None = None, timeout_s: float = 30.0, term: int | None = None,
                     job: str | None = None, file: str | None = None, value: str | None = None,
                     valid_until: float | None = None) -> ActionResult:
        """Run an agent action, idempotent by `action_id` (job: job_enable/job_disable; file and value:
        set_file). `term`: the leader's fencing token (controller HA); an agent that has seen a newer term
        refuses with TermRefused, an AgentActionFailed. `valid_until`: the end of the leader's acting
        window (Unix time); an agent refuses, with TermRefused too, an action that arrives after it."""
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


class Clock(Protocol):
    """The one clock of the engine and the executor. Tests inject a virtual one that moves only when
    told, so timers, debounces and deadlines are tested without sleeping (ccfo.platform.clock has the
    system's)."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch: journal timestamps, decisions, plan records."""
        ...

    def monotonic(self) -> float:
        """Seconds that never jump (NTP steps included): deadlines and durations."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        ...


class WorkKind(StrEnum):
    PLAN = "plan"
    DRILL = "drill"


@dataclass(frozen=True, slots=True)
class Work:
    """A piece of work that changes the site: a plan, or a drill (which runs plans of its own)."""

    kind: WorkKind
    id: str
    title: str
    by: str

    def describe(self) -> str:
        return f"{self.kind.value} {self.id} ({self.title})"


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to run `work`, until released. `within` is the drill claim a plan runs inside."""

    work: Work
    token: int
    within: Claim | None = None


class WorkRefused(Exception):
    """Work cannot start now; the message says why (the API answers 409 with it)."""


class WorkBusy(WorkRefused):
    """Another piece of work holds the site; the message names it."""

    def __init__(self, holder: Work) -> None:
        super().__init__(f"{holder.describe()} is running; one piece of work at a time")
        self.holder = holder


class NotActing(WorkRefused):
    """This controller may not act now: it is a follower, or a leader whose lease may have lapsed."""

    def __init__(self, why: str) -> None:
        super().__init__(f"this controller does not act now: {why}")


class Leadership(Protocol):
    """Whether this controller may change the world now, and the fencing token it acts under.

    A single controller always acts, with no term. A member of a controller cluster acts only while it
    holds the etcd leader key and its lease is certainly alive (controller.cluster.election.Election);
    its term rides on every agent action, so an agent refuses a deposed leader. Asked before every claim
    of work and before every plan step."""

    def is_acting(self) -> bool:
        ...

    @property
    def term(self) -> int | None:
        ...

    def describe(self) -> str:
        """One line for refusals and the status: who leads, with which term."""
        ...

    def valid_until(self) -> float | None:
        """Until when (Unix time) this controller may act under its term: the end of its acting window,
        sent with each agent action so an agent refuses one that arrives later (a leader frozen between
        its check and its send). None: no deadline (a controller alone)."""
        ...


class WorkClaim(Protocol):
    """Admission of work: every path that starts a plan or a drill claims here first, and the claim is
    released only when the work has ended. One piece of work at a time; a drill's own plans (and the
    controller's automatic plans during a drill) run inside the drill's claim, one at a time too.

    `acquire` checks and claims as one step: in process, with no await in between; across controller
    members, as one etcd transaction (compare the claim key's version, put it with a lease), which is
    why it is a coroutine."""

    async def acquire(self, work: Work, *, within: Claim | None = None) -> Claim:
        """Claim the site for `work` (inside `within`, a drill's claim, if given), or raise WorkBusy."""
        ...

    async def release(self, claim: Claim) -> None:
        """End a claim; releasing a claim that is no longer held does nothing."""
        ...

    def holders(self) -> tuple[Work, ...]:
        """The work holding the site now, outermost first (a drill, then the plan inside it)."""
        ...

    def current(self) -> Claim | None:
        """The outermost claim held now."""
        ...
