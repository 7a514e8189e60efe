"""Cross-field checks of the config files: what a schema cannot say but an operator would get wrong.

Each check returns Problems with the line of the offending field. Invariants reject; nothing here
silently adjusts a value. `production_warnings` names lab-only settings that a production site should
not run with (they are warnings: the lab uses them on purpose).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from ccfo.config.cluster import check_cluster
from ccfo.config.models import RulesFileModel, SiteFileModel, SwitchesFileModel
from ccfo.config.yamlpos import Located, Problem
from ccfo.domain.faults import FaultKind
from ccfo.domain.plan import DEFAULT_REPOINT_ORDER, Action
from ccfo.domain.rules import RoleMatch
from ccfo.domain.schedule import ScheduleError, parse_cron
from ccfo.domain.site import IPC_HOSTS, Duty, JobBackend, Role


def check_site(m: SiteFileModel, loc: Located, root: Path) -> list[Problem]:
    problems: list[Problem] = []
    roles = Counter(h.role for h in m.hosts.values())
    if len(m.hosts) != 2 or roles[Role.PRIMARY] != 1 or roles[Role.STANDBY] != 1:
        problems.append(loc.problem(("hosts",), "a site has exactly two hosts: one primary and one standby, got "
                                    + ", ".join(f"{n}={h.role.value}" for n, h in m.hosts.items())))
    for name, host in m.hosts.items():
        problems += _check_host(name, host, m, loc)
    if m.databases.active not in m.databases.sites:
        problems.append(loc.problem(("databases", "active"), f"unknown database site {m.databases.active!r} "
                                    f"(sites: {', '.join(m.databases.sites)})"))
    smallest = min((_host_channels(h) for h in m.hosts.values()), default=0)
    if m.capacity.reserve_for_transfers >= smallest > 0:
        problems.append(loc.problem(("capacity", "reserve_for_transfers"),
                                    f"must be less than the smallest host's channels ({smallest}), "
                                    f"got {m.capacity.reserve_for_transfers}"))
    if m.capacity.channels_per_agent_call < m.capacity.channels_per_ivr_call:
        problems.append(loc.problem(("capacity", "channels_per_agent_call"),
                                    "an agent call holds at least the channels of an IVR call"))
    urls = Counter([h.agent.url for h in m.hosts.values()] + [s.agent.url for s in m.servers.values()])
    for section, machines in (("hosts", m.hosts), ("servers", m.servers)):
        for name, machine in machines.items():
            if urls[machine.agent.url] > 1:
                problems.append(loc.problem((section, name, "agent", "url"),
                                            f"shared with another host or server: {machine.agent.url}"))
    problems += _check_servers(m, loc)
    problems += _check_fencing(m, loc)
    problems += _check_routing(m, loc)
    problems += _check_snmp(m, loc)
    problems += check_cluster(m.cluster, loc)
    return problems


def _check_routing(m: SiteFileModel, loc: Located) -> list[Problem]:
    problems = []
    r = m.routing
    if r.method == "kamailio":
        if r.kamailio is None:
            problems.append(loc.problem(("routing", "kamailio"), "required when routing.method is kamailio"))
        else:
            for host in m.hosts:
                if host not in r.kamailio.destinations:
                    problems.append(loc.problem(("routing", "kamailio", "destinations"),
                                                f"no SIP destination for host {host}"))
            for host in r.kamailio.destinations:
                if host not in m.hosts:
                    problems.append(loc.problem(("routing", "kamailio", "destinations", host),
                                                f"unknown host {host!r}"))
    if r.hold_s > 0 and r.hold_s / r.hold_retry_s > 26:
        problems.append(loc.problem(("routing", "hold_retry_s"), f"at most 26 retries fit in Kamailio's branch "
                                    f"limit: hold_s / hold_retry_s must be <= 26, got {r.hold_s / r.hold_retry_s:g}"))
    return problems


def _host_channels(host) -> int:  # type: ignore[no-untyped-def]
    """All of a host's channels: its spans' bearer channels and its SIP trunks' limits."""
    return sum(s.channels for s in host.board.spans) + sum(t.channels for t in host.trunks)


