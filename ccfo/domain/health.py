"""The health model: what the agents report, folded into one frozen snapshot, and the faults it shows.

Agent reports, SNMP notifications and polls, and the controller's own reachability checks all end up
as `HostHealth` records; `snapshot` folds them with the heartbeat rule (a host whose last report is
older than `missed * heartbeat_s` is Unknown, an explicit state, not an exception) and `faults` lists
what is wrong now. A fault is only a *present* fault here; debounce and flapping are the tracker's job.
Pure: `now` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ccfo.domain.faults import Fault, FaultKind
from ccfo.domain.site import Site
from ccfo.domain.state import SiteState


class ServiceState(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    FAILED = "failed"
    HUNG = "hung"  # running, but failing its liveness probe
    UNKNOWN = "unknown"


class DriverState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SpanHealth:
    span: int
    alarm: str  # "ok" or the alarm name (red, yellow, blue, los, not_open, ...)
    dchannel_up: bool | None  # None: unknown (AMI not connected)
    channels: int

    @property
    def healthy(self) -> bool:
        return self.alarm == "ok" and self.dchannel_up is True


@dataclass(frozen=True, slots=True)
class TrunkHealth:
    """A SIP trunk as the agent saw it over AMI: state up, down or unknown."""

    name: str
    state: str  # "up", "down" or "unknown"
    channels: int
    driver: str = "pjsip"

    @property
    def healthy(self) -> bool:
        return self.state == "up"


@dataclass(frozen=True, slots=True)
class HostHealth:
    """One host as its agent last reported it."""

    host: str
    received_at: float
    ami_connected: bool
    driver: DriverState
    spans: tuple[SpanHealth, ...] = ()
    services: Mapping[str, ServiceState] = field(default_factory=dict)
    ivr_calls: int = 0
    agent_calls: int = 0
    fax_calls: int = 0
    db_site: str | None = None  # the database site its config files point at
    ami_hung: bool = False  # AMI not connected because Asterisk stopped answering (not refused/closed)
    trunks: tuple[TrunkHealth, ...] = ()  # the host's SIP trunks (empty: none, or AMI not connected)


@dataclass(frozen=True, slots=True)
class HostView:
    """A host in the snapshot: its last report, or None when it is unreachable (Unknown)."""

    host: str
    health: HostHealth | None
    reachable: bool
    age_s: float | None


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    at: float
    hosts: Mapping[str, HostView]
    db_down: frozenset[str] = frozenset()

    def host(self, host_id: str) -> HostView:
        return self.hosts[host_id]


def snapshot(site: Site, reports: Mapping[str, HostHealth], now: float, heartbeat_s: float, missed: int,
             db_down: frozenset[str] = frozenset()) -> SiteSnapshot:
    """Fold the latest report per host; a host silent for more than `missed` heartbeats is unreachable."""
    views = {}
    for host in site.hosts:
        rep = reports.get(host.id)
        if rep is None:
            views[host.id] = HostView(host.id, None, False, None)
            continue
        age = max(0.0, now - rep.received_at)
        reachable = age <= missed * heartbeat_s
        views[host.id] = HostView(host.id, rep if reachable else None, reachable, age)
    return SiteSnapshot(now, views, db_down)


def faults(site: Site, state: SiteState, snap: SiteSnapshot) -> frozenset[Fault]:
    """Everything wrong now. Services count as down only where the host's duty says they should run;
    a host that is out of service reports nothing but reachability; an intentionally isolated board is
    not a board fault. AMI loss is its own fault: it never implies the lines are down. A hung service (active
but failing its probe) is `service_hung`; a hung Asterisk (AMI connects but does not answer) `ami_hung`,
even on a host whose board is isolated: its CTI/IVR cannot take calls either way."""
    out: set[Fault] = set()
    for host in site.hosts:
        view = snap.hosts[host.id]
        hs = state.host(host.id)
        if not view.reachable or view.health is None:
            out.add(Fault(FaultKind.HOST_UNREACHABLE, host.id))
            continue
        health = view.health
        for name in host.layout(hs.duty):
            state_now = health.services.get(name, ServiceState.UNKNOWN)
            if state_now in (ServiceState.INACTIVE, ServiceState.FAILED):
                out.add(Fault(FaultKind.SERVICE_DOWN, host.id, name))
            elif state_now is ServiceState.HUNG:
                out.add(Fault(FaultKind.SERVICE_HUNG, host.id, name))
        if not health.ami_connected and health.ami_hung:  # a frozen Asterisk: the host cannot take calls
            out.add(Fault(FaultKind.AMI_HUNG, host.id))
            continue
        if hs.board_isolated:
            continue
        if not health.ami_connected:
            out.add(Fault(FaultKind.AMI_LOST, host.id))
            continue
        if health.driver is DriverState.DOWN and host.board.spans:  # a SIP-trunk-only host has no board to lose
            out.add(Fault(FaultKind.BOARD_DOWN, host.id))
            continue
        for span in health.spans:
            if span.alarm != "ok":
                out.add(Fault(FaultKind.SPAN_ALARM, host.id, str(span.span)))
            elif span.dchannel_up is False:
                out.add(Fault(FaultKind.DCHANNEL_DOWN, host.id, str(span.span)))
    out |= {Fault(FaultKind.DB_DOWN, s) for s in snap.db_down}
    return frozenset(out)
