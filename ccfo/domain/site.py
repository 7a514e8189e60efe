"""The site model: hosts, boards, spans, services, database sites, managed servers, as frozen values.

This is the pure core's picture of the call center described by the source plan: two IPC hosts with a
telephony board each (E1 PRI spans) and/or SIP trunks (a channel limit each), the managed services and
the roles that run them, the database sites the hosts' config files point at, and the site's other
machines per data center (application server, database connection service, TA import, SMS/e-mail
sender, online customer service), each running the agent without AMI or board. It is built once from the
validated YAML (ccfo.config) and never does I/O; the decision code reads it, nothing mutates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

HostId = NewType("HostId", str)
ServiceName = NewType("ServiceName", str)
DbSiteId = NewType("DbSiteId", str)


class Role(StrEnum):
    """A host's designed (home) role: the primary runs CTI/IVR in normal operation."""

    PRIMARY = "primary"
    STANDBY = "standby"


class Duty(StrEnum):
    """What a host is doing now; the service layout follows from it.

    * ``primary``: the home primary serving calls with CTI/IVR (normal operation).
    * ``standby``: running only what a standby runs (KCXP/KCBP of its own).
    * ``takeover``: a home standby that has taken over: CTI/IVR and the KCXP/KCBP replicas.
    * ``out``: out of service after a fault rule stopped all its services.
    """

    PRIMARY = "primary"
    STANDBY = "standby"
    TAKEOVER = "takeover"
    OUT = "out"

    @property
    def active(self) -> bool:
        """True when this host runs the site's CTI/IVR."""
        return self in (Duty.PRIMARY, Duty.TAKEOVER)


class SpanKind(StrEnum):
    E1_PRI = "e1-pri"
    T1_PRI = "t1-pri"


class Trunk(StrEnum):
    CARRIER = "carrier"
    PBX = "pbx"


@dataclass(frozen=True, slots=True)
class Span:
    number: int
    kind: SpanKind
    channels: int
    trunk: Trunk


class SipDriver(StrEnum):
    """The Asterisk channel driver of a SIP trunk: res_pjsip (endpoints) or the old chan_sip (peers)."""

    PJSIP = "pjsip"
    SIP = "sip"


@dataclass(frozen=True, slots=True)
class SipTrunk:
    """A SIP trunk of a host: the Asterisk endpoint (pjsip) or peer (chan_sip) name and its channel limit.

    While the trunk is reachable its `channels` count toward the host's C, like a span's bearer channels."""

    name: str
    channels: int
    driver: SipDriver = SipDriver.PJSIP

    @property
    def channel_prefix(self) -> str:
        """How Asterisk names this trunk's channels: `PJSIP/NAME-` or `SIP/NAME-`."""
        return f"{'PJSIP' if self.driver is SipDriver.PJSIP else 'SIP'}/{self.name}-"


@dataclass(frozen=True, slots=True)
class DirectionLimits:
    """Optional per-direction channel maximums (the old 60 inbound / 30 outbound split)."""

    inbound_max: int | None = None
    outbound_max: int | None = None


@dataclass(frozen=True, slots=True)
class Board:
    driver_service: ServiceName
    spans: tuple[Span, ...]
    limits: DirectionLimits = DirectionLimits()

    @property
    def channels(self) -> int:
        return sum(s.channels for s in self.spans)

    def span(self, number: int) -> Span | None:
        return next((s for s in self.spans if s.number == number), None)


@dataclass(frozen=True, slots=True)
class Service:
    """A managed service and the duties whose layout runs it."""

    name: ServiceName
    duties: frozenset[Duty]
    critical: bool = False  # CTI and IVR: a fault here is the source plan's rule 2

    def runs_in(self, duty: Duty) -> bool:
        return duty in self.duties


@dataclass(frozen=True, slots=True)
class DbConfigFile:
    """A whitelisted file on a host that names the active database, and who reads it."""

    id: str
    path: str
    readers: tuple[ServiceName, ...]


@dataclass(frozen=True, slots=True)
class Host:
    id: HostId
    role: Role
    board: Board
    fax_channels: int
    services: tuple[Service, ...]
    db_files: tuple[DbConfigFile, ...] = ()
    trunks: tuple[SipTrunk, ...] = ()

    @property
    def channels(self) -> int:
        """All the host's voice channels when every span and trunk is up: the board's plus the trunks'."""
        return self.board.channels + sum(t.channels for t in self.trunks)

    def trunk(self, name: str) -> SipTrunk | None:
        return next((t for t in self.trunks if t.name == name), None)

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def layout(self, duty: Duty) -> tuple[ServiceName, ...]:
        """The services this host runs in `duty`, in start order (middleware before CTI/IVR)."""
        running = [s for s in self.services if s.runs_in(duty)]
        return tuple(s.name for s in sorted(running, key=lambda s: (s.critical, s.name)))

    @property
    def critical_services(self) -> tuple[ServiceName, ...]:
        return tuple(s.name for s in self.services if s.critical)

    @property
    def home_active_duty(self) -> Duty:
        """The duty this host takes when it becomes the active host."""
        return Duty.PRIMARY if self.role is Role.PRIMARY else Duty.TAKEOVER


