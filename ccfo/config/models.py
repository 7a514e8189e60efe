"""Pydantic models of the YAML files under config/ (the edge; the core gets frozen domain values).

Every model forbids unknown fields (a typo must not silently become a default) and units are in the
field names (`debounce_s`). Ranges use `Range`, whose message is the one operators read:
`must be 1..31, got 40`. Cross-field checks live in ccfo.config.checks, not here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ccfo.config.cluster import ClusterModel
from ccfo.domain.faults import FaultKind
from ccfo.domain.plan import Action
from ccfo.domain.rules import Approval, RoleMatch
from ccfo.domain.site import IPC_HOSTS, Duty, JobBackend, Role, ServerKind, ServerRole, SipDriver, SpanKind, Trunk
from ccfo.domain.state import Mode


def Range(lo: float, hi: float) -> AfterValidator:
    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo:g}..{hi:g}, got {v:g}")
        return v
    check.bounds = (lo, hi)  # type: ignore[attr-defined]  # read by the config reference (controller/config_reference.py)
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
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SpanModel(Strict):
    span: Annotated[int, Range(1, 255)]
    """The span number as chan_dahdi numbers it (1 = the first span of the board)."""
    kind: SpanKind = SpanKind.E1_PRI
    """The span type."""
    channels: Annotated[int, Range(1, 31)]
    """Bearer (voice) channels on the span: 30 on an E1 PRI, 23 on a T1 PRI."""
    trunk: Trunk = Trunk.CARRIER
    """Where the span goes: the carrier's network or an internal PBX."""


