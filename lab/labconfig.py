"""Derive the lab's config tree from the example site (config/site.yaml, rules.yaml).

Same hosts, boards, services and rules; only what must differ on one machine changes: loopback
addresses (127.0.1.1 for ipc-a, 127.0.1.2 for ipc-b by default), the `command` service backend with the
lab's stand-in daemons (each answering its liveness probe on a health port, killed by the agent when a
stop hangs), config files under the lab directory, database sites as lab TCP endpoints,
fencing through the lab PDU, inbound routing through the lab's SIP front (Kamailio at NET.200, lab/front.py),
and freshly generated secrets (0600) for the agents, AMI, SNMP, PDU and
operators. With LabLayout(controllers=3) the site gets a `cluster:` section: members ctl-a, ctl-b, ctl-c at
controller_listen's address on its port, port + 1, port + 2, and a 3-member etcd at NET.231..233 (docs/ha.md).
With LabLayout(netns=True) (a non-127 `net`) each controller member has an address of its own, NET.221, NET.222,
NET.223 on controller_listen's port, and the controllers, etcd members and IPC hosts become the nodes of a
network-namespace lab (`netns_nodes`, lab/world.py `enter_world`; docs/ha.md "The lab in network namespaces").
Each host's SNMP responder (SNMPv3 user `ccfo`, one generated key pair for the site) listens
on its own address, port 1161 (keeping the source's own notify_targets), and its FastAGI admission server on
port 4573; the controller receives
the agents' notifications on its own address, port 1162. The result is validated with the same loader
as production.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ccfo.platform.auth import add_token
from lab.children import LabError

LAB_SERVICES = Path(__file__).resolve().parent.parent / "agents" / "lab_services.py"
LAB_ENTRY = Path(__file__).resolve().parent / "entry.py"
SERVER_BASE = 11  # the managed servers' addresses: NET.11, NET.12, ... (hosts NET.1.., databases NET.101..)
NETNS_CONTROLLER_BASE = 221  # with netns: the controller members' own addresses NET.221, NET.222, NET.223


@dataclass
class LabLayout:
    """Where everything of one lab lives: addresses, ports, directories."""

    root: Path
    net: str = "127.0.1"  # hosts at NET.1, NET.2, ...; databases at NET.101, NET.102; PDU at NET.250
    controller_listen: str = "127.0.0.1:8080"
    agent_port: int = 9101
    ami_port: int = 5038
    control_port: int = 5039  # the lab AMI server's HTTP control
    snmp_port: int = 1161
    snmp_trap_port: int = 1162  # the controller's receiver, on controller_listen's address
    agi_port: int = 4573
    db_port: int = 1521
    pdu_port: int = 1161
    lab_control_port: int = 8090
    sip_port: int = 5060  # each host's IVR SIP endpoint; drill callers at NET.240, agent phone .241, dial-out .242
    hold_s: float | None = None  # the front's hold (routing.hold_s); None: the site's
    health_port: int = 9300  # each stand-in's liveness probe: HTTP on the host's address, port health_port + i
    probe: dict[str, float] = field(default_factory=lambda: {"interval_s": 0.5, "timeout_s": 0.5, "failures": 3})
    # A stand-in's stop drains a SIP endpoint for up to 3 s (SIP_DRAIN_S), then waits 5 s for SIGTERM: the
    # agent escalates a stop that hangs to SIGKILL after this, past a drain and before the stand-in would.
    stop_timeout_s: float = 4.0
    debounce_s: float | None = None  # tests shorten every rule's debounce
    mode: str | None = None  # start in this mode instead of the site's
    telephony: str = "dahdi"  # "sip": the hosts' spans become SIP trunks of the same channels (see sip_trunks)
    # The site's managed servers (site.yaml `servers`) as agents at NET.11, NET.12, ...: off by default, so the
    # IPC-only lab (and every test that needs nothing more) starts as fast as before.
    servers: bool = False
    # With servers: the site as before the Shanghai -> Shenzhen migration (the migration runbook's start): the
    # Shanghai servers serve (services running, jobs enabled), the Shenzhen ones are ready but idle, the switch
    # files and the database config name shanghai, the active database site.
    before_migration: bool = False
    entry_port: int = 8088  # a server's HTTP entry point stand-in (lab/entry.py), for a switch file with a reload
    # 1: one controller with its SQLite journal (the embedded default); 3: a controller cluster (ctl-a, ctl-b,
    # ctl-c on controller_listen's port, port + 1, port + 2) on a 3-member etcd at NET.231..233
    controllers: int = 1
    lease_ttl_s: float = 5.0  # cluster.lease_ttl_s with several controllers
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    # True: the controllers, etcd members and IPC hosts each run in a network namespace of their own on one
    # bridge (lab/netns.py), everything else (and the process running the lab) in a "world" namespace; their
    # links can be cut (LabSite.partition). Needs root and a `net` outside 127/8 (docs/ha.md).
    netns: bool = False
    hosts: dict[str, str] = field(default_factory=dict)  # host -> address, filled by build()
    server_addresses: dict[str, str] = field(default_factory=dict)  # server -> address, filled by build()

    def __post_init__(self) -> None:
        if self.netns and (self.net.split(".")[0] == "127" or len(self.net.split(".")) != 3):
            raise LabError(f"LabLayout(netns=True) needs a /24 prefix outside 127/8 (such as 10.79.0), not "
                           f"{self.net!r}: the namespaces' addresses live on a bridge, loopback ones cannot")

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def clustered(self) -> bool:
        return self.controllers > 1

    @property
    def controller_members(self) -> dict[str, str]:
        """Each controller's name and listen address: `controller` alone, else ctl-a, ctl-b, ... on
        controller_listen's address, its port and the next ones. With netns each member has its own address
        (NET.221, NET.222, ...), all on controller_listen's port."""
        names = [f"ctl-{chr(ord('a') + i)}" for i in range(self.controllers)] if self.clustered else ["controller"]
        host, _, port = self.controller_listen.rpartition(":")
        if self.netns:
            return {n: f"{self.net}.{NETNS_CONTROLLER_BASE + i}:{port}" for i, n in enumerate(names)}
        if not self.clustered:
            return {"controller": self.controller_listen}
        return {n: f"{host}:{int(port) + i}" for i, n in enumerate(names)}

    @property
    def controller_address(self) -> str:
        """The first controller's listen address (site.yaml `controller.listen`): controller_listen, or with
        netns the first member's own address on its port."""
        return next(iter(self.controller_members.values()))

    @property
    def etcd_addresses(self) -> list[str]:
        """The lab etcd members' addresses (several controllers only): NET.231, NET.232, NET.233."""
        return [f"{self.net}.{231 + i}" for i in range(3)] if self.clustered else []

    def ami_control_host(self, addr: str) -> str:
        """Where a host's lab AMI control endpoint (unauthenticated, loopback only) listens: the host's own
        loopback address, or with netns 127.0.0.1 inside the host's namespace (LabSite.ami_control reaches it
        from world through a socket opened in that namespace, even while the host is partitioned)."""
        return "127.0.0.1" if self.netns else addr

    @property
    def etcd_names(self) -> list[str]:
        """The lab etcd members' names, in etcd_addresses' order: etcd1, etcd2, etcd3."""
        return [f"etcd{i + 1}" for i in range(len(self.etcd_addresses))]

    @property
    def netns_tag(self) -> str:
        """The prefix of every namespace of this lab (netns mode): ccfo-NET with dashes, e.g. ccfo-10-79-0."""
        return "ccfo-" + self.net.replace(".", "-")

    def node_netns(self, node: str) -> str:
        """The namespace of one node (netns mode): TAG-NODE, e.g. ccfo-10-79-0-ctl-a; `world` for the rest."""
        return f"{self.netns_tag}-{node}"

    def netns_nodes(self, host_names: list[str]) -> dict[str, str]:
        """The nodes of the netns mode and each one's address: every controller member, every etcd member and
        every IPC host (`host_names` in site.yaml's order, at NET.1, NET.2, ... as `build` places them)."""
        nodes = {n: listen.rpartition(":")[0] for n, listen in self.controller_members.items()}
        nodes.update(zip(self.etcd_names, self.etcd_addresses, strict=True))
        nodes.update({h: f"{self.net}.{i}" for i, h in enumerate(host_names, start=1)})
        return nodes

    def world_addresses(self, host_names: list[str]) -> list[str]:
        """Every NET.1..254 address no node owns: the world namespace holds them all (the databases, the PDU,
        the SIP front, the SIPp far ends, the servers, the lab's control API, whatever a test binds)."""
        owned = set(self.netns_nodes(host_names).values())
        return [a for a in (f"{self.net}.{i}" for i in range(1, 255)) if a not in owned]

    @property
    def etcd_dir(self) -> Path:
        return self.root / "etcd"

    def host_dir(self, host: str) -> Path:
        return self.root / "hosts" / host

    def run_dir(self, host: str) -> Path:
        return self.host_dir(host) / "run"

    @property
    def front_host(self) -> str:
        """The SIP front (Kamailio): every lab call enters here."""
        return f"{self.net}.200"

    @property
    def front_dir(self) -> Path:
        return self.root / "front"

    @property
    def front_socket(self) -> Path:
        """Kamailio's jsonrpcs socket; a UNIX socket path is at most 107 bytes, so a deep lab directory
        (pytest's) gets a short one under the temp directory, named after the lab's root."""
        path = self.front_dir / "rpc.sock"
        if len(str(path)) <= 80:
            return path
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"ccfo-front-{digest}" / "rpc.sock"

    @property
    def pdu_host(self) -> str:
        return f"{self.net}.250"

    @property
    def lab_control(self) -> str:
        host = "127.0.0.1" if self.net == "127.0.1" else f"{self.net}.251"
        return f"{host}:{self.lab_control_port}"


