"""`ccfo controller`: assemble the controller from its config and run it until SIGTERM/SIGINT.

Owns the process's tasks: the engine loop, the safety-net poller (fetches a report from any agent whose
pushes have stopped), the database-site probe, the uvicorn server, and the SNMP side when configured
(`controller.adapters.snmp_glue`: trap receiver, SNMP poll of the agents, notifications to the NMS).
Refuses to start with a clear message (exit 2) when a secret file is missing or readable by others, or a
TLS certificate, key or CA file cannot be used (ccfo.config.secretfiles, ccfo.config.tls). Under systemd
(Type=notify) READY=1 follows the engine's start and the API's, and WATCHDOG=1 comes every WatchdogSec/2
while the API server and the pollers live (ccfo.platform.sdnotify).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI

from ccfo.clients.agent_http import MultiTokenClient, agent_tokens, parse_report
from ccfo.clients.kamailio import KamailioRouter, KamailioRpc
from ccfo.clients.pdu import NoFencing, SnmpPdu
from ccfo.config import secretfiles, tls
from ccfo.config.loader import LoadedConfig, load_config
from ccfo.config.yamlpos import ConfigError, Problem
from ccfo.platform.auth import TokenFileError, TokenStore, read_secret
from ccfo.platform.clock import SYSTEM_CLOCK
from ccfo.platform.sdnotify import Notifier
from controller.adapters.snmp_glue import ControllerSnmp
from controller.api.app import create_app
from controller.api.cluster import cluster_router
from controller.api.cors import allow_members
from controller.api.deps import need
from controller.api.forward import Forwarding, ForwardSettings
from controller.checklists.drills_port import PackageCalls, PackageDrills
from controller.checklists.loader import load_checklists
from controller.checklists.model import Checklist
from controller.checklists.ports import EngineSite, drill_names
from controller.checklists.runner import ChecklistRunner
from controller.cluster.election import Leadership, Role
from controller.cluster.journalsync import JournalSync
from controller.cluster.members import ClusterView
from controller.cluster.node import ClusterConfigError, ClusterNode
from controller.cluster.statesync import StateSync, SyncedLeadership
from controller.drill_host import EngineDrillHost
from controller.engine import Engine
from controller.events import EventBus
from controller.executor import Executor
from controller.fencing import SelfFencing
from controller.journal import Journal
from controller.store import Store
from drills.manager import DrillManager

log = logging.getLogger("ccfo.controller")


class LogNotifier:
    """Operators' notifications: the log and the event stream (SNMP forwarding hooks in here too)."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.forwarders: list[Any] = []

    async def notify(self, event: str, message: str, data: Any) -> None:
        log.warning("NOTIFY %s: %s", event, message)
        await self.events.publish("notify", {"event": event, "message": message, "data": data})
        for fwd in self.forwarders:
            try:
                await fwd(event, message, data)
            except Exception:
                log.exception("notification forwarder failed")


async def probe_db(cfg: LoadedConfig, engine: Engine, interval: float, failures_needed: int = 2) -> None:
    """TCP-connect each database site; a site is down after `failures_needed` failed probes in a row."""
    misses: dict[str, int] = {s.id: 0 for s in cfg.site.db_sites}
    while True:
        for site in cfg.site.db_sites:
            try:
                async with asyncio.timeout(min(2.0, interval)):
                    _, writer = await asyncio.open_connection(site.host, site.port)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
                misses[site.id] = 0
            except (OSError, TimeoutError):
                misses[site.id] += 1
        engine.set_db_down(frozenset(s for s, n in misses.items() if n >= failures_needed))
        await asyncio.sleep(interval)


async def poll_agents(engine: Engine, agents: MultiTokenClient, heartbeat_s: float) -> None:
    """Safety net: fetch a report from agents whose pushes are late (a push path can fail alone)."""
    while True:
        now = time.time()
        for host in engine.site.host_ids:
            last = engine.reports.get(host)
            if last is None or now - last.received_at > 1.5 * heartbeat_s:
                with contextlib.suppress(Exception):
                    engine.ingest(await agents.report(host))
        await asyncio.sleep(heartbeat_s)


def checklist_runner(engine: Engine) -> ChecklistRunner:
    """The checklist runner of a controller process: its journal, its engine, checklists from
    CONFIG/checklists, drills and test calls through the drills package."""
    config_dir = Path(engine.cfg.directory)

    def library() -> tuple[dict[str, Checklist], list[Problem]]:
        return load_checklists(config_dir / "checklists", engine.site, drill_names(config_dir))

    return ChecklistRunner(engine.journal, EngineSite(engine), PackageDrills(engine), PackageCalls(engine), library,
                           clock=engine.clock.now, events=engine.events)


