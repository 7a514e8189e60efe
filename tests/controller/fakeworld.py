"""An in-memory stand-in for the agents and the PDU, for the executor's and engine's unit tests.

It is a test double for what is remote (agents over HTTP, a PDU over SNMP); the integration tests run
the same executor against real agents on the lab. It records every action id it ran, so tests can show
that a resumed plan does not run an agent action twice, and every action in the order it ran (`log`), so
tests can check the order across machines. The site's managed servers are fake agents too (no board, their
services running unless the server is a backup). Like the real agents (agents/terms.py), each fake agent
remembers the highest leader term it has seen and refuses an older one (TermRefused); `terms` records the
term each action carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccfo.domain.health import DriverState, HostHealth, ServiceState, SpanHealth
from ccfo.domain.site import ServerRole, Site
from ccfo.domain.state import SiteState
from ccfo.ports import ActionResult, AgentActionFailed, AgentUnreachable, FenceFailed, TermRefused


@dataclass
class FakeHost:
    services: dict[str, ServiceState]
    driver: DriverState = DriverState.UP
    reachable: bool = True
    powered: bool = True
    calls: int = 0
    db_site: str = "shenzhen"
    spans: int = 1
    span_alarm: str = "ok"
    dchannel: bool | None = True  # None: unknown (the agent's AMI is not connected)
    fail_actions: set[str] = field(default_factory=set)  # "start:cti" makes that action fail
    jobs: dict[str, bool] = field(default_factory=dict)  # a server's scheduled jobs: enabled?
    files: dict[str, str] = field(default_factory=dict)  # a server's switch files: the value name they hold
    ignore_stop: set[str] = field(default_factory=set)  # a hung service: stop "succeeds" but it keeps running
    highest_term: int = 0  # the newest leader term this agent has seen (controller HA)


class FakeWorld:
    def __init__(self, site: Site, state: SiteState, pdu: bool = True) -> None:
        self.hosts: dict[str, FakeHost] = {}
        for h in site.hosts:
            running = set(h.layout(state.host(h.id).duty))
            self.hosts[h.id] = FakeHost({s.name: ServiceState.ACTIVE if s.name in running else ServiceState.INACTIVE
                                         for s in h.services}, spans=len(h.board.spans))
        self.servers: dict[str, FakeHost] = {}  # the managed servers' agents, apart from the IPC pair
        for server in site.servers:
            up = ServiceState.ACTIVE if server.role is ServerRole.ACTIVE else ServiceState.INACTIVE
            self.servers[server.id] = FakeHost({s: up for s in server.services}, spans=0,
                                               jobs={j.name: server.role is ServerRole.ACTIVE for j in server.jobs})
        self.log: list[tuple[str, str, str | None]] = []  # (machine, action, service) in the order they ran
        self.ran: list[str] = []
        self.terms: list[tuple[str, str, int | None]] = []  # (machine, action id, the term it carried)
        self.routes: list[tuple[str, tuple[str, ...]]] = []
        self._results: dict[str, ActionResult] = {}
        self.pdu = pdu
        self.power_offs: list[str] = []
        self.notices: list[tuple[str, str]] = []

    def machine(self, name: str) -> FakeHost:
        """An IPC host's or a managed server's fake agent."""
        return self.hosts[name] if name in self.hosts else self.servers[name]

    # AgentClient
    async def report(self, host: str) -> HostHealth:
        h = self.machine(host)
        if not h.reachable or not h.powered:
            raise AgentUnreachable(f"{host}: connection refused")
        spans = tuple(SpanHealth(i + 1, h.span_alarm, h.dchannel, 30) for i in range(h.spans))
        return HostHealth(host, 0.0, True, h.driver, spans, dict(h.services), ivr_calls=h.calls, db_site=h.db_site)

    async def action(self, host: str, action_id: str, action: str, *, service: str | None = None,
                     to_site: str | None = None, hosts: list[str] | None = None, reason: str | None = None,
                     timeout_s: float = 30.0, term: int | None = None, job: str | None = None,
                     file: str | None = None, value: str | None = None,
                     valid_until: float | None = None) -> ActionResult:
        h = self.machine(host)
        if not h.reachable or not h.powered:
            raise AgentUnreachable(f"{host}: connection refused")
        if term is not None:
            if term < h.highest_term:
                raise TermRefused(host, term, h.highest_term, "stale leader term")
            h.highest_term = term
        self.terms.append((host, action_id, term))
        if action_id in self._results:
            return self._results[action_id]
        self.ran.append(action_id)
        self.log.append((host, action, service or job or file))
        key = f"{action}:{service or job or file}" if service or job or file else action
        if key in h.fail_actions:
            raise AgentActionFailed(f"{key} failed on {host}")
        if action == "stop" and service not in h.ignore_stop:
            h.services[service or ""] = ServiceState.INACTIVE
        elif action in ("start", "restart"):
            h.services[service or ""] = ServiceState.ACTIVE
        elif action == "isolate_board":
            h.driver = DriverState.DOWN
        elif action == "restore_board":
            h.driver = DriverState.UP
        elif action == "repoint_db":
            h.db_site = to_site or ""
        elif action in ("job_enable", "job_disable"):
            if job not in h.jobs:
                raise AgentActionFailed(f"{host}: unknown job {job!r}")
            h.jobs[job] = action == "job_enable"
        elif action == "set_file":
            h.files[file or ""] = value or ""
        elif action == "route_inbound":
            self.routes.append((host, tuple(hosts or ())))
        result = ActionResult(True, f"{key} ok", {})
        self._results[action_id] = result
        return result

    # Fencer
    @property
    def available(self) -> bool:
        return self.pdu

    async def power_off(self, host: str) -> None:
        if not self.pdu:
            raise FenceFailed("no PDU")
        self.hosts[host].powered = False
        for s in self.hosts[host].services:
            self.hosts[host].services[s] = ServiceState.INACTIVE
        self.power_offs.append(host)

    async def power_on(self, host: str) -> None:
        self.hosts[host].powered = True

    # Notifier
    async def notify(self, event: str, message: str, data: object) -> None:
        self.notices.append((event, message))

    def critical_running(self) -> list[str]:
        return [h for h, fh in self.hosts.items() if fh.powered and (
            fh.services.get("cti") is ServiceState.ACTIVE or fh.services.get("ivr") is ServiceState.ACTIVE)]
