"""Named builders for the pure core's tests: the source plan's site and the states it passes through.

Tests read like the situations they describe (`site_after_failover()`), with no config files, mocks or
clocks involved.
"""

from __future__ import annotations

from dataclasses import replace

from ccfo.domain.faults import Fault, FaultKind, FaultTracker
from ccfo.domain.plan import Action
from ccfo.domain.rules import Approval, Policy, RoleMatch, Rule
from ccfo.domain.site import (
    Board,
    CapacityPolicy,
    DbConfigFile,
    DbSite,
    DbSiteId,
    Duty,
    Host,
    HostId,
    ManagedServer,
    Role,
    ServerKind,
    ServerRole,
    Service,
    ServiceName,
    Site,
    Span,
    SpanKind,
    Trunk,
)
from ccfo.domain.state import Mode, SiteState

P, T, S = Duty.PRIMARY, Duty.TAKEOVER, Duty.STANDBY


def services() -> tuple[Service, ...]:
    def svc(name: str, duties: set[Duty], critical: bool = False) -> Service:
        return Service(ServiceName(name), frozenset(duties), critical)
    return (
        svc("cti", {P, T}, True), svc("ivr", {P, T}, True),
        svc("kcxp", {P, S}), svc("kcbp", {P, S}),
        svc("kcxp-replica", {T}), svc("kcbp-replica", {T}),
    )


def e1(n: int) -> Span:
    return Span(n, SpanKind.E1_PRI, 30, Trunk.CARRIER)


DB_FILES = (
    DbConfigFile("kcbp-db", "/opt/kcbp/etc/kcbp-db.ini", (ServiceName("kcbp"), ServiceName("kcbp-replica"))),
    DbConfigFile("cti-db", "/opt/cti/etc/db.properties", (ServiceName("cti"),)),
)


def example_site(reserve: int = 0) -> Site:
    """The source plan's pair: ipc-a primary with 60 channels (2 E1), ipc-b standby with 30 (1 E1)."""
    a = Host(HostId("ipc-a"), Role.PRIMARY, Board(ServiceName("dahdi"), (e1(1), e1(2))), 4, services(), DB_FILES)
    b = Host(HostId("ipc-b"), Role.STANDBY, Board(ServiceName("dahdi"), (e1(1),)), 4, services(), DB_FILES)
    dbs = (DbSite(DbSiteId("shenzhen"), "10.30.0.10", 1521), DbSite(DbSiteId("shanghai"), "10.40.0.10", 1521))
    return Site("fundco", (a, b), dbs, DbSiteId("shenzhen"), CapacityPolicy(1, 2, reserve))


def example_servers() -> tuple[ManagedServer, ...]:
    """The plan's other machines that name the database: Shenzhen's active ones, Shanghai's application backup,
    and a TA import server without database files."""
    def files(fid: str, reader: str) -> tuple[DbConfigFile, ...]:
        return (DbConfigFile(fid, f"/opt/{reader}/etc/{fid}.conf", (ServiceName(reader),)),)
    return (
        ManagedServer(HostId("app-sz"), "shenzhen", ServerKind.APPLICATION, (ServiceName("appserver"),),
                      files("app-db", "appserver")),
        ManagedServer(HostId("app-sh"), "shanghai", ServerKind.APPLICATION, (ServiceName("appserver"),),
                      files("app-db", "appserver"), role=ServerRole.BACKUP),
        ManagedServer(HostId("dbconn-sz"), "shenzhen", ServerKind.DB_CONNECTION,
                      (ServiceName("dbconn"), ServiceName("dbconn-pool")),
                      (DbConfigFile("dbconn", "/opt/dbconn/etc/dbconn.ini", (ServiceName("dbconn"),
                                                                              ServiceName("dbconn-pool"))),)),
        ManagedServer(HostId("ta-sz"), "shenzhen", ServerKind.TA_IMPORT, ()),
    )


def site_with_servers() -> Site:
    return replace(example_site(), datacenters=("shanghai", "shenzhen"), servers=example_servers())


def rule(id: str, role: RoleMatch, kinds: set[FaultKind], action: Action, debounce: float,
         services: set[str] | None = None, approval: Approval = Approval.MODE) -> Rule:
    return Rule(id, id.replace("-", " "), role, frozenset(kinds), action, debounce,
                frozenset(services) if services is not None else None, approval)


BOARD = {FaultKind.SPAN_ALARM, FaultKind.DCHANNEL_DOWN, FaultKind.BOARD_DOWN, FaultKind.AMI_LOST}


def documented_policy(hold_down_s: float = 600.0) -> Policy:
    """The shipped config/rules.yaml, as values."""
    return Policy((
        rule("primary-unreachable", RoleMatch.PRIMARY, {FaultKind.HOST_UNREACHABLE}, Action.FAILOVER, 5),
        rule("primary-cti-ivr-fault", RoleMatch.PRIMARY, {FaultKind.SERVICE_DOWN}, Action.FAILOVER, 3,
             {"cti", "ivr"}),
        rule("primary-board-fault", RoleMatch.PRIMARY, BOARD, Action.ISOLATE_BOARD, 5),
        rule("standby-fault", RoleMatch.STANDBY, BOARD | {FaultKind.SERVICE_DOWN, FaultKind.HOST_UNREACHABLE},
             Action.ISOLATE_STANDBY, 5),
        rule("database-site-fault", RoleMatch.ACTIVE_DB, {FaultKind.DB_DOWN}, Action.REPOINT_DB, 10),
    ), hold_down_s)


def normal_state(mode: Mode = Mode.SUPERVISED) -> SiteState:
    return SiteState.normal(example_site(), mode)


def site_after_failover(mode: Mode = Mode.SUPERVISED) -> SiteState:
    """Rule 2 has run: ipc-b took over, ipc-a is out of service."""
    return normal_state(mode).with_host("ipc-b", duty=Duty.TAKEOVER).with_host("ipc-a", duty=Duty.OUT)


def primary_board_isolated(mode: Mode = Mode.SUPERVISED) -> SiteState:
    return normal_state(mode).with_host("ipc-a", board_isolated=True)


def standby_out(mode: Mode = Mode.SUPERVISED) -> SiteState:
    return normal_state(mode).with_host("ipc-b", duty=Duty.OUT, board_isolated=True)


NOW = 10_000.0


def active(*faults: Fault, age: float = 3600.0) -> FaultTracker:
    """A tracker in which every fault has been present for `age` seconds (long past any debounce)."""
    return FaultTracker.empty().observe(faults, NOW - age)


def svc_down(host: str, name: str) -> Fault:
    return Fault(FaultKind.SERVICE_DOWN, host, name)


def span_alarm(host: str, span: int) -> Fault:
    return Fault(FaultKind.SPAN_ALARM, host, str(span))


def board_down(host: str) -> Fault:
    return Fault(FaultKind.BOARD_DOWN, host)


def unreachable(host: str) -> Fault:
    return Fault(FaultKind.HOST_UNREACHABLE, host)


def db_down(site: str) -> Fault:
    return Fault(FaultKind.DB_DOWN, site)