def build_app(engine: Engine, tokens: TokenStore, clock: Any = time.time,
              cluster: ClusterView | None = None, forward: ForwardSettings | None = None) -> FastAPI:
    """The controller's API with its services: the drill manager and the checklist runner of this engine,
    and, for a member of a controller cluster, the cluster routes (/api/v1/cluster, /leader), the forwarding
    of changes sent to a follower (controller.api.forward) and, outermost so that a forwarded answer gets
    them too, CORS for the members' origins (controller.api.cors). Their background work (schedules, the
    journal replay) starts at the first request or with `start_services`."""
    app = create_app(engine, tokens, drills=DrillManager(EngineDrillHost(engine)), checklists=checklist_runner(engine),
                     parse_report=parse_report, clock=clock)
    if cluster is not None:
        app.include_router(cluster_router(cluster, need))
        app.add_middleware(Forwarding, view=cluster, tokens=tokens, clock=clock, settings=forward)
        allow_members(app, [m.url for m in cluster.members])  # the dashboard goes on with another member
        app.openapi_schema = None  # the document is built again with the cluster routes
    return app


async def start_services(app: FastAPI) -> None:
    """Start what the API's services run in the background: drill schedules, the checklists' replay."""
    await app.state.drills.ensure_started()
    app.state.checklists.start_soon()


async def stop_services(app: FastAPI) -> None:
    """Cancel drill runs and schedules; stop the checklist runner's automatic steps."""
    await app.state.drills.stop()
    await app.state.checklists.close()


def _last_report(engine: Engine, host: str) -> float | None:
    report = engine.reports.get(host)
    return report.received_at if report is not None else None


def _member_listen(url: str) -> str:
    u = urlsplit(url)
    return f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"


def _forward_settings(cfg: LoadedConfig) -> ForwardSettings:
    """A follower reaches the leader as agents reach a controller: trusting controller.ca_file when set."""
    ca = cfg.site_model.controller.ca_file
    return ForwardSettings(verify=tls.client_context(cfg.resolve(ca)) if ca else True)


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def _router(cfg: LoadedConfig) -> KamailioRouter | None:
    """routing.method kamailio: the controller sets the SIP front itself (docs/sip-front.md says why)."""
    routing = cfg.site_model.routing
    if routing.method != "kamailio" or routing.kamailio is None:
        return None
    k = routing.kamailio
    return KamailioRouter(KamailioRpc(cfg.resolve(k.rpc_socket), k.rpc_timeout_s), cfg.resolve(k.list_file),
                          k.destinations, k.set_id)


def _cluster(cfg: LoadedConfig, member: str | None) -> ClusterNode | None:
    """This member of the controller cluster (site.yaml `cluster:`), or None for a controller alone."""
    if cfg.site_model.cluster is None:
        if member:
            raise ClusterConfigError(f"--member {member}: site.yaml has no cluster: section (single-controller mode)")
        return None
    if not member:
        names = ", ".join(m.name for m in cfg.site_model.cluster.members)
        raise ClusterConfigError(f"site.yaml has a cluster: section: pass --member NAME (one of {names})")
    return ClusterNode.from_config(cfg, member)