def _secret(path: Path, value: str | None = None) -> str:
    value = value or secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _svc_cmd(verb: str, name: str, run: Path, control: str | None = None) -> list[str]:
    argv = [sys.executable, "-S", str(LAB_SERVICES), verb, name, "--dir", str(run)]
    return argv + (["--control", control] if control else [])


def build(source: Path, layout: LabLayout) -> dict[str, Any]:
    """Write the lab config tree and secrets under layout.root; return the site dict written."""
    if layout.controllers not in (1, 3):
        raise ValueError(f"LabLayout.controllers must be 1 or 3, got {layout.controllers}")
    site = yaml.safe_load((source / "site.yaml").read_text())
    rules = yaml.safe_load((source / "rules.yaml").read_text())
    cfg = layout.config
    if cfg.exists():
        shutil.rmtree(cfg)
    (cfg / "secrets").mkdir(parents=True)
    ami_secret = _secret(cfg / "secrets" / "ami-secret")
    _secret(cfg / "secrets" / "snmp-auth-key")
    _secret(cfg / "secrets" / "snmp-priv-key")
    _secret(cfg / "secrets" / "pdu-community", "lab-pdu-" + secrets.token_hex(4))
    tokens = cfg / "secrets" / "tokens.yaml"
    for i, (name, host) in enumerate(site["hosts"].items(), start=1):
        addr = f"{layout.net}.{i}"
        layout.hosts[name] = addr
        token = _secret(cfg / "secrets" / f"agent-token-{name}")
        _register_agent_token(tokens, name, token)
        _lab_host(host, name, addr, layout, ami_secret)
        if layout.telephony == "sip":
            host["trunks"] = sip_trunks(host["board"]["spans"])
            host["board"]["spans"] = []
        elif layout.telephony != "dahdi":
            raise ValueError(f"LabLayout.telephony must be dahdi or sip, got {layout.telephony!r}")
    if layout.before_migration and "shanghai" in site["databases"]["sites"]:
        site["databases"]["active"] = "shanghai"
    if layout.servers:
        for i, (name, server) in enumerate(site.get("servers", {}).items(), start=SERVER_BASE):
            addr = f"{layout.net}.{i}"
            layout.server_addresses[name] = addr
            _register_agent_token(tokens, name, _secret(cfg / "secrets" / f"agent-token-{name}"))
            _lab_server(server, name, addr, layout)
    else:  # without their agents a repoint plan would fail on its first server step: the IPC pair only
        site.pop("servers", None)
    for role in ("viewer", "operator", "admin"):
        _secret(cfg / "secrets" / f"{role}.token", add_token(tokens, f"lab-{role}", role))
    for i, db in enumerate(site["databases"]["sites"].values(), start=101):
        db.update(host=f"{layout.net}.{i}", port=layout.db_port)
    listen = layout.controller_address
    site["controller"].update(listen=listen, url=f"http://{listen}",
                              tokens_file="secrets/tokens.yaml", journal=str(layout.root / "var" / "journal.sqlite"),
                              snmp_trap_listen=f"{listen.rpartition(':')[0]}:{layout.snmp_trap_port}")
    site["fencing"] = {"method": "pdu", "pdu": {"host": layout.pdu_host, "port": layout.pdu_port,
                                                "community_file": "secrets/pdu-community",
                                                "outlets": {h: i for i, h in enumerate(site["hosts"], start=1)}}}
    routing = site.setdefault("routing", {})
    routing.update(method="kamailio", kamailio={
        "rpc_socket": str(layout.front_socket), "list_file": str(layout.front_dir / "dispatcher.list"),
        "set_id": 1, "rpc_timeout_s": 2.0,
        "destinations": {h: f"sip:{a}:{layout.sip_port}" for h, a in layout.hosts.items()}})
    if layout.hold_s is not None:
        routing["hold_s"] = layout.hold_s
    if layout.mode:
        site["controller"]["mode"] = layout.mode
    if layout.clustered:
        _lab_cluster(site, layout)
    (cfg / "site.yaml").write_text("# Generated by `ccfo lab up` from the example site. Do not edit.\n"
                                   + yaml.safe_dump(site, sort_keys=False))
    if layout.debounce_s is not None:
        for rule in rules["rules"]:
            rule["debounce_s"] = layout.debounce_s
            rule["debounce_by_fault_s"] = {k: min(v, layout.debounce_s)
                                           for k, v in rule.get("debounce_by_fault_s", {}).items()}
    (cfg / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    for extra in ("checklists", "drills"):  # runbooks and site drills, as the operator wrote them
        if (source / extra).is_dir():
            shutil.copytree(source / extra, cfg / extra)
    if not layout.servers and (cfg / "checklists").is_dir():  # a runbook acting on the servers needs them
        for runbook in (cfg / "checklists").glob("*.yaml"):
            if "plan: server" in runbook.read_text():
                runbook.unlink()
    if (source / "drills.yaml").is_file():
        shutil.copy2(source / "drills.yaml", cfg / "drills.yaml")
    if layout.servers and (source / "switches.yaml").is_file():  # the switches name the servers
        shutil.copy2(source / "switches.yaml", cfg / "switches.yaml")
    return site


def _lab_cluster(site: dict[str, Any], layout: LabLayout) -> None:
    """The `cluster:` section of a lab with several controllers. The members share this machine, so the
    SNMP notification receiver (one port, one address in site.yaml) is dropped: the members learn the hosts'
    state from the agents' reports and their own polls, as a member always can."""
    site["controller"].pop("snmp_trap_listen", None)
    site["cluster"] = {"members": [{"name": n, "url": f"http://{listen}"}
                                   for n, listen in layout.controller_members.items()],
                       "etcd_endpoints": [f"http://{a}:{layout.etcd_client_port}" for a in layout.etcd_addresses],
                       "lease_ttl_s": layout.lease_ttl_s}


def sip_trunks(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SIP trunks standing in for a host's spans: span 1 -> res_pjsip `carrier-1`, span N -> chan_sip
    `carrier-N`, each with the span's channels (so the lab's figures stay those of the example site)."""
    return [{"name": f"carrier-{s['span']}", "kind": "sip", "channels": int(s["channels"]),
             "driver": "pjsip" if i == 0 else "sip"} for i, s in enumerate(spans)]


def _register_agent_token(tokens: Path, host: str, token: str) -> None:
    data = yaml.safe_load(tokens.read_text()) if tokens.exists() else {"tokens": []}
    data["tokens"].append({"name": f"agent-{host}", "role": "agent", "host": host,
                           "sha256": hashlib.sha256(token.encode()).hexdigest()})
    fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)


def _lab_host(host: dict[str, Any], name: str, addr: str, layout: LabLayout, ami_secret: str) -> None:
    hdir, run = layout.host_dir(name), layout.run_dir(name)
    (hdir / "etc").mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    if "ivr" in host.get("services", {}):  # the ivr stand-in is the host's SIP endpoint (agents/lab_services.py)
        far = f"{layout.net}.24{{}}:{layout.sip_port}"
        (run / "ivr.sip").write_text(f"sip={addr}:{layout.sip_port}\nagent={far.format(1)}\ndialout={far.format(2)}\n"
                                     f"caller={layout.net}.240\nfront={layout.front_host}:{layout.sip_port}\n")
    control = f"http://{layout.ami_control_host(addr)}:{layout.control_port}"
    host.update(address=addr, service_backend="command", backup_dir=str(hdir / "backups"))
    host["agent"] = {"url": f"http://{addr}:{layout.agent_port}", "token_file": f"secrets/agent-token-{name}"}
    host["ami"] = {**host.get("ami", {}), "host": addr, "port": layout.ami_port, "secret_file": "secrets/ami-secret",
                   "ping_interval_s": 1.0, "ping_timeout_s": 1.0, "reconcile_interval_s": 2.0}
    host["snmp"] = {"address": addr, "port": layout.snmp_port, "user": "ccfo",
                    "auth_key_file": "secrets/snmp-auth-key", "priv_key_file": "secrets/snmp-priv-key",
                    "notify_targets": host.get("snmp", {}).get("notify_targets", [])}  # the source's own NMS
    host["agi"] = {"listen": f"{addr}:{layout.agi_port}", "fail_open": True, "enabled": True}
    services = {}
    for i, (svc, spec) in enumerate(host["services"].items()):
        health = f"{addr}:{layout.health_port + i}"  # the stand-in answers its probe here
        (run / f"{svc}.health").write_text(health + "\n")
        timing = {k: (spec.get("probe") or {}).get(k, v) for k, v in layout.probe.items()}
        services[svc] = {**{k: v for k, v in spec.items() if k not in ("unit", "probe")},
                         "start": _svc_cmd("start", svc, run), "stop": _svc_cmd("stop", svc, run),
                         "status": _svc_cmd("status", svc, run), "kill": _svc_cmd("kill", svc, run),
                         "stop_timeout_s": layout.stop_timeout_s,
                         "probe": {"http": f"http://{health}/health", "expect_status": 200, **timing}}
    host["services"] = services
    driver = host["board"]["driver_service"]
    host["board"]["driver"] = {verb: _svc_cmd(verb, driver, run, control) for verb in ("start", "stop", "status")}
    files = []
    for f in host.get("db_config_files", []):
        f = dict(f)
        f["path"] = str(hdir / "etc" / Path(f["path"]).name)
        files.append(f)
    host["db_config_files"] = files


def _lab_server(server: dict[str, Any], name: str, addr: str, layout: LabLayout) -> None:
    """A managed server in the lab: its agent on its own address, its services as stand-in daemons, its
    whitelisted files (database and switch files) under hosts/NAME/etc, and every job a real cron file under
    hosts/NAME/cron.d (a systemd timer becomes a cron job: the lab has no systemd) whose command appends a
    line to hosts/NAME/jobs.log. A switch file with a reload command (an entry point) is followed by the
    server's lab/entry.py stand-in on NET.x:entry_port; its reload command is that stand-in's."""
    hdir, run = layout.host_dir(name), layout.run_dir(name)
    for sub in ("etc", "cron.d"):
        (hdir / sub).mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    server.update(service_backend="command", backup_dir=str(hdir / "backups"))
    server["agent"] = {"url": f"http://{addr}:{layout.agent_port}", "token_file": f"secrets/agent-token-{name}"}
    server["services"] = {svc: {"start": _svc_cmd("start", svc, run), "stop": _svc_cmd("stop", svc, run),
                                "status": _svc_cmd("status", svc, run), "kill": _svc_cmd("kill", svc, run),
                                "stop_timeout_s": layout.stop_timeout_s}
                          for svc in server.get("services", {})}
    server["db_config_files"] = [{**f, "path": str(hdir / "etc" / Path(f["path"]).name)}
                                 for f in server.get("db_config_files", [])]
    entry = [sys.executable, "-S", str(LAB_ENTRY), "reload", f"http://{addr}:{layout.entry_port}"]
    server["switch_files"] = [{**f, "path": str(hdir / "etc" / Path(f["path"]).name),
                               **({"reload": entry} if f.get("reload") else {})}
                              for f in server.get("switch_files", [])]
    log = hdir / "jobs.log"
    server["jobs"] = {job: {"backend": "cron", "schedule": spec.get("schedule") or "*/5 * * * *",
                            "user": spec.get("user", "root"), "cron_file": str(hdir / "cron.d" / job),
                            "command": f"echo {name} {job} ran >> {log}"}
                      for job, spec in server.get("jobs", {}).items()}
