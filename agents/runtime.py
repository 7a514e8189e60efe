"""`ccfo agent`: the host agent process. Wires the config to the AMI monitor, the service manager, the
config files, the actions, the control API and the reporter, runs them, and shuts them down in order.

    ccfo agent --config DIR --host NAME [--lab] [--listen HOST:PORT] [--state-dir DIR] [--ready-file F]

NAME is an IPC host (hosts) or a managed server (servers: the smaller profile without AMI or board,
agents/server_runtime.py).

Start-up refuses (exit 1) without an agent token, unless `--lab`: then the token comes from
`--token-file` (default STATE_DIR/agent-token), generated there (0600) when missing; and with a secret
file others can read (ccfo.config.secretfiles) or an unusable TLS certificate or key (agent.tls_cert_file
and tls_key_file, or --tls-cert/--tls-key). The API binds
`--listen`, else agent.listen, else the host:port of agent.url (in the lab: loopback addresses).
Services are polled every half heartbeat, so a crash reaches the controller within one heartbeat; a
service's liveness probe (agents/probes.py) runs in its own task and a hung service is pushed at once.
When configured, the SNMP responder (hosts.NAME.snmp: CCFO-MIB, notifications on every change) and the
FastAGI admission server (hosts.NAME.agi) run beside the API (`agents.snmp_agi`); a server that cannot
bind is a start-up error, missing SNMP keys only mean no SNMP.
SIGTERM/SIGINT stop the reporter, the poller, SNMP, FastAGI and the API server (in-flight requests
finish), cancel any action still running after a grace period, then close AMI. Managed services keep running: they are
in their own sessions and the agent never stops them on exit.
Under systemd (Type=notify) READY=1 follows the API's start, and WATCHDOG=1 comes every WatchdogSec/2 while
the agent's tasks live (ccfo.platform.sdnotify).
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.actions import ActionExecutor
from agents.api import create_app
from agents.auth import Token, TokenError, lab_token, load_token
from agents.files import from_host_config
from agents.idempotency import ResultStore
from agents.metrics import AgentMetrics
from agents.ports import AmiPort
from agents.probes import ProbeRunner
from agents.probes import spec_from_model as probe_spec
from agents.report import ReportBuilder
from agents.reporter import Reporter, members, report_urls
from agents.selffence import SelfFence
from agents.server import ApiServer, ServerError, agent_bind
from agents.server_runtime import ServerAgentRuntime, ServerStartupError
from agents.services import ServiceManager, ServiceSpec, ServiceState, make_backend, spec_from_model
from agents.snmp_agi import SnmpAgi, SnmpAgiError
from agents.terms import TermFileError, TermStore
from ccfo.config import secretfiles, tls
from ccfo.domain.site import SipTrunk
from ccfo.platform.auth import TokenFileError
from ccfo.platform.sdnotify import Notifier

if TYPE_CHECKING:
    from ccfo.config.loader import LoadedConfig
    from ccfo.config.models import AgentEndpointModel

log = logging.getLogger("ccfo.agent")
ACTION_GRACE_S = 10.0


class StartupError(Exception):
    """The agent cannot start (no token, no such host, cannot bind); the message says why."""


@dataclass(frozen=True, slots=True)
class Options:
    host: str
    lab: bool = False
    listen: str | None = None
    state_dir: Path | None = None
    token_file: Path | None = None  # lab mode only
    ready_file: Path | None = None
    lab_ami_control: str | None = None  # lab: the stand-in board driver also moves the lab AMI's driver
    tls_cert: str | None = None
    tls_key: str | None = None


def _read_secret(loaded: LoadedConfig, file: str | None, env: str | None) -> str | None:
    if file:
        with contextlib.suppress(OSError):
            return loaded.resolve(file).read_text().strip() or None
        return None
    return os.environ.get(env, "").strip() or None if env else None


def bind_address(opts: Options, agent: AgentEndpointModel) -> tuple[str, int]:
    return agent_bind(opts.listen, agent)


class AgentRuntime:
    """One agent for one host of a LoadedConfig. `start()`, then `stop()` (or `serve_until(event)`)."""

    def __init__(self, loaded: LoadedConfig, opts: Options, *, ami: AmiPort | None = None) -> None:
        site = loaded.site_model
        if opts.host not in site.hosts:
            servers = f"; servers: {', '.join(site.servers)}" if site.servers else ""
            raise StartupError(f"unknown host {opts.host!r} (hosts: {', '.join(site.hosts)}{servers})")
        self.loaded, self.opts = loaded, opts
        self.model = site.hosts[opts.host]
        try:  # every secret file private and the TLS files usable, before anything reads them
            secretfiles.check(loaded, secretfiles.agent_files(site, opts.host), [opts.tls_key])
            self.tls = tls.agent_server(loaded, opts.host, opts.tls_cert, opts.tls_key)
            push_transport = tls.controller_transport(loaded)  # trusts controller.ca_file, if set
        except TokenFileError as exc:
            raise StartupError(f"{exc}; refusing to start") from exc
        self.sd = Notifier.from_env()  # systemd's Type=notify and WatchdogSec
        self.state_dir = opts.state_dir or loaded.resolve("var") / f"agent-{opts.host}"
        self.token = self._token()
        self.heartbeat_s = site.controller.heartbeat_s
        self.services = self._services()
        self.files = from_host_config(loaded, opts.host)
        self.ami: Any = ami if ami is not None else self._ami()
        self.probes = self._probes()
        self.executor = ActionExecutor(
            opts.host, self.services, self.files, self.ami, hosts=list(site.hosts),
            routing_method=site.routing.method, astdb_family=site.routing.astdb_family,
            astdb_key=site.routing.astdb_key,
            line_test={"number": self.model.line_test.exten, "context": self.model.line_test.context,
                       "timeout_s": self.model.line_test.timeout_s},
            store=ResultStore(path=self.state_dir / "actions.json"), terms=self._terms())
        self.metrics = AgentMetrics(opts.host)
        self.report = ReportBuilder(opts.host, self.model.role.value, self.services, self.files, self.ami)
        self.fence: SelfFence | None = None
        if site.fencing.method == "self":  # stop CTI/IVR when no controller answers (agents/selffence.py)
            self.fence = SelfFence(self.services, loaded.site.host(opts.host).critical_services,
                                   site.fencing.self_fence_after_s)
            self.executor.fence = self.fence
        urls = report_urls(site.controller.url, site.controller.listen, opts.host, members(site))
        self.reporter = Reporter(self.report.build, urls, self.token, heartbeat_s=self.heartbeat_s,
                                 transport=push_transport, on_push=self.metrics.observe_push,
                                 on_leader=self.fence.contact if self.fence is not None else None)
        self.services.add_listener(self.reporter.poke)
        self.snmp_agi = SnmpAgi(loaded, opts.host, self.services, lambda: self.ami)
        self.services.add_listener(self.snmp_agi.changed)
        host, port = bind_address(opts, self.model.agent)
        self.metrics.bind(ami=lambda: self.ami, admission=lambda: self.snmp_agi.admission,
                          responder=lambda: self.snmp_agi.responder,
                          services=lambda: {n: s.state.value for n, s in self.services.services().items()})
        self.server = ApiServer(create_app(opts.host, [self.token], self.report.build, self.executor, self.metrics,
                                           self.readiness), host, port, **self.tls)
        self._tasks: list[asyncio.Task[None]] = []

    def readiness(self) -> tuple[bool, str]:
        """GET /readyz: ready while AMI is logged in, or when no AMI secret is configured at all (a host run
        without Asterisk on purpose); a configured secret that cannot be read is not ready."""
        if isinstance(self.ami, NoAmi):
            return (True, "not configured") if self.ami.deliberate else (False, "no secret")
        return (True, "connected") if self.ami.snapshot().connected else (False, "disconnected")

    def _terms(self) -> TermStore:
        try:
            return TermStore(self.state_dir / "term.json")
        except TermFileError as exc:
            raise StartupError(f"{exc}; refusing to start") from exc

    def _token(self) -> Token:
        try:
            return load_token(self.model.agent, self.loaded.resolve)
        except TokenError as exc:
            if not self.opts.lab:
                raise StartupError(f"{exc}; refusing to start without a token (use --lab for the lab)") from exc
            return lab_token(self.opts.token_file or self.state_dir / "agent-token")

    def _services(self) -> ServiceManager:
        model = self.model
        specs = {name: spec_from_model(name, svc) for name, svc in model.services.items()}
        driver = spec_from_model(model.board.driver_service, model.board.driver)
        if model.service_backend == "command" and self.opts.lab and driver.start is None:
            from agents import lab_services  # lab: a stand-in daemon plays the board driver
            extra = ["--control", self.opts.lab_ami_control] if self.opts.lab_ami_control else []
            run = self.state_dir / "run"
            driver = ServiceSpec(driver.name, **{verb: (*lab_services.command(verb, driver.name, run), *extra)
                                                 for verb in ("start", "stop", "status")})
        backend = make_backend(model.service_backend, cwd=str(self.loaded.directory))
        return ServiceManager(backend, specs, driver)

    def _probes(self) -> ProbeRunner:
        """Each service's liveness probe, in its own task; verdicts flow into the service manager."""
        specs = {n: probe_spec(s.probe) for n, s in self.model.services.items() if s.probe is not None}
        runner = ProbeRunner(specs, is_active=lambda n: self.services.backend_state(n) is ServiceState.ACTIVE,
                             on_change=self.services.set_probe, ami=self.ami, cwd=str(self.loaded.directory))
        for name, verdict in runner.verdicts().items():
            self.services.set_probe(name, verdict)
        self.services.add_reset_listener(runner.reset)
        return runner

    def _ami(self) -> Any:
        ami = self.model.ami
        secret = _read_secret(self.loaded, ami.secret_file, ami.secret_env)
        if secret is None:
            if not (ami.secret_file or ami.secret_env):
                log.warning("no AMI secret configured (ami.secret_file / ami.secret_env): running without AMI")
                return NoAmi("no AMI secret configured (ami.secret_file / ami.secret_env)", deliberate=True)
            log.error("the AMI secret (ami.secret_file / ami.secret_env) cannot be read or is empty: running without "
                      "AMI")
            return NoAmi("the configured AMI secret cannot be read or is empty")
        from agents.ami import AmiMonitor
        board = self.model.board
        return AmiMonitor(ami.host, ami.port, ami.username, secret, board_channel_regex=board.channel_pattern,
                          span_channels={s.span: s.channels for s in board.spans},
                          trunks=[SipTrunk(t.name, t.channels, t.driver) for t in self.model.trunks],
                          reconcile_interval_s=ami.reconcile_interval_s, ping_interval_s=ami.ping_interval_s,
                          ping_timeout_s=ami.ping_timeout_s, on_change=self._ami_changed)

    def _ami_changed(self, _snap: object = None) -> None:
        self.reporter.poke()
        self.snmp_agi.changed()

    async def start(self) -> None:
        if self.model.agent.url.startswith("https") and not self.tls:
            log.warning("agent.url is https but no certificate (agent.tls_cert_file, --tls-cert): serving plain HTTP")
        await self.services.check_all()
        try:  # before AMI: creating the SNMP engine holds the loop for a moment, which AMI pings would feel
            await self.snmp_agi.start()
        except SnmpAgiError as exc:
            raise StartupError(str(exc)) from exc
        await self.ami.start()
        await self.probes.start()
        try:
            address = await self.server.start()
        except ServerError as exc:
            await self.probes.stop()
            await self.snmp_agi.stop()
            await self.ami.stop()
            raise StartupError(str(exc)) from exc
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.services.poll_forever(self.heartbeat_s / 2), name="service-poll"),
                       loop.create_task(self.reporter.run(), name="reporter")]
        if self.fence is not None:
            self._tasks.append(loop.create_task(self.fence.run(), name="self-fence"))
        extra = "".join(f", {k.upper()} {v}" for k, v in self.snmp_agi.addresses().items())
        log.info("agent %s (%s) up: API %s%s, reporting to %s every %g s", self.opts.host, self.model.role.value,
                 self.server.url, extra, self.reporter.url, self.heartbeat_s)
        if self.opts.ready_file:
            self._write_ready(address)
        self.sd.ready(f"serving {self.server.url}, reporting to {self.reporter.url}")
        self._tasks.append(loop.create_task(self.sd.watchdog_loop(lambda: not any(t.done() for t in self._tasks)),
                                            name="watchdog"))

    def _write_ready(self, address: tuple[str, int]) -> None:
        path = self.opts.ready_file
        assert path is not None
        ready = {"host": self.opts.host, "pid": os.getpid(), "api": self.server.url, "address": list(address),
                 "report_url": self.reporter.url, **self.snmp_agi.addresses()}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(ready) + "\n")
        tmp.replace(path)

    async def stop(self) -> None:
        self.sd.stopping()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.probes.stop()
        await self.server.stop()
        await self.snmp_agi.stop()
        await self.executor.aclose(grace_s=ACTION_GRACE_S)
        await self.ami.stop()
        log.info("agent %s stopped", self.opts.host)

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