async def serve(cfg: LoadedConfig, ready_file: str | None = None, member: str | None = None) -> int:
    ctl = cfg.site_model.controller
    if not ctl.tokens_file:
        raise TokenFileError("controller.tokens_file is not set: the API would have no users")
    secretfiles.check(cfg, secretfiles.controller_files(cfg.site_model))  # none readable by others
    server_tls = tls.controller_server(cfg)  # {} for plain HTTP
    scheme = "https" if server_tls else "http"
    tokens = TokenStore.load(cfg.resolve(ctl.tokens_file))
    agents = MultiTokenClient(cfg, agent_tokens(cfg))
    node = _cluster(cfg, member)
    journal_path = cfg.resolve(ctl.journal)
    state_name = "state.sqlite"
    if node is not None:  # each member keeps its own journal and plan store (docs/ha.md), so members may share a disk
        journal_path = journal_path.with_name(f"{journal_path.stem}-{node.me.name}{journal_path.suffix}")
        state_name = f"state-{node.me.name}.sqlite"
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    journal, store = Journal(journal_path), Store(journal_path.with_name(state_name))
    events = EventBus()
    notifier = LogNotifier(events)
    fencing = cfg.site_model.fencing
    fencer: Any = NoFencing()
    seen: dict[str, Engine] = {}  # the engine, once built: self-fencing reads its last reports
    if fencing.method == "pdu" and fencing.pdu is not None:
        community = read_secret(cfg.resolve(fencing.pdu.community_file)) if fencing.pdu.community_file else "private"
        fencer = SnmpPdu(fencing.pdu.host, fencing.pdu.port, community, fencing.pdu.outlets)
    elif fencing.method == "self":
        fencer = SelfFencing(fencing.self_fence_after_s, fencing.self_fence_margin_s,
                             lambda host: _last_report(seen["engine"], host), SYSTEM_CLOCK)
    executor = Executor(agents, fencer, notifier, journal, store, host_ids=cfg.site.host_ids, router=_router(cfg))
    engine = Engine(cfg, store, journal, executor, events)
    seen["engine"] = engine
    sync: StateSync | None = None
    jsync: JournalSync | None = None
    if node is not None:  # acts only as the leader, once it has taken the site state over from etcd
        sync = StateSync(node.election, node.client, cfg.site.name, store, engine.adopt, engine.mirror,
                         mirror_s=ctl.heartbeat_s)
        jsync = JournalSync(node.election, node.client, cfg.site.name, journal)  # every member: the whole journal
        leadership = SyncedLeadership(node.election, sync)
        engine.set_leadership(leadership)
        node.view.acting = leadership.is_acting  # GET /leader: 200 once this leader acts (state taken over)
        node.election.on_change = lambda lead: _leadership_changed(engine, sync, lead)
    snmp = ControllerSnmp(cfg, engine, agents, notifier)
    await snmp.start()
    app = build_app(engine, tokens, cluster=node.view if node else None, forward=_forward_settings(cfg))
    # a cluster member serves at its own URL in cluster.members (one site.yaml for every member)
    host, port = _listen(_member_listen(node.me.url) if node else ctl.listen)
    # timeout_graceful_shutdown: a dashboard's event stream never ends by itself; without a bound, uvicorn
    # waits for it and a stop (systemd, `ccfo lab down`) ends in SIGKILL
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=2,
                                           **server_tls))
    await engine.start()
    if node is not None and sync is not None and jsync is not None:
        sync.start()
        jsync.start()
        await node.start()  # campaigns in the background; an unreachable etcd is logged, not fatal
    await start_services(app)
    tasks = [asyncio.create_task(probe_db(cfg, engine, ctl.poll_interval_s), name="db-probe"),
             asyncio.create_task(poll_agents(engine, agents, ctl.heartbeat_s), name="agent-poll")]
    serving = asyncio.create_task(server.serve(), name="api")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        raise OSError(f"cannot serve the API on {ctl.listen}")
    log.info("controller for site %s serving on %s://%s:%d (mode %s)", cfg.site.name, scheme, host, port,
             engine.state.mode.value)
    if ready_file:
        Path(ready_file).write_text(json.dumps({"pid": os.getpid(), "api": f"{scheme}://{host}:{port}"}))
    sd = Notifier.from_env()  # systemd Type=notify: ready now (engine started, API serving); WatchdogSec pings
    sd.ready(f"serving {scheme}://{host}:{port}, mode {engine.state.mode.value}")
    tasks.append(asyncio.create_task(sd.watchdog_loop(lambda: not serving.done() and not any(t.done() for t in tasks)),
                                     name="watchdog"))
    await stop.wait()
    t_stop = time.monotonic()
    log.info("stopping: the API first (open requests get up to 2 s)")
    sd.stopping()
    server.should_exit = True
    await serving
    for t in tasks:
        t.cancel()
    await stop_services(app)
    await snmp.stop()
    await engine.stop()
    if node is not None and sync is not None and jsync is not None:
        await sync.aclose()
        await jsync.aclose()
        await node.aclose()  # resigns: revokes the lease, so a follower takes over at once
    await agents.aclose()
    await fencer.aclose()
    journal.close()
    store.close()
    log.info("stopped in %.2f s", time.monotonic() - t_stop)
    return 0


def _leadership_changed(engine: Engine, sync: StateSync, lead: Leadership) -> None:
    """Log and journal every change of leadership seen by this member; a new leader takes the site state
    over from etcd before it acts; the engine looks at once."""
    log.warning("leadership: %s is %s; leader %s, term %s", lead.member, lead.role.value, lead.leader, lead.term)
    engine.wake()
    if lead.role is Role.LEADER and lead.term is not None:
        sync.elected(lead.term)
        task = asyncio.get_running_loop().create_task(engine.record(
            "leader_elected", actor=lead.member, reason=f"{lead.member} leads with term {lead.term}",
            data={"term": lead.term}))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def cmd_controller(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    try:
        cfg = load_config(args.config)
        return asyncio.run(serve(cfg, args.ready_file, getattr(args, "member", None)))
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 2
    except (TokenFileError, ClusterConfigError) as exc:
        print(f"ccfo controller: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ccfo controller: {exc}", file=sys.stderr)
        return 1