def _check_trunks(host, base: tuple, loc: Located) -> list[Problem]:  # type: ignore[no-untyped-def]
    problems = []
    if not host.board.spans and not host.trunks:
        problems.append(loc.problem(base, "no telephony: give board.spans (DAHDI) or trunks (SIP), or both"))
    seen: dict[str, int] = {}
    for i, trunk in enumerate(host.trunks):
        if trunk.name in seen:
            problems.append(loc.problem((*base, "trunks", i, "name"),
                                        f"duplicate trunk name {trunk.name!r} (also trunks[{seen[trunk.name]}])"))
        seen.setdefault(trunk.name, i)
    return problems


def _check_host(name: str, host, m: SiteFileModel, loc: Located) -> list[Problem]:  # type: ignore[no-untyped-def]
    base = ("hosts", name)
    problems: list[Problem] = _check_trunks(host, base, loc)
    seen: dict[int, int] = {}
    for i, span in enumerate(host.board.spans):
        if span.span in seen:
            problems.append(loc.problem((*base, "board", "spans", i, "span"),
                                        f"duplicate span number {span.span} (also spans[{seen[span.span]}])"))
        seen.setdefault(span.span, i)
    channels = _host_channels(host)
    for field in ("inbound_max", "outbound_max"):
        value = getattr(host.board.limits, field)
        if value is not None and value > channels:
            problems.append(loc.problem((*base, "board", "limits", field),
                                        f"must be at most the host's {channels} channels, got {value}"))
    critical = [n for n, s in host.services.items() if s.critical]
    if not critical:
        problems.append(loc.problem((*base, "services"), "no critical service (CTI/IVR): mark them critical: true"))
    for sname, svc in host.services.items():
        if svc.critical and not {Duty.PRIMARY, Duty.TAKEOVER} <= set(svc.runs_as):
            problems.append(loc.problem((*base, "services", sname, "runs_as"),
                                        "a critical service must run as primary and takeover"))
        if svc.critical and Duty.STANDBY in svc.runs_as:
            problems.append(loc.problem((*base, "services", sname, "runs_as"),
                                        "a critical service (CTI/IVR) must not run on the standby: split brain"))
        if svc.probe is not None and svc.probe.timeout_s > svc.probe.interval_s:
            problems.append(loc.problem((*base, "services", sname, "probe", "timeout_s"),
                                        f"must be at most interval_s ({svc.probe.interval_s:g}), "
                                        f"got {svc.probe.timeout_s:g}: one probe at a time per service"))
        if host.service_backend == "command" and not (svc.start and svc.stop and svc.status):
            problems.append(loc.problem((*base, "services", sname),
                                        "the command backend needs start, stop and status commands"))
    if host.role is Role.STANDBY and not any(
        Duty.TAKEOVER in s.runs_as and not s.critical for s in host.services.values()
    ):
        problems.append(loc.problem((*base, "services"),
                                    "the standby has no replica services (none runs as takeover besides CTI/IVR)"))
    drv = host.board.driver
    if host.service_backend == "command" and any((drv.start, drv.stop, drv.status)) and not (
            drv.start and drv.stop and drv.status):
        problems.append(loc.problem((*base, "board", "driver"), "the command backend needs start, stop and status"))
    if host.board.driver_service in host.services:
        problems.append(loc.problem((*base, "board", "driver_service"),
                                    "the board driver is handled by isolate/restore, not as a managed service"))
    ids = Counter(f.id for f in host.db_config_files)
    for i, f in enumerate(host.db_config_files):
        problems += _check_db_file(f, (*base, "db_config_files", i), set(host.services), ids, loc)
    return problems


