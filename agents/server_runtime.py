"""`ccfo agent --host NAME` for a managed server (site.yaml `servers`): the agent's smaller profile.

The same agent, without AMI, board, SNMP or FastAGI: the service manager over the server's services (no
board driver), its whitelisted database config files (the hosts' repoint mechanism), its scheduled jobs
(agents/jobs.py), its whitelisted switch files (agents/files/switch.py), the same actions (start, stop,
restart, repoint_db, job_enable, job_disable, set_file; the board and AMI actions are refused), the same
control API (plus GET /v1/jobs) and the same reporter pushing a report every heartbeat and on every
change. Start-up refuses what the IPC agent refuses (no token, a secret
file others can read, an unusable certificate). SIGTERM stops the reporter, the poller and the API; the
managed services keep running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.actions import ActionExecutor
from agents.api import create_app
from agents.auth import Token, TokenError, lab_token, load_token
from agents.files import from_host_config
from agents.files.switch import switch_files_from_config
from agents.idempotency import ResultStore
from agents.jobs import jobs_from_model
from agents.metrics import AgentMetrics
from agents.report import ReportBuilder
from agents.reporter import Reporter, members, report_urls
from agents.server import ApiServer, ServerError, agent_bind
from agents.services import ServiceManager, make_backend, spec_from_model
from agents.terms import TermFileError, TermStore
from ccfo.config import secretfiles, tls
from ccfo.platform.auth import TokenFileError
from ccfo.platform.sdnotify import Notifier

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agents.runtime import Options
    from ccfo.config.loader import LoadedConfig

log = logging.getLogger("ccfo.agent")
ACTION_GRACE_S = 10.0


class ServerStartupError(Exception):
    """The server agent cannot start; the message says why."""


class ServerAgentRuntime:
    """One agent for one managed server of a LoadedConfig. `start()`, then `stop()`."""

    def __init__(self, loaded: LoadedConfig, opts: Options, *, systemctl: Sequence[str] = ("systemctl",)) -> None:
        site = loaded.site_model
        if opts.host not in site.servers:
            raise ServerStartupError(f"unknown server {opts.host!r} (servers: {', '.join(site.servers) or 'none'})")
        self.loaded, self.opts = loaded, opts
        self.model = site.servers[opts.host]
        try:
            secretfiles.check(loaded, secretfiles.agent_files(site, opts.host), [opts.tls_key])
            self.tls = tls.agent_server(loaded, opts.host, opts.tls_cert, opts.tls_key)
            push_transport = tls.controller_transport(loaded)
        except TokenFileError as exc:
            raise ServerStartupError(f"{exc}; refusing to start") from exc
        self.sd = Notifier.from_env()
        self.state_dir = opts.state_dir or loaded.resolve("var") / f"agent-{opts.host}"
        self.token = self._token()
        self.heartbeat_s = site.controller.heartbeat_s
        specs = {name: spec_from_model(name, svc) for name, svc in self.model.services.items()}
        self.services = ServiceManager(make_backend(self.model.service_backend, cwd=str(loaded.directory)), specs,
                                       None)
        self.files = from_host_config(loaded, opts.host)
        self.jobs = jobs_from_model(self.model.jobs, Path(loaded.resolve(self.model.backup_dir)), systemctl=systemctl)
        try:
            terms = TermStore(self.state_dir / "term.json")
        except TermFileError as exc:
            raise ServerStartupError(f"{exc}; refusing to start") from exc
        self.executor = ActionExecutor(opts.host, self.services, self.files, None, hosts=list(site.hosts),
                                       routing_method="none", store=ResultStore(path=self.state_dir / "actions.json"),
                                       terms=terms, jobs=self.jobs, board=False,
                                       switch_files=switch_files_from_config(loaded, opts.host))
        self.metrics = AgentMetrics(opts.host)
        self.report = ReportBuilder(opts.host, self.model.role.value, self.services, self.files, None,
                                    jobs=self.jobs.list)
        urls = report_urls(site.controller.url, site.controller.listen, opts.host, members(site))
        self.reporter = Reporter(self.report.build, urls, self.token, heartbeat_s=self.heartbeat_s,
                                 transport=push_transport, on_push=self.metrics.observe_push)
        self.services.add_listener(self.reporter.poke)
        self.metrics.bind(services=lambda: {n: s.state.value for n, s in self.services.services().items()})
        host, port = agent_bind(opts.listen, self.model.agent)
        app = create_app(opts.host, [self.token], self.report.build, self.executor, self.metrics,
                         lambda: (True, "not configured"), jobs=self._jobs)
        self.server = ApiServer(app, host, port, **self.tls)
        self._tasks: list[asyncio.Task[None]] = []

    async def _jobs(self) -> list[dict[str, Any]]:
        return [j.to_dict() for j in await self.jobs.list()]

    def _token(self) -> Token:
        try:
            return load_token(self.model.agent, self.loaded.resolve)
        except TokenError as exc:
            if not self.opts.lab:
                raise ServerStartupError(f"{exc}; refusing to start without a token (use --lab for the lab)") from exc
            return lab_token(self.opts.token_file or self.state_dir / "agent-token")

    async def start(self) -> None:
        await self.services.check_all()
        try:
            address = await self.server.start()
        except ServerError as exc:
            raise ServerStartupError(str(exc)) from exc
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.services.poll_forever(self.heartbeat_s / 2), name="service-poll"),
                       loop.create_task(self.reporter.run(), name="reporter")]
        log.info("server agent %s (%s, %s in %s) up: API %s, reporting to %s every %g s", self.opts.host,
                 self.model.kind.value, self.model.role.value, self.model.datacenter, self.server.url,
                 self.reporter.url, self.heartbeat_s)
        if self.opts.ready_file:
            ready = {"host": self.opts.host, "profile": "server", "pid": os.getpid(), "api": self.server.url,
                     "address": list(address), "report_url": self.reporter.url}
            tmp = self.opts.ready_file.with_name(self.opts.ready_file.name + ".tmp")
            tmp.write_text(json.dumps(ready) + "\n")
            tmp.replace(self.opts.ready_file)
        self.sd.ready(f"serving {self.server.url}, reporting to {self.reporter.url}")
        self._tasks.append(loop.create_task(self.sd.watchdog_loop(lambda: not any(t.done() for t in self._tasks)),
                                            name="watchdog"))

    async def stop(self) -> None:
        self.sd.stopping()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.server.stop()
        await self.executor.aclose(grace_s=ACTION_GRACE_S)
        log.info("server agent %s stopped", self.opts.host)

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
