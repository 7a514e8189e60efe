"""Pydantic models of the YAML files under config/ (the edge; the core gets frozen domain values).

Every model forbids unknown fields (a typo must not silently become a default) and units are in the
field names (`debounce_s`). Ranges use `Range`, whose message is the one operators read:
`must be 1..31, got 40`. Cross-field checks live in ccfo.config.checks, not here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ccfo.config.cluster import ClusterModel
from ccfo.domain.faults import FaultKind
from ccfo.domain.plan import Action
from ccfo.domain.rules import Approval, RoleMatch
from ccfo.domain.site import Duty, Role, SpanKind, Trunk
from ccfo.domain.state import Mode


def Range(lo: float, hi: float) -> AfterValidator:
    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo:g}..{hi:g}, got {v:g}")
        return v
    return AfterValidator(check)


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return v


Port = Annotated[int, Range(1, 65535)]
Seconds = Annotated[float, Range(0, 86400)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
Regex = Annotated[str, AfterValidator(_regex)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpanModel(Strict):
    span: Annotated[int, Range(1, 255)]
    kind: SpanKind = SpanKind.E1_PRI
    channels: Annotated[int, Range(1, 31)]
    trunk: Trunk = Trunk.CARRIER


class LimitsModel(Strict):
    inbound_max: Annotated[int, Range(0, 10000)] | None = None
    outbound_max: Annotated[int, Range(0, 10000)] | None = None


class DriverModel(Strict):
    """How the board driver is started and stopped (isolate/restore), like a managed service."""

    unit: str | None = None  # systemd backend (default DRIVER_SERVICE.service)
    start: list[str] | None = None  # command backend: argv lists
    stop: list[str] | None = None
    status: list[str] | None = None


class BoardModel(Strict):
    driver_service: Name = "dahdi"
    driver: DriverModel = DriverModel()
    channel_pattern: Regex = "^DAHDI/"
    spans: list[SpanModel] = Field(min_length=1)
    limits: LimitsModel = LimitsModel()


class AgentEndpointModel(Strict):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?(/.*)?$")]
    token_file: str | None = None
    token_env: str | None = None
    listen: str | None = None  # host:port the agent binds; default from url
    tls_cert_file: str | None = None  # the agent serves HTTPS with this certificate (PEM) and key
    tls_key_file: str | None = None
    ca_file: str | None = None  # the controller verifies the agent's certificate with this CA (PEM)


class AmiModel(Strict):
    host: str = "127.0.0.1"
    port: Port = 5038
    username: str = "ccfo"
    secret_file: str | None = None
    secret_env: str | None = None
    ping_interval_s: Annotated[float, Range(0.1, 600)] = 5.0
    ping_timeout_s: Annotated[float, Range(0.1, 60)] = 2.0
    reconcile_interval_s: Annotated[float, Range(0.1, 3600)] = 10.0


def _host_port(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT with a port 1..65535, got {v!r}")
    return v


HostPort = Annotated[str, AfterValidator(_host_port)]
SnmpUser = Annotated[str, Field(min_length=1, max_length=32)]


class NotifyTargetModel(Strict):
    """Where SNMP notifications go: a v2c community (community_file) or an SNMPv3 user (user), not both.

    A v3 target's keys are its own auth_key_file/priv_key_file; on a host's target they default to the
    host's snmp keys. Secrets are files relative to the config directory, never inline values.
    """

    host: str
    port: Port = 162
    kind: Literal["trap", "inform"] = "trap"
    community_file: str | None = None
    user: SnmpUser | None = None
    auth_key_file: str | None = None
    priv_key_file: str | None = None


class SnmpModel(Strict):
    address: str | None = None  # the responder binds it (default: all addresses); the controller polls it
    port: Port = 161
    user: SnmpUser = "ccfo"
    auth_key_file: str | None = None
    priv_key_file: str | None = None
    community_file: str | None = None  # optional read-only v2c
    notify_targets: list[NotifyTargetModel] = Field(default_factory=list)  # besides the controller's receiver


class AgiModel(Strict):
    """The FastAGI admission server the dialplan asks before a transfer (agents/fastagi)."""

    enabled: bool = True
    listen: HostPort = "127.0.0.1:4573"
    fail_open: bool = True  # on an internal error: admit (True) or refuse (False)


class ServiceModel(Strict):
    runs_as: list[Duty] = Field(default_factory=list)
    critical: bool = False
    unit: str | None = None  # systemd backend: the unit name (default NAME.service)
    start: list[str] | None = None  # command backend: argv lists
    stop: list[str] | None = None
    status: list[str] | None = None


class DbFileModel(Strict):
    id: Name
    path: str
    format: Literal["ini", "keyvalue", "regex"]
    section: str | None = None  # ini
    key: str | None = None  # ini and keyvalue
    pattern: Regex | None = None  # regex: one group, replaced by the value
    value: str = "{host}"  # template: {host} {port} {site}
    readers: list[Name] = Field(default_factory=list)


class LineTestModel(Strict):
    """The source plan's line dial test: an AMI Originate out through the board to a test number."""

    # Originate Local/EXTEN@CONTEXT: the dialplan there dials the test number out through the board.
    context: str = "ccfo-linetest"
    exten: str = "s"
    timeout_s: Annotated[float, Range(1, 300)] = 20.0