def _check_servers(m: SiteFileModel, loc: Located) -> list[Problem]:
    """Managed servers: a known data center, a name of their own, absolute whitelisted files, readers
    among their services, cron jobs with a readable schedule and an absolute cron file."""
    problems: list[Problem] = []
    for name, server in m.servers.items():
        base = ("servers", name)
        if name in m.hosts:
            problems.append(loc.problem(base, f"duplicate name {name!r}: also a host (hosts and servers share the "
                                        "agents' names)"))
        if server.datacenter not in m.datacenters:
            known = ", ".join(m.datacenters) or "none: add a datacenters section"
            problems.append(loc.problem((*base, "datacenter"), f"unknown data center {server.datacenter!r} "
                                        f"(known: {known})"))
        ids = Counter(f.id for f in server.db_config_files)
        for i, f in enumerate(server.db_config_files):
            path = (*base, "db_config_files", i)
            if not f.path.startswith("/"):
                problems.append(loc.problem((*path, "path"), f"must be an absolute path, got {f.path!r}"))
            problems += _check_db_file(f, path, set(server.services), ids, loc)
        if not server.backup_dir.startswith("/"):
            problems.append(loc.problem((*base, "backup_dir"), f"must be an absolute path, got {server.backup_dir!r}"))
        for sname, svc in server.services.items():
            if server.service_backend == "command" and not (svc.start and svc.stop and svc.status):
                problems.append(loc.problem((*base, "services", sname),
                                            "the command backend needs start, stop and status commands"))
        for jname, job in server.jobs.items():
            problems += _check_job(job, (*base, "jobs", jname), loc)
        problems += _check_switch_files(server, base, loc)
    return problems


def _check_switch_files(server, base, loc: Located) -> list[Problem]:  # type: ignore[no-untyped-def]
    problems = []
    ids = Counter(f.id for f in server.switch_files)
    for i, f in enumerate(server.switch_files):
        path = (*base, "switch_files", i)
        if not f.path.startswith("/"):
            problems.append(loc.problem((*path, "path"), f"must be an absolute path, got {f.path!r}"))
        problems += _check_db_file(f, path, set(), ids, loc)
        if f.reload is not None and not f.reload:
            problems.append(loc.problem((*path, "reload"), "an empty command: leave reload out instead"))
    return problems


_ANY_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)


def _check_job(job, path, loc: Located) -> list[Problem]:  # type: ignore[no-untyped-def]
    problems = []
    if job.backend is JobBackend.CRON:
        for field in ("schedule", "command"):
            if getattr(job, field) is None:
                problems.append(loc.problem(path, f"a cron job needs {field}"))
        if job.schedule is not None:
            try:
                parse_cron(job.schedule).next_run(_ANY_INSTANT)  # a day that never comes ("31 2") is an error too
            except ScheduleError as exc:
                problems.append(loc.problem((*path, "schedule"), str(exc)))
        if job.command is not None and ("\n" in job.command or "\r" in job.command or "\0" in job.command):
            problems.append(loc.problem((*path, "command"), "must be one line: a line break would add lines of its "
                                        "own to the cron file"))
        if job.cron_file is not None and not job.cron_file.startswith("/"):
            problems.append(loc.problem((*path, "cron_file"), f"must be an absolute path, got {job.cron_file!r}"))
        if job.timer is not None:
            problems.append(loc.problem((*path, "timer"), "applies to the systemd backend only"))
    else:
        for field in ("schedule", "command", "cron_file"):
            if getattr(job, field) is not None:
                problems.append(loc.problem((*path, field), "applies to the cron backend only (a systemd timer "
                                            "carries its own schedule)"))
    return problems


def _check_db_file(f, path, services: set[str], ids: Counter, loc: Located) -> list[Problem]:  # type: ignore[no-untyped-def]
    problems = []
    if ids[f.id] > 1:
        problems.append(loc.problem((*path, "id"), f"duplicate file id {f.id!r}"))
    if not f.path.startswith("/") and not f.path.startswith("./") and ".." in Path(f.path).parts:
        problems.append(loc.problem((*path, "path"), "must not contain '..'"))
    need = {"ini": ("section", "key"), "keyvalue": ("key",), "regex": ("pattern",)}[f.format]
    for field in need:
        if getattr(f, field) is None:
            problems.append(loc.problem((*path, field), f"required for format {f.format}"))
    if f.format == "regex" and f.pattern is not None:
        import re
        if re.compile(f.pattern).groups != 1:
            problems.append(loc.problem((*path, "pattern"), "needs exactly one group (the value to replace)"))
    for j, reader in enumerate(getattr(f, "readers", ())):
        if reader not in services:
            problems.append(loc.problem((*path, "readers", j), f"unknown service {reader!r}"))
    return problems