class NoAmi:
    """The AMI side when none can be set up: always disconnected, with the reason as its error."""

    def __init__(self, reason: str, *, deliberate: bool = False) -> None:
        from types import SimpleNamespace
        self.deliberate = deliberate  # no secret configured at all, as opposed to one that cannot be read
        calls = SimpleNamespace(ivr=0, agent=0, fax=0)
        self._snap = SimpleNamespace(connected=False, last_ok=None, error=reason, driver="unknown", spans=(),
                                     calls=calls, channels_available=0, channels_free=0, trunks=(),
                                     trunks_known=False)

    def snapshot(self) -> Any:
        return self._snap

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def db_put(self, family: str, key: str, value: str) -> None:
        raise ConnectionError(self._snap.error)

    async def line_test(self, number: str, context: str, timeout_s: float) -> Any:
        raise ConnectionError(self._snap.error)


async def _main(loaded: LoadedConfig, opts: Options) -> None:
    server = opts.host in loaded.site_model.servers  # the smaller profile: no AMI, no board
    runtime = ServerAgentRuntime(loaded, opts) if server else AgentRuntime(loaded, opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.serve_until(stop)


def cmd_agent(args: argparse.Namespace) -> int:
    """The `ccfo agent` handler (the parser is in controller.cli; this module is imported lazily)."""
    from ccfo.config.loader import load_config
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loaded = load_config(args.config)
    opts = Options(args.host, args.lab, args.listen, Path(args.state_dir) if args.state_dir else None,
                   Path(args.token_file) if args.token_file else None,
                   Path(args.ready_file) if args.ready_file else None, args.lab_ami_control,
                   args.tls_cert, args.tls_key)
    try:
        asyncio.run(_main(loaded, opts))
    except (StartupError, ServerStartupError) as exc:
        print(f"ccfo agent: {exc}", file=sys.stderr)
        return 1
    return 0