class HostModel(Strict):
    role: Role
    address: str
    agent: AgentEndpointModel
    ami: AmiModel = AmiModel()
    snmp: SnmpModel = SnmpModel()
    agi: AgiModel = AgiModel()
    board: BoardModel
    fax_channels: Annotated[int, Range(0, 64)] = 4
    service_backend: Literal["systemd", "command"] = "systemd"
    services: dict[Name, ServiceModel]
    db_config_files: list[DbFileModel] = Field(default_factory=list)
    line_test: LineTestModel = LineTestModel()
    backup_dir: str = "/var/lib/ccfo/backups"  # where repoint_db keeps its timestamped backups


class AppServerModel(Strict):
    agent: AgentEndpointModel
    db_config_files: list[DbFileModel] = Field(default_factory=list)


class DbSiteModel(Strict):
    host: str
    port: Port = 1521


class DatabasesModel(Strict):
    active: Name
    sites: dict[Name, DbSiteModel] = Field(min_length=2, max_length=2)


class CapacityModel(Strict):
    channels_per_ivr_call: Annotated[int, Range(1, 4)] = 1
    channels_per_agent_call: Annotated[int, Range(1, 8)] = 2
    reserve_for_transfers: Annotated[int, Range(0, 1000)] = 0


class ControllerModel(Strict):
    listen: str = "127.0.0.1:8080"
    url: str | None = None  # where agents push their reports (default: http://LISTEN)
    tokens_file: str | None = None
    journal: str = "var/journal.sqlite"
    mode: Mode = Mode.SUPERVISED
    heartbeat_s: Annotated[float, Range(0.05, 600)] = 1.0
    missed_heartbeats: Annotated[int, Range(1, 100)] = 3
    poll_interval_s: Annotated[float, Range(0.05, 3600)] = 5.0
    snmp_trap_listen: HostPort | None = None  # receive the agents' notifications here (they all send to it)
    snmp_nms_targets: list[NotifyTargetModel] = Field(default_factory=list)  # the controller's own events
    snmp_poll_interval_s: Annotated[float, Range(0, 3600)] = 10.0  # safety-net SNMP poll; 0: none
    tls_cert_file: str | None = None  # the API serves HTTPS with this certificate (PEM) and key
    tls_key_file: str | None = None
    ca_file: str | None = None  # agents verify the controller's certificate with this CA (PEM)


class PduModel(Strict):
    host: str
    port: Port = 161
    community_file: str | None = None
    outlets: dict[Name, Annotated[int, Range(1, 64)]]


class FencingModel(Strict):
    method: Literal["pdu", "operator"] = "operator"
    pdu: PduModel | None = None


class RoutingModel(Strict):
    method: Literal["astdb", "none"] = "astdb"
    astdb_family: str = "ccfo"
    astdb_key: str = "inbound_hosts"


class SiteInfoModel(Strict):
    name: Name
    snmp_enterprise: Annotated[int, Range(1, 2**31 - 1)] = 32473
    description: str = ""


class SiteFileModel(Strict):
    site: SiteInfoModel
    hosts: dict[Name, HostModel] = Field(min_length=1)
    databases: DatabasesModel
    capacity: CapacityModel = CapacityModel()
    controller: ControllerModel = ControllerModel()
    fencing: FencingModel = FencingModel()
    routing: RoutingModel = RoutingModel()
    app_servers: dict[Name, AppServerModel] = Field(default_factory=dict)
    cluster: ClusterModel | None = None  # controller HA on etcd (ccfo.config.cluster); absent: one controller


class MatchModel(Strict):
    role: RoleMatch
    faults: list[FaultKind] = Field(min_length=1)
    services: list[Name] | None = None


class RuleModel(Strict):
    id: Name
    description: str
    source: str = ""
    match: MatchModel
    debounce_s: Seconds = 3.0
    action: Action
    approval: Approval = Approval.MODE


class FlapModel(Strict):
    window_s: Annotated[float, Range(1, 86400)] = 300.0
    max_transitions: Annotated[int, Range(2, 1000)] = 4


class PolicyModel(Strict):
    hold_down_s: Seconds = 600.0
    default_debounce_s: Seconds = 3.0
    flap: FlapModel = FlapModel()


class RulesFileModel(Strict):
    policy: PolicyModel = PolicyModel()
    rules: list[RuleModel] = Field(min_length=1)