def _check_fencing(m: SiteFileModel, loc: Located) -> list[Problem]:
    problems = []
    if m.fencing.method == "pdu":
        if m.fencing.pdu is None:
            problems.append(loc.problem(("fencing", "pdu"), "required when fencing.method is pdu"))
        else:
            for host in m.hosts:
                if host not in m.fencing.pdu.outlets:
                    problems.append(loc.problem(("fencing", "pdu", "outlets"), f"no outlet for host {host}"))
            for host in m.fencing.pdu.outlets:
                if host not in m.hosts:
                    problems.append(loc.problem(("fencing", "pdu", "outlets", host), f"unknown host {host!r}"))
    return problems


def _check_snmp(m: SiteFileModel, loc: Located) -> list[Problem]:
    """SNMP keys come in pairs; a notification target is v2c or v3 and a v3 one has keys to send with."""
    problems: list[Problem] = []
    listen = m.controller.snmp_trap_listen
    users: dict[str, set[tuple[str | None, str | None]]] = {}
    for name, host in m.hosts.items():
        snmp, base = host.snmp, ("hosts", name, "snmp")
        if (snmp.auth_key_file is None) != (snmp.priv_key_file is None):
            field = "auth_key_file" if snmp.auth_key_file else "priv_key_file"  # the one set has a line
            problems.append(loc.problem((*base, field), "SNMPv3 needs both auth_key_file and priv_key_file"))
        for i, target in enumerate(snmp.notify_targets):
            problems += _check_target(target, (*base, "notify_targets", i), loc, snmp)
        if snmp.auth_key_file and snmp.priv_key_file:
            users.setdefault(snmp.user, set()).add((snmp.auth_key_file, snmp.priv_key_file))
        elif listen and not snmp.community_file:
            problems.append(loc.problem(base, "no SNMP keys or community: this host sends no notifications to "
                                        f"controller.snmp_trap_listen ({listen}) and is not polled", "warning"))
    for user, keys in users.items():
        if listen and len(keys) > 1:
            problems.append(loc.problem(("controller", "snmp_trap_listen"),
                                        f"hosts share the SNMP user {user!r} with different key files: the "
                                        "controller's receiver holds one key pair per user name", "warning"))
    for i, target in enumerate(m.controller.snmp_nms_targets):
        problems += _check_target(target, ("controller", "snmp_nms_targets", i), loc, None)
    return problems


def _check_target(t, path, loc: Located, host_snmp) -> list[Problem]:  # type: ignore[no-untyped-def]
    if (t.community_file is None) == (t.user is None):
        return [loc.problem(path, "give exactly one of community_file (SNMPv2c) or user (SNMPv3)")]
    own = (t.auth_key_file, t.priv_key_file)
    if t.user is None:
        if any(own):
            return [loc.problem((*path, "auth_key_file" if t.auth_key_file else "priv_key_file"),
                                "keys without a user: a v2c target uses only its community_file")]
        return []
    if any(own) and not all(own):
        return [loc.problem((*path, "auth_key_file" if t.auth_key_file else "priv_key_file"),
                            "SNMPv3 needs both auth_key_file and priv_key_file")]
    host_keys = (host_snmp.auth_key_file, host_snmp.priv_key_file) if host_snmp is not None else (None, None)
    if not any(own) and not all(host_keys):
        where = "here or in the host's snmp section" if host_snmp is not None else "here"
        return [loc.problem((*path, "user"), f"SNMPv3 target user {t.user!r} has no keys: set auth_key_file and "
                            f"priv_key_file {where}")]
    if host_snmp is not None and t.user == host_snmp.user and any(own) and own != host_keys:
        return [loc.problem((*path, "user"), f"{t.user!r} is this host's read user: a target with that name "
                            "must use the host's keys (leave auth_key_file/priv_key_file out or pick another user)")]
    return []


_ACTIONS_FOR = {
    RoleMatch.PRIMARY: {Action.FAILOVER, Action.ISOLATE_BOARD, Action.ALERT},
    RoleMatch.STANDBY: {Action.ISOLATE_STANDBY, Action.ALERT},
    RoleMatch.ACTIVE_DB: {Action.REPOINT_DB, Action.ALERT},
    RoleMatch.ANY: {Action.ALERT},
}