class TrunkModel(Strict):
    """A SIP trunk of the host: its channels count toward C while Asterisk sees it reachable (AMI)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}$")]
    """The Asterisk endpoint (pjsip.conf) or peer (sip.conf) name of the trunk."""
    kind: Literal["sip"] = "sip"
    """The trunk type (sip)."""
    channels: Annotated[int, Range(1, 10000)]
    """At most this many simultaneous calls on the trunk (the carrier's channel limit)."""
    driver: SipDriver = SipDriver.PJSIP
    """The Asterisk channel driver: pjsip (res_pjsip, PJSIPShowEndpoints) or sip (chan_sip, SIPpeers)."""


class AmiDownModel(Strict):
    """Per call kind, what admission answers when the live capacity cannot be known (AMI down, no trunk
    data): admit or refuse. A kind left unset follows agi.fail_open."""

    ivr: Literal["admit", "refuse"] | None = None
    """A new IVR call with AMI down: admit or refuse (unset: agi.fail_open)."""
    agent: Literal["admit", "refuse"] | None = None
    """A transfer to an agent with AMI down: admit or refuse (unset: agi.fail_open)."""
    fax: Literal["admit", "refuse"] | None = None
    """A fax call with AMI down: admit or refuse (unset: agi.fail_open)."""


class LimitsModel(Strict):
    inbound_max: Annotated[int, Range(0, 10000)] | None = None
    """At most this many channels for inbound calls on the host (none: no limit)."""
    outbound_max: Annotated[int, Range(0, 10000)] | None = None
    """At most this many channels for outbound calls on the host (none: no limit)."""


class DriverModel(Strict):
    """How the board driver is started and stopped (isolate/restore), like a managed service."""

    unit: str | None = None
    """systemd backend: the driver's unit (default DRIVER_SERVICE.service)."""
    start: list[str] | None = None
    """command backend: the argv that starts the board driver."""
    stop: list[str] | None = None
    """command backend: the argv that stops the board driver (isolates the board)."""
    status: list[str] | None = None
    """command backend: the argv whose exit status says whether the driver runs (0: active)."""


class BoardModel(Strict):
    driver_service: Name = "dahdi"
    """The name of the board driver service (isolate_board stops it, restore_board starts it)."""
    driver: DriverModel = DriverModel()
    """How the agent starts, stops and checks the driver service."""
    channel_pattern: Regex = "^DAHDI/"
    """Regular expression matching the board's channel names in Asterisk (calls on other channels are not counted)."""
    spans: list[SpanModel] = Field(default_factory=list)
    """The board's PRI spans, as chan_dahdi numbers them (none on a host whose telephony is SIP trunks only)."""
    limits: LimitsModel = LimitsModel()
    """Per-direction channel limits for admission."""


class AgentEndpointModel(Strict):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?(/.*)?$")]
    """The agent's API URL as the controller reaches it (http or https)."""
    token_file: str | None = None
    """File holding the agent's bearer token (the controller uses it to call the agent; the agent accepts it)."""
    token_env: str | None = None
    """Environment variable holding the token, instead of token_file."""
    listen: str | None = None
    """HOST:PORT the agent binds (default: the host and port of url)."""
    tls_cert_file: str | None = None
    """The agent serves HTTPS with this certificate (PEM); its key is tls_key_file."""
    tls_key_file: str | None = None
    """The private key (PEM) of tls_cert_file; a secret file (mode 0600/0640)."""
    ca_file: str | None = None
    """The controller verifies the agent's certificate with this CA (PEM)."""


class AmiModel(Strict):
    host: str = "127.0.0.1"
    """Asterisk's AMI address (the agent talks to its own host's Asterisk)."""
    port: Port = 5038
    """Asterisk's AMI TCP port (manager.conf `port`)."""
    username: str = "ccfo"
    """The AMI user (manager.conf section; config/asterisk/manager-ccfo.conf)."""
    secret_file: str | None = None
    """File holding the AMI user's secret. Without secret_file and secret_env the agent runs without AMI."""
    secret_env: str | None = None
    """Environment variable holding the AMI secret, instead of secret_file."""
    ping_interval_s: Annotated[float, Range(0.1, 600)] = 5.0
    """Seconds between AMI Pings; a missed Ping reconnects."""
    ping_timeout_s: Annotated[float, Range(0.1, 60)] = 2.0
    """Seconds to wait for a Ping's answer before the link counts as lost."""
    reconcile_interval_s: Annotated[float, Range(0.1, 3600)] = 10.0
    """Seconds between full re-reads of spans and channels (PRIShowSpans, DAHDIShowChannels, CoreShowChannels)."""


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
    """Where the notifications go (an NMS or trap receiver address)."""
    port: Port = 162
    """The receiver's UDP port."""
    kind: Literal["trap", "inform"] = "trap"
    """trap (fire and forget) or inform (acknowledged, retried)."""
    community_file: str | None = None
    """SNMPv2c: file holding the community (give this or user, not both)."""
    user: SnmpUser | None = None
    """SNMPv3: the USM user (authPriv, SHA and AES)."""
    auth_key_file: str | None = None
    """SNMPv3: file holding the user's authentication passphrase (on a host's target: default the host's snmp keys)."""
    priv_key_file: str | None = None
    """SNMPv3: file holding the user's privacy passphrase (on a host's target: default the host's snmp keys)."""


class SnmpModel(Strict):
    address: str | None = None
    """The responder binds this address (default: all addresses); the controller polls it."""
    port: Port = 161
    """The responder's UDP port."""
    user: SnmpUser = "ccfo"
    """The SNMPv3 user of the responder (authPriv)."""
    auth_key_file: str | None = None
    """File holding the SNMPv3 authentication passphrase; without keys or a community the host runs without SNMP."""
    priv_key_file: str | None = None
    """File holding the SNMPv3 privacy passphrase."""
    community_file: str | None = None
    """Optional read-only SNMPv2c community file."""
    notify_targets: list[NotifyTargetModel] = Field(default_factory=list)
    """Where the host's notifications go besides the controller's receiver (an NMS)."""


class AgiModel(Strict):
    """The FastAGI admission server the dialplan asks before a transfer (agents/fastagi)."""

    enabled: bool = True
    """Serve FastAGI admission (the dialplan asks it before a transfer)."""
    listen: HostPort = "127.0.0.1:4573"
    """HOST:PORT of the FastAGI admission server."""
    fail_open: bool = True
    """When the live capacity cannot be known (AMI down, an internal error): admit (true) or refuse (false)."""
    ami_down: AmiDownModel = AmiDownModel()
    """Per call kind (ivr, agent, fax), admit or refuse while AMI is down or the trunks' state is unknown."""


PROBE_KINDS = ("tcp", "http", "command", "ami")
_PROBE_SETTINGS = ("interval_s", "timeout_s", "failures", "expect", "expect_status")


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port outside 0..65535
    except ValueError:
        raise ValueError(f"the port must be 1..65535, got {v!r}") from None
    if parts.port == 0:
        raise ValueError(f"the port must be 1..65535, got {v!r}")
    return v


class ProbeModel(Strict):
    """A liveness probe: exactly one kind (tcp, http, command, ami) and its timing.

    `failures` consecutive failed probes, one every `interval_s`, each given `timeout_s`, make an active
    service `hung`. A bare TCP connect does not see a stopped process (the kernel accepts for it): give
    `expect` (bytes the service sends first) or prefer an http or command probe.
    """

    tcp: HostPort | None = None
    """HOST:PORT to connect to (port 1..65535)."""
    expect: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """tcp: the greeting the service must send first (a bare connect cannot see a stopped process)."""
    http: Annotated[str, AfterValidator(_http_url)] | None = None
    """URL to GET; the answer's status must be expect_status."""
    expect_status: Annotated[int, Range(100, 599)] = 200
    """http: the status a live service answers."""
    command: Annotated[list[str], Field(min_length=1)] | None = None
    """argv run without a shell; exit 0 within timeout_s is alive (a command that cannot run is a failure)."""
    ami: bool | None = None
    """true: Asterisk itself, judged by the agent's AMI Ping deadline."""
    interval_s: Annotated[float, Range(0.1, 3600)] = 1.0
    """Seconds between probes."""
    timeout_s: Annotated[float, Range(0.05, 600)] = 1.0
    """Seconds one probe may take (at most interval_s)."""
    failures: Annotated[int, Range(1, 100)] = 3
    """Consecutive failed probes before an active service counts as hung."""

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a probe is a mapping: {tcp: HOST:PORT} | {http: URL} | {command: [argv]} | {ami: true}")
        unknown = [k for k in data if k not in PROBE_KINDS and k not in _PROBE_SETTINGS]
        if unknown:
            raise ValueError(f"unknown probe kind {unknown[0]!r} (kinds: {', '.join(PROBE_KINDS)})")
        kinds = [k for k in PROBE_KINDS if data.get(k) not in (None, False)]
        if len(kinds) != 1:
            raise ValueError(f"a probe has exactly one kind of {', '.join(PROBE_KINDS)}, got "
                             + (", ".join(kinds) if kinds else "none"))
        return data

    @property
    def kind(self) -> str:
        return next(k for k in PROBE_KINDS if getattr(self, k) not in (None, False))


class ServiceControlModel(Strict):
    """How the agent starts, stops and checks one service (a managed server's services have only this)."""

    unit: str | None = None
    """systemd backend: the unit name (default NAME.service)."""
    start: list[str] | None = None
    """command backend: the argv that starts the service."""
    stop: list[str] | None = None
    """command backend: the argv that stops the service."""
    status: list[str] | None = None
    """command backend: the argv whose exit status says whether the service runs (0: active)."""
    kill: list[str] | None = None
    """command backend: the argv that SIGKILLs every process of the service (used when a stop hangs)."""
    stop_timeout_s: Annotated[float, Range(0.1, 600)] = 5.0
    """Grace for a stop before the agent escalates to SIGKILL (the kill command, or systemctl kill)."""
    probe: ProbeModel | None = None
    """The service's liveness probe: active but failing it `failures` times in a row is reported hung."""


class ServiceModel(ServiceControlModel):
    """An IPC host's managed service: how it is run, and in which duties."""

    runs_as: list[Duty] = Field(default_factory=list)
    """The duties in which this service runs on the host (primary, standby, takeover)."""
    critical: bool = False
    """A critical service (CTI, IVR) never runs on two hosts at once."""


class DbFileModel(Strict):
    id: Name
    """The file's id (repoint_db and the report name it)."""
    path: str
    """The file's path on the host (only whitelisted files can be changed)."""
    format: Literal["ini", "keyvalue", "regex"]
    """How the database host is written in it: an ini key, a key=value line, or a regular expression."""
    section: str | None = None
    """ini: the section holding key."""
    key: str | None = None
    """ini and keyvalue: the key whose value names the database host."""
    pattern: Regex | None = None
    """regex: a regular expression with one group, replaced by the value."""
    value: str = "{host}"
    """The value written, a template of {host}, {port} and {site} of the target database site."""
    readers: list[Name] = Field(default_factory=list)
    """Services that read the file (restarted after a repoint)."""


class LineTestModel(Strict):
    """The source plan's line dial test: an AMI Originate out through the board to a test number."""

    # Originate Local/EXTEN@CONTEXT: the dialplan there dials the test number out through the board.
    context: str = "ccfo-linetest"
    """The dialplan context of the line dial test (config/asterisk/extensions-ccfo.conf)."""
    exten: str = "s"
    """The extension dialled in context (Originate Local/EXTEN@CONTEXT)."""
    timeout_s: Annotated[float, Range(1, 300)] = 20.0
    """Seconds to wait for the test call's answer."""


class HostModel(Strict):
    role: Role
    """The host's designed (home) role."""
    address: str
    """The host's address (the controller polls its SNMP responder there)."""
    agent: AgentEndpointModel
    """The host's agent: its API URL, token and TLS."""
    ami: AmiModel = AmiModel()
    """How the agent reaches the host's Asterisk Manager Interface."""
    snmp: SnmpModel = SnmpModel()
    """The host's SNMP responder (CCFO-MIB) and notification targets."""
    agi: AgiModel = AgiModel()
    """The host's FastAGI admission server."""
    board: BoardModel = BoardModel()
    """The host's digital voice board and its driver (its spans may be empty when the host has SIP trunks)."""
    trunks: list[TrunkModel] = Field(default_factory=list, max_length=64)
    """The host's SIP trunks (beside or instead of the board's spans): C counts those that are up."""
    fax_channels: Annotated[int, Range(0, 64)] = 4
    """Channels of the separate fax board (a fax pool of its own)."""
    service_backend: Literal["systemd", "command"] = "systemd"
    """How the agent runs services: systemd units (D-Bus) or commands (start/stop/status argv)."""
    services: dict[Name, ServiceModel]
    """The host's managed services (CTI, IVR, KCXP, KCBP and their replicas)."""
    db_config_files: list[DbFileModel] = Field(default_factory=list)
    """The database config files the agent may repoint (the whitelist)."""
    line_test: LineTestModel = LineTestModel()
    """The line dial test (Originate through the board)."""
    backup_dir: str = "/var/lib/ccfo/backups"
    """Where repoint_db keeps its timestamped backups."""


class JobModel(Strict):
    """A scheduled job on a managed server: a systemd timer, or a cron file the agent rewrites."""

    backend: JobBackend
    """systemd: a timer unit the agent enables and disables; cron: a cron file the agent writes and comments out."""
    timer: str | None = None
    """systemd: the timer unit (default NAME.timer)."""
    schedule: str | None = None
    """cron: the five-field schedule (minute hour day-of-month month day-of-week)."""
    command: str | None = None
    """cron: the command line the cron file runs."""
    user: Name = "root"
    """cron: the user the command runs as (the cron.d user field)."""
    cron_file: str | None = None
    """cron: the cron file's absolute path (default /etc/cron.d/ccfo-NAME)."""


class SwitchFileModel(Strict):
    """A whitelisted file a named switch may point at one of its values (rules.yaml switches): an entry point
    (a web server's redirect file, then its reload command) or a setting naming a machine (the SMS gateway)."""

    id: Name
    """The file's id (a switch's set_file names it)."""
    path: str
    """The file's absolute path on the server."""
    format: Literal["ini", "keyvalue", "regex"]
    """How the value is written in it: an ini key, a key=value line, or a regular expression's one group."""
    section: str | None = None
    """ini: the section holding key."""
    key: str | None = None
    """ini and keyvalue: the key whose value the switch sets."""
    pattern: Regex | None = None
    """regex: a regular expression with one group, replaced by the value."""
    values: dict[Name, str] = Field(min_length=2)
    """The values the file may hold, by name (e.g. shanghai: the Shanghai URL); a switch names one."""
    reload: list[str] | None = None
    """The argv run after the file changed (e.g. [systemctl, reload, apache2.service]); a failing reload puts
    the old content back."""
    reload_timeout_s: Annotated[float, Range(0.1, 300)] = 15.0
    """How long the reload command may take."""


class ServerModel(Strict):
    """A machine of the site besides the IPCs: it runs the agent without AMI or board."""

    datacenter: Name
    """The data center the server is in (one of datacenters)."""
    kind: ServerKind
    """What it is: application, db-connection, ta-import, sms-email or customer-service."""
    role: ServerRole = ServerRole.ACTIVE
    """active: serves; backup: kept ready, its files are repointed but its services are not restarted."""
    agent: AgentEndpointModel
    """The server's agent: its API URL, token and TLS (the same fields as an IPC host's agent)."""
    service_backend: Literal["systemd", "command"] = "systemd"
    """How the agent runs services: systemd units (D-Bus) or commands (start/stop/status argv)."""
    services: dict[Name, ServiceControlModel] = Field(default_factory=dict)
    """The server's managed services (the application server's processes, apache, mysql, ...)."""
    db_config_files: list[DbFileModel] = Field(default_factory=list)
    """The whitelisted config files naming the database (repoint_db changes them; absolute paths)."""
    backup_dir: str = "/var/lib/ccfo/backups"
    """Where repoint_db keeps its timestamped backups."""
    jobs: dict[Name, JobModel] = Field(default_factory=dict)
    """The server's scheduled jobs, by name."""
    switch_files: list[SwitchFileModel] = Field(default_factory=list)
    """The whitelisted files named switches point at one of their values (entry points, gateway settings)."""


class DatacenterModel(Strict):
    description: str = ""
    """A sentence about the data center (the machine room)."""


class DbSiteModel(Strict):
    host: str
    """The database site's address (written into the config files)."""
    port: Port = 1521
    """The database site's port."""


class DatabasesModel(Strict):
    active: Name
    """The database site the hosts point at now."""
    sites: dict[Name, DbSiteModel] = Field(min_length=2, max_length=2)
    """Exactly two database sites (DDS replicates one to the other)."""


class CapacityModel(Strict):
    channels_per_ivr_call: Annotated[int, Range(1, 4)] = 1
    """Channels an IVR-only call holds (X)."""
    channels_per_agent_call: Annotated[int, Range(1, 8)] = 2
    """Channels a call transferred to an agent holds (Y): X + 2Y <= C per host."""
    reserve_for_transfers: Annotated[int, Range(0, 1000)] = 0
    """Channels only transfers to agents may use (new IVR calls leave them free)."""


class ControllerModel(Strict):
    listen: str = "127.0.0.1:8080"
    """HOST:PORT the controller's API and dashboard listen on."""
    url: str | None = None
    """Where agents push their reports (default: http://LISTEN)."""
    tokens_file: str | None = None
    """The operators' and agents' token file (hashes; `ccfo token add`)."""
    journal: str = "var/journal.sqlite"
    """The journal (SQLite) file, relative to the config directory unless absolute."""
    mode: Mode = Mode.SUPERVISED
    """The mode at first start: supervised (propose, a person approves), automatic, manual or maintenance."""
    heartbeat_s: Annotated[float, Range(0.05, 600)] = 1.0
    """Seconds between agent reports."""
    missed_heartbeats: Annotated[int, Range(1, 100)] = 3
    """Heartbeats without a report before a host counts as unreachable."""
    poll_interval_s: Annotated[float, Range(0.05, 3600)] = 5.0
    """Seconds between control cycles when nothing wakes the engine earlier."""
    snmp_trap_listen: HostPort | None = None
    """HOST:PORT where the controller receives the agents' notifications (they all send there)."""
    snmp_nms_targets: list[NotifyTargetModel] = Field(default_factory=list)
    """Where the controller sends its own events (plan started, failed, ...)."""
    snmp_poll_interval_s: Annotated[float, Range(0, 3600)] = 10.0
    """Seconds between safety-net SNMP polls of the agents (0: none)."""
    tls_cert_file: str | None = None
    """The API serves HTTPS with this certificate (PEM); its key is tls_key_file."""
    tls_key_file: str | None = None
    """The private key (PEM) of tls_cert_file; a secret file."""
    ca_file: str | None = None
    """Agents verify the controller's certificate with this CA (PEM)."""


class PduModel(Strict):
    host: str
    """The PDU's SNMP address."""
    port: Port = 161
    """The PDU's SNMP UDP port."""
    community_file: str | None = None
    """File holding the PDU's SNMP write community."""
    outlets: dict[Name, Annotated[int, Range(1, 64)]]
    """Each host's outlet number on the PDU."""


class FencingModel(Strict):
    method: Literal["pdu", "operator", "self"] = "operator"
    """How an unreachable primary is fenced before the standby starts CTI/IVR: power off at a PDU, an operator
    confirms it is off, or `self`: its agent stops CTI/IVR itself once no controller has answered it for
    `self_fence_after_s`, and the controller waits that long plus `self_fence_margin_s` (docs/ha.md).
    """
    pdu: PduModel | None = None
    """The PDU, when method is pdu."""
    self_fence_after_s: Annotated[float, Range(2, 600)] = 10.0
    """method self: seconds without an answer from any controller after which an agent stops its CTI/IVR."""
    self_fence_margin_s: Annotated[float, Range(0.5, 60)] = 2.0
    """method self: what the controller waits beyond self_fence_after_s (the agent's check and its stop)."""


class KamailioModel(Strict):
    """The SIP front (config/kamailio/kamailio.cfg): its jsonrpcs socket and dispatcher list file, on the
    controller's machine (docs/sip-front.md says why the controller, not an agent, talks to it)."""

    rpc_socket: str = "/run/ccfo/kamailio-rpc.sock"
    """Kamailio's jsonrpcs UNIX datagram socket (the controller sends dispatcher.reload and reads back)."""
    list_file: str = "/var/lib/ccfo/dispatcher.list"
    """The dispatcher list file, written atomically before every reload, so a Kamailio restart keeps the route."""
    set_id: Annotated[int, Range(1, 1000)] = 1
    """The dispatcher set that holds the hosts receiving new calls."""
    rpc_timeout_s: Annotated[float, Range(0.1, 30)] = 2.0
    """Seconds one RPC may take; past it the route step fails naming the socket."""
    destinations: dict[Name, Annotated[str, Field(pattern=r"^sips?:[^\s]+$")]] = Field(min_length=1)
    """Each host's SIP URI (sip:ADDRESS:PORT) the front sends its calls to."""


class RoutingModel(Strict):
    method: Literal["astdb", "kamailio", "none"] = "astdb"
    """How inbound calls are steered to the serving host: AstDB (the front PBX reads it), the Kamailio SIP
    front's dispatcher list, or none."""
    astdb_family: str = "ccfo"
    """The AstDB family holding the inbound hosts."""
    astdb_key: str = "inbound_hosts"
    """The AstDB key holding the inbound hosts (comma-separated host names)."""
    hold_s: Annotated[float, Range(0, 30)] = 8.0
    """kamailio: a new call that no host serves rings and is retried for at most this long, then refused
    (503); 0 turns the hold off. Kamailio's branch limit (30) caps hold_s / hold_retry_s at 26."""
    hold_retry_s: Annotated[float, Range(0.1, 5)] = 0.5
    """kamailio: seconds between retries of a held call."""
    kamailio: KamailioModel | None = None
    """The Kamailio SIP front (routing.method kamailio): its JSON-RPC socket and dispatcher list."""


class SiteInfoModel(Strict):
    name: Name
    """The site's name (shown on the dashboard; drills target it by name)."""
    snmp_enterprise: Annotated[int, Range(1, 2**31 - 1)] = 32473
    """Your SNMP enterprise number (the CCFO-MIB is placed under it)."""
    description: str = ""
    """A sentence about the site."""


class SiteFileModel(Strict):
    site: SiteInfoModel
    """The site's name and SNMP enterprise."""
    hosts: dict[Name, HostModel] = Field(min_length=1)
    """The IPC hosts, by name."""
    databases: DatabasesModel
    """The two database sites and which one is active."""
    capacity: CapacityModel = CapacityModel()
    """The channel arithmetic of calls (X + 2Y <= C)."""
    controller: ControllerModel = ControllerModel()
    """The controller daemon."""
    fencing: FencingModel = FencingModel()
    """How a silent primary is fenced."""
    routing: RoutingModel = RoutingModel()
    """How inbound calls are steered."""
    datacenters: dict[Name, DatacenterModel] = Field(default_factory=dict)
    """The site's data centers (machine rooms), by name; servers name theirs."""
    servers: dict[Name, ServerModel] = Field(default_factory=dict)
    """The site's other machines (application server, database connection service, TA import, SMS/e-mail,
    online customer service), by name; each runs the agent without AMI or board."""
    cluster: ClusterModel | None = None
    """Controller high availability on etcd (members, etcd endpoints, lease); absent: one controller."""


REPOINT_STAGES = (IPC_HOSTS, *(k.value for k in ServerKind))


def _repoint_stage(v: str) -> str:
    if v not in REPOINT_STAGES:
        raise ValueError(f"unknown kind {v!r} (kinds: {', '.join(REPOINT_STAGES)})")
    return v


RepointStage = Annotated[str, AfterValidator(_repoint_stage)]


class MatchModel(Strict):
    role: RoleMatch
    """Which host the faults must be on: primary (the one running CTI/IVR now), standby, any, or active_db."""
    faults: list[FaultKind] = Field(min_length=1)
    """The fault kinds the rule matches (any of them)."""
    services: list[Name] | None = None
    """For service_down: only these services (none: any)."""


class RuleModel(Strict):
    id: Name
    """The rule's id (decisions and plans name it)."""
    description: str
    """What the rule is for, one sentence."""
    source: str = ""
    """Where the rule comes from (e.g. a section of the source plan)."""
    match: MatchModel
    """The faults the rule reacts to."""
    debounce_s: Seconds = 3.0
    """Seconds a fault must persist before the rule acts."""
    debounce_by_fault_s: dict[FaultKind, Seconds] = Field(default_factory=dict)
    """Per fault kind, seconds a fault must persist before the rule acts (else debounce_s)."""
    action: Action
    """The plan the rule builds."""
    repoint_order: list[RepointStage] | None = None
    """repoint_db: who is repointed, in order: `ipc` (the IPC hosts) and server kinds; each machine's files are
    repointed, then its readers restarted (default: ipc, db-connection, application)."""
    approval: Approval = Approval.MODE
    """mode: the site's mode decides (supervised: approve; automatic: run); always: an operator approves even in
    automatic mode.
    """


class FlapModel(Strict):
    window_s: Annotated[float, Range(1, 86400)] = 300.0
    """The window in which fault transitions are counted."""
    max_transitions: Annotated[int, Range(2, 1000)] = 4
    """More transitions than this in the window: flapping, reported and not acted on."""


class PolicyModel(Strict):
    hold_down_s: Seconds = 600.0
    """After an automatic plan, seconds before another one may run automatically."""
    default_debounce_s: Seconds = 3.0
    """The debounce of rules that do not set their own."""
    flap: FlapModel = FlapModel()
    """Flap detection."""


SWITCH_VERBS = ("start", "stop", "restart", "job_enable", "job_disable", "set_file", "repoint_db")


class SwitchStepModel(Strict):
    """One step of a switch: exactly one verb, naming its object; `server` for all but repoint_db."""

    server: Name | None = None
    """The managed server the step acts on (servers in site.yaml)."""
    start: Name | None = None
    """Start this service on the server."""
    stop: Name | None = None
    """Stop this service on the server."""
    restart: Name | None = None
    """Restart this service on the server."""
    job_enable: Name | None = None
    """Enable this scheduled job on the server."""
    job_disable: Name | None = None
    """Disable this scheduled job on the server."""
    set_file: Name | None = None
    """Point this switch file of the server at the value named by `to` (then run its reload command)."""
    repoint_db: Name | None = None
    """Repoint the whole site's database config files to this database site (rule 4's steps; no server)."""
    to: Name | None = None
    """set_file: the name of one of the file's values."""
    best_effort: bool = False
    """The step may fail without failing the switch (a step on the machine that failed)."""

    @model_validator(mode="after")
    def _one_verb(self) -> SwitchStepModel:
        verbs = [v for v in SWITCH_VERBS if getattr(self, v) is not None]
        if len(verbs) != 1:
            raise ValueError(f"a switch step has exactly one of {', '.join(SWITCH_VERBS)}, got "
                             + (", ".join(verbs) if verbs else "none"))
        if verbs[0] == "repoint_db" and self.server is not None:
            raise ValueError("repoint_db acts on the whole site: it names no server")
        if verbs[0] != "repoint_db" and self.server is None:
            raise ValueError(f"{verbs[0]} needs server")
        if (verbs[0] == "set_file") != (self.to is not None):
            raise ValueError("set_file needs to (a value name)" if verbs[0] == "set_file"
                             else f"to applies to set_file only, not {verbs[0]}")
        return self

    @property
    def verb(self) -> str:
        return next(v for v in SWITCH_VERBS if getattr(self, v) is not None)

    @property
    def name(self) -> str:
        return str(getattr(self, self.verb))


class SwitchModel(Strict):
    """A named switch (source plan III): its steps and the steps of its inverse."""

    id: Name
    """The switch's name (`ccfo switch NAME`, POST /api/v1/switches/NAME)."""
    description: str
    """What it does, one sentence (the plan's title)."""
    source: str = ""
    """Where it comes from (a section of the source plan)."""
    steps: list[SwitchStepModel] = Field(min_length=1)
    """The steps, in order."""
    inverse_description: str = ""
    """What the inverse does, one sentence."""
    inverse: list[SwitchStepModel] = Field(min_length=1)
    """The steps that undo it (`--inverse`), in order."""


class RulesFileModel(Strict):
    policy: PolicyModel = PolicyModel()
    """Site-wide decision policy."""
    rules: list[RuleModel] = Field(min_length=1)
    """The rules, in priority order: when faults match several rules, the earliest one acts first."""


class SwitchesFileModel(Strict):
    switches: list[SwitchModel] = Field(default_factory=list)
    """Named switches of the managed servers an operator runs (source plan III), each with its inverse."""