@dataclass(frozen=True, slots=True)
class DbSite:
    id: DbSiteId
    host: str
    port: int


class ServerKind(StrEnum):
    """What a managed server is for, as the source plan names the machines besides the IPCs."""

    APPLICATION = "application"  # the application server (agents' desktop back end)
    DB_CONNECTION = "db-connection"  # the database connection service
    TA_IMPORT = "ta-import"  # the TA (transfer-agent) data import programs
    SMS_EMAIL = "sms-email"  # the SMS and e-mail sending programs
    CUSTOMER_SERVICE = "customer-service"  # the online customer-service system (apache, mysql, php)


class ServerRole(StrEnum):
    """`active` serves; `backup` is kept ready (source plan III): its files follow the database, its
    services are not restarted by a repoint (restarting would start what is meant to stay stopped)."""

    ACTIVE = "active"
    BACKUP = "backup"


class JobBackend(StrEnum):
    SYSTEMD = "systemd"  # a systemd timer unit
    CRON = "cron"  # a cron file the agent rewrites


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A scheduled task on a server (the TA import's nightly loads, the SMS sender's runs)."""

    name: str
    backend: JobBackend
    schedule: str | None = None  # cron: the five-field schedule; systemd: the timer's own


@dataclass(frozen=True, slots=True)
class SwitchFile:
    """A whitelisted file a switch points at one of its named values (an entry point, a gateway setting)."""

    id: str
    values: tuple[str, ...]  # the value names


@dataclass(frozen=True, slots=True)
class ManagedServer:
    """A machine of the site other than the IPCs, in one data center, managed through its agent."""

    id: HostId
    datacenter: str
    kind: ServerKind
    services: tuple[ServiceName, ...]
    db_files: tuple[DbConfigFile, ...] = ()
    jobs: tuple[ScheduledJob, ...] = ()
    role: ServerRole = ServerRole.ACTIVE
    switch_files: tuple[SwitchFile, ...] = ()

    @property
    def readers(self) -> tuple[ServiceName, ...]:
        """The services that read this server's database config files, each once, in file order."""
        seen: dict[ServiceName, None] = {}
        for f in self.db_files:
            for r in f.readers:
                seen.setdefault(r, None)
        return tuple(seen)


IPC_HOSTS = "ipc"  # in a repoint order: the IPC hosts (the others are server kinds)


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    """How many channels a call holds and how many are kept back for agent transfers (per host)."""

    channels_per_ivr_call: int = 1
    channels_per_agent_call: int = 2
    reserve_for_transfers: int = 0


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    hosts: tuple[Host, ...]
    db_sites: tuple[DbSite, ...]
    active_db: DbSiteId
    capacity: CapacityPolicy = CapacityPolicy()
    datacenters: tuple[str, ...] = ()
    servers: tuple[ManagedServer, ...] = ()

    def host(self, host_id: str) -> Host:
        for h in self.hosts:
            if h.id == host_id:
                return h
        raise KeyError(f"unknown host {host_id!r} (known: {', '.join(self.host_ids)})")

    @property
    def host_ids(self) -> tuple[HostId, ...]:
        return tuple(h.id for h in self.hosts)

    def home(self, role: Role) -> Host:
        return next(h for h in self.hosts if h.role is role)

    def other(self, host_id: str) -> Host:
        return next(h for h in self.hosts if h.id != host_id)

    def server(self, server_id: str) -> ManagedServer:
        for s in self.servers:
            if s.id == server_id:
                return s
        raise KeyError(f"unknown server {server_id!r} (known: {', '.join(s.id for s in self.servers)})")

    def servers_in(self, datacenter: str) -> tuple[ManagedServer, ...]:
        return tuple(s for s in self.servers if s.datacenter == datacenter)

    @property
    def agent_ids(self) -> tuple[HostId, ...]:
        """Every machine with an agent: the IPC hosts, then the managed servers."""
        return self.host_ids + tuple(s.id for s in self.servers)

    def db_site(self, site_id: str) -> DbSite:
        for s in self.db_sites:
            if s.id == site_id:
                return s
        raise KeyError(f"unknown database site {site_id!r}")

    def other_db(self, site_id: str) -> DbSite:
        return next(s for s in self.db_sites if s.id != site_id)