def check_rules(r: RulesFileModel, loc: Located, site: SiteFileModel) -> list[Problem]:
    problems = []
    services = {s for h in site.hosts.values() for s in h.services}
    ids = Counter(rule.id for rule in r.rules)
    for i, rule in enumerate(r.rules):
        base = ("rules", i)
        if ids[rule.id] > 1:
            problems.append(loc.problem((*base, "id"), f"duplicate rule id {rule.id!r}"))
        for j, svc in enumerate(rule.match.services or []):
            if svc not in services:
                problems.append(loc.problem((*base, "match", "services", j),
                                            f"unknown service {svc!r} (known: {', '.join(sorted(services))})"))
        if rule.action not in _ACTIONS_FOR[rule.match.role]:
            allowed = ", ".join(sorted(a.value for a in _ACTIONS_FOR[rule.match.role]))
            problems.append(loc.problem((*base, "action"),
                                        f"{rule.action.value} does not apply to role {rule.match.role.value} "
                                        f"(allowed: {allowed})"))
        for kind in rule.debounce_by_fault_s:
            if kind not in rule.match.faults:
                problems.append(loc.problem((*base, "debounce_by_fault_s", kind.value),
                                            f"{kind.value} is not among this rule's faults "
                                            f"({', '.join(f.value for f in rule.match.faults)})"))
        if rule.match.role is RoleMatch.ACTIVE_DB and set(rule.match.faults) != {FaultKind.DB_DOWN}:
            problems.append(loc.problem((*base, "match", "faults"), "role active_db matches only db_down"))
        if rule.match.role is not RoleMatch.ACTIVE_DB and FaultKind.DB_DOWN in rule.match.faults:
            problems.append(loc.problem((*base, "match", "faults"), "db_down is matched with role active_db"))
        problems += _check_repoint_order(rule, base, loc, site)
    return problems


def check_switches(r: SwitchesFileModel, loc: Located, site: SiteFileModel) -> list[Problem]:
    """Every name a switch step uses exists: the server, and on it the service, job or switch file and the
    file's value; a repoint_db names a database site."""
    problems = []
    ids = Counter(w.id for w in r.switches)
    for i, switch in enumerate(r.switches):
        if ids[switch.id] > 1:
            problems.append(loc.problem(("switches", i, "id"), f"duplicate switch id {switch.id!r}"))
        for part in ("steps", "inverse"):
            for j, step in enumerate(getattr(switch, part)):
                problems += _check_switch_step(step, ("switches", i, part, j), loc, site)
    return problems


def _check_switch_step(step, path, loc: Located, site: SiteFileModel) -> list[Problem]:  # type: ignore[no-untyped-def]
    verb, name = step.verb, step.name
    if verb == "repoint_db":
        if name not in site.databases.sites:
            return [loc.problem((*path, verb), f"unknown database site {name!r} "
                                f"(sites: {', '.join(site.databases.sites)})")]
        return []
    server = site.servers.get(step.server)
    if server is None:
        hint = " (an IPC host: switches act on managed servers)" if step.server in site.hosts else ""
        return [loc.problem((*path, "server"), f"unknown server {step.server!r}{hint} "
                            f"(servers: {', '.join(site.servers) or 'none'})")]
    if verb in ("start", "stop", "restart"):
        known = list(server.services)
        what = "service"
    elif verb in ("job_enable", "job_disable"):
        known, what = list(server.jobs), "job"
    else:
        files = {f.id: f for f in server.switch_files}
        if name not in files:
            return [loc.problem((*path, verb), f"{name!r} is not in {step.server}'s whitelist of switch files "
                                f"(switch_files: {', '.join(files) or 'none'})")]
        if step.to not in files[name].values:
            return [loc.problem((*path, "to"), f"{name} on {step.server} has no value {step.to!r} "
                                f"(values: {', '.join(files[name].values)})")]
        return []
    if name not in known:
        return [loc.problem((*path, verb), f"unknown {what} {name!r} on {step.server} "
                            f"({what}s: {', '.join(known) or 'none'})")]
    return []


def _check_repoint_order(rule, base, loc: Located, site: SiteFileModel) -> list[Problem]:  # type: ignore[no-untyped-def]
    """A repoint order belongs to a repoint_db rule, names each stage once, and leaves no server whose
    database files would silently keep naming the failed site."""
    path = (*base, "repoint_order")
    if rule.repoint_order is not None and rule.action is not Action.REPOINT_DB:
        return [loc.problem(path, f"applies to action repoint_db only, not {rule.action.value}")]
    if rule.action is not Action.REPOINT_DB:
        return []
    if rule.repoint_order is None:  # the default order; the problem is reported on the rule's action
        path = (*base, "action")
    problems = []
    seen = Counter(rule.repoint_order if rule.repoint_order is not None else DEFAULT_REPOINT_ORDER)
    for i, stage in enumerate(rule.repoint_order or ()):
        if seen[stage] > 1:
            problems.append(loc.problem((*path, i), f"{stage!r} is listed more than once"))
    if IPC_HOSTS not in seen:
        problems.append(loc.problem(path, f"must include {IPC_HOSTS!r}: the IPCs' files name the database too"))
    for name, server in site.servers.items():
        if server.db_config_files and server.kind.value not in seen:
            problems.append(loc.problem(path, f"server {name} ({server.kind.value}) has database config files but "
                                        f"its kind is not in the order: they would keep naming the failed site"))
    return problems


def production_warnings(m: SiteFileModel, loc: Located) -> list[Problem]:
    """Lab-only settings in what may be a production config: warnings, never errors."""
    out: list[Problem] = []
    for name, host in m.hosts.items():
        parts = urlsplit(host.agent.url)
        if parts.scheme == "http" and not _loopback(parts.hostname or ""):
            out.append(loc.problem(("hosts", name, "agent", "url"), "plain HTTP on a non-loopback address",
                                   "warning"))
        if host.snmp.community_file:
            out.append(loc.problem(("hosts", name, "snmp", "community_file"),
                                   "SNMP v2c community enabled (lab only; production uses v3 authPriv)", "warning"))
    if m.fencing.method == "operator":
        out.append(loc.problem(("fencing", "method"),
                               "no automatic fencing: an unreachable primary waits for an operator", "warning"))
    return out + _production_transport(m, loc)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _production_transport(m: SiteFileModel, loc: Located) -> list[Problem]:
    """TLS on both APIs, agents able to reach the controller, v3 notifications, a PDU community of its own."""
    out: list[Problem] = []
    ctl = m.controller
    if not ctl.tls_cert_file and not _loopback(ctl.listen.rpartition(":")[0].strip("[]")):
        out.append(loc.problem(("controller", "listen"), "plain HTTP on a non-loopback address (set tls_cert_file "
                               "and tls_key_file)", "warning"))
    push = urlsplit(ctl.url or f"http://{ctl.listen}")  # agents map a wildcard address to this machine
    remote = [f"{n} {h.address}" for n, h in m.hosts.items() if not _loopback(h.address)]
    if remote and (push.hostname in (None, "", "0.0.0.0", "::") or _loopback(push.hostname or "")):
        shown = (ctl.url or f"http://{ctl.listen}").replace("//0.0.0.0", "//127.0.0.1")
        out.append(loc.problem(("controller", "url" if ctl.url else "listen"),
                               f"agents on other machines ({', '.join(remote)}) cannot reach the controller at "
                               f"{shown}: set controller.url", "warning"))
    targets = [(("controller", "snmp_nms_targets", i), t) for i, t in enumerate(ctl.snmp_nms_targets)]
    for name, host in m.hosts.items():
        if host.agent.url.startswith("https:") and not host.agent.tls_cert_file:
            out.append(loc.problem(("hosts", name, "agent", "url"), "https, but the agent has no tls_cert_file: it "
                                   "serves plain HTTP unless started with --tls-cert", "warning"))
        targets += [(("hosts", name, "snmp", "notify_targets", i), t) for i, t in enumerate(host.snmp.notify_targets)]
    for path, target in targets:
        if target.community_file:
            out.append(loc.problem((*path, "community_file"), "SNMP v2c notifications (lab only; production uses "
                                   "v3 authPriv)", "warning"))
    if m.fencing.method == "pdu" and m.fencing.pdu is not None and not m.fencing.pdu.community_file:
        out.append(loc.problem(("fencing", "pdu"), "no community_file: fencing uses the SNMP community 'private'",
                               "warning"))
    return out
