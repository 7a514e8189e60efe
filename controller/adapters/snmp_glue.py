"""The controller's SNMP edge wired to the engine: trap receiver, safety-net poller, NMS notifications.

* Every notification received on `controller.snmp_trap_listen` wakes the engine and is journalled (kind
  `snmp_notification`); one from an agent (it carries the host's state) also fetches that agent's report
  at once, so the health model moves without waiting for the next push.
* Every `controller.snmp_poll_interval_s` each agent's CCFO-MIB is read and compared with its last HTTP
  report. A disagreement seen on two polls in a row is logged; nothing acts on it (the reports are the
  engine's input, SNMP only checks them).
* With `controller.snmp_nms_targets`, the controller's own events go to the site NMS: decisions and plan
  starts from the journal events, finished plans from the plan events, duty changes from the state
  events (EventBus hook), failed plans from the executor's notifications (LogNotifier forwarder).

Secrets are 0600 files read with `ccfo.platform.auth.read_secret`; a missing one refuses the start
(TokenFileError, exit 2) like every other controller secret. Everything here is an observer: failures are
logged, never raised into the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from ccfo.config.loader import LoadedConfig
from ccfo.domain.health import HostHealth
from ccfo.platform.auth import read_secret
from ccfo.snmp.layout import Notification, span_alarm_name
from ccfo.snmp.security import NotifyTarget, Secret, V3User
from ccfo.snmp.view import HostView
from ccfo.snmp.wiring import agent_engine_id, host_credentials, notify_target
from controller.snmp import AgentEndpoint, ControllerNotifier, ReceivedNotification, SnmpPoller, TrapReceiver

log = logging.getLogger("ccfo.snmp")
JOURNAL_KIND = "snmp_notification"
FETCH_TIMEOUT_S = 5.0
_UPDOWN = {True: "up", False: "down", None: "unknown"}


def differences(view: HostView, health: HostHealth | None) -> list[str]:
    """Where an agent's MIB and its HTTP report disagree (empty: they agree, or no report to compare)."""
    if health is None:
        return []
    out: list[str] = []

    def differ(what: str, snmp: Any, http: Any) -> None:
        if snmp != http:
            out.append(f"{what}: snmp {snmp}, report {http}")

    differ("AMI link", _UPDOWN[view.ami_connected], _UPDOWN[health.ami_connected])
    differ("board driver", _UPDOWN[view.driver_up], health.driver.value)
    if view.ami_connected and health.ami_connected:
        mib = {s.span: (span_alarm_name(s.alarm), _UPDOWN[s.dchannel_up], s.channels) for s in view.spans}
        rep = {s.span: (span_alarm_name(s.alarm), _UPDOWN[s.dchannel_up], s.channels) for s in health.spans}
        for n in sorted(set(mib) | set(rep)):
            differ(f"span {n}", mib.get(n), rep.get(n))
        mib_trunks = {t.name: (_UPDOWN[t.up], t.channels) for t in view.trunks}
        rep_trunks = {t.name: (t.state, t.channels) for t in health.trunks}
        for name in sorted(set(mib_trunks) | set(rep_trunks)):
            differ(f"trunk {name}", mib_trunks.get(name), rep_trunks.get(name))
        differ("calls (ivr, agent, fax)", (view.ivr_calls, view.agent_calls, view.fax_calls),
               (health.ivr_calls, health.agent_calls, health.fax_calls))
    mine = {s.name: s.state for s in view.services}
    for name in sorted(set(mine) | set(health.services)):
        theirs = health.services.get(name)
        differ(f"service {name}", mine.get(name), theirs.value if theirs is not None else None)
    return out


class ControllerSnmp:
    """Owns the receiver, the poller, the NMS notifier and their tasks for one controller process."""

    def __init__(self, cfg: LoadedConfig, engine: Any, agents: Any, notifier: Any) -> None:
        self.cfg, self.engine, self.agents, self.notifier = cfg, engine, agents, notifier
        ctl = cfg.site_model.controller
        self.enterprise = cfg.site_model.site.snmp_enterprise
        self.poll_interval_s = ctl.snmp_poll_interval_s
        self.receiver: TrapReceiver | None = None
        self.poller: SnmpPoller | None = None
        self.nms: ControllerNotifier | None = None
        self.endpoints: dict[str, AgentEndpoint] = {}
        self.users: list[V3User] = []
        self.communities: list[Secret] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetching: set[str] = set()
        self._again: set[str] = set()
        self._seen: dict[str, tuple[str, ...]] = {}  # last poll's disagreements per host
        self._logged: dict[str, tuple[str, ...]] = {}
        self._failing: dict[str, str] = {}
        self._duties: dict[str, str] = {}
        if ctl.snmp_trap_listen or self.poll_interval_s > 0:
            self._read_credentials()

    def _read(self, path: str) -> Secret:
        return Secret(read_secret(self.cfg.resolve(path)))

    def _read_credentials(self) -> None:
        for name, host in self.cfg.site_model.hosts.items():
            user, community = host_credentials(host.snmp, self._read)
            if user is not None:
                same = next((u for u in self.users if u.name == user.name), None)
                if same is None:
                    self.users.append(user)
                elif same != user:
                    log.error("snmp: hosts.%s.snmp: user %s has other keys than another host's; the receiver "
                              "keeps the first pair (this host's notifications will not authenticate)", name,
                              user.name)
            if community is not None and community not in self.communities:
                self.communities.append(community)
            if user is not None or community is not None:
                self.endpoints[name] = AgentEndpoint(host.snmp.address or host.address, host.snmp.port,
                                                     user=user, community=None if user else community)

    def nms_targets(self) -> list[NotifyTarget]:
        return [notify_target(f"nms{i}", t, self._read)
                for i, t in enumerate(self.cfg.site_model.controller.snmp_nms_targets)]

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start what is configured; OSError (with the address) when the receiver cannot bind."""
        ctl = self.cfg.site_model.controller
        targets = self.nms_targets()
        try:
            if ctl.snmp_trap_listen:
                await self._start_receiver(ctl.snmp_trap_listen)
            if self.poll_interval_s > 0 and self.endpoints:
                self.poller = SnmpPoller(self.enterprise)
                self._tasks.append(asyncio.create_task(self._poll_loop(), name="snmp-poll"))
                log.info("snmp: polling %s every %g s (safety net; disagreements are logged, not acted on)",
                         ", ".join(f"{h} at {e.label}" for h, e in self.endpoints.items()), self.poll_interval_s)
            if targets:
                self.nms = ControllerNotifier(targets, enterprise=self.enterprise)
                await self.nms.start()
                self._duties = {h: s.duty.value for h, s in self.engine.state.hosts.items()}
                self.notifier.forwarders.append(self.forward)
                self.engine.events.hook(self.on_event)
                log.info("snmp: controller events go to %s", ", ".join(t.describe() for t in targets))
        except BaseException:
            await self.stop()
            raise

    async def _start_receiver(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        hosts = [h for h in self.cfg.site_model.hosts if h in self.endpoints]
        receiver = TrapReceiver(self.on_notification, host=host.strip("[]"), port=int(port),
                                communities=self.communities, users=self.users, enterprise=self.enterprise,
                                trap_engine_ids=[agent_engine_id(self.enterprise, h) for h in hosts])
        try:
            await receiver.start()
        except OSError as exc:
            await receiver.close()
            raise OSError(exc.errno, f"cannot receive SNMP notifications on {listen} "
                                     f"(controller.snmp_trap_listen): {exc.strerror or exc}") from exc
        self.receiver = receiver

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ValueError):
            self.notifier.forwarders.remove(self.forward)
        for part in (self.receiver, self.poller, self.nms):
            if part is not None:
                await part.close()
        self.receiver = self.poller = self.nms = None

    # --- notifications received ------------------------------------------------------------------

    async def on_notification(self, record: ReceivedNotification) -> None:
        """Wake the engine, journal the notification, and fetch the agent's report if it is an agent's."""
        self.engine.wake()
        n = record.notification
        host = n.host if n.host in self.cfg.site_model.hosts else None
        detail = " ".join(f"{k}={v}" for k, v in n.fields.items())
        where = (f" span {n.span}" if n.span is not None else f" service {n.service}" if n.service
                 else f" trunk {n.trunk}" if n.trunk else "")
        data = {"notification": n.name, "source": f"{record.source[0]}:{record.source[1]}",
                "version": record.version, "claimed_host": n.host, "span": n.span, "service": n.service,
                "trunk": n.trunk, "fields": dict(n.fields)}
        try:
            entry = await asyncio.to_thread(self.engine.journal.append, JOURNAL_KIND, ts=record.received_at,
                                            host=host, reason=f"{n.name}{where} {detail}".strip(), data=data)
            await self.engine.events.publish("journal", {"id": entry.id, "kind": entry.kind, "ts": entry.ts,
                                                         "host": entry.host, "plan_id": None,
                                                         "reason": entry.reason, "status": None})
        except Exception:
            log.exception("snmp: cannot journal %s from %s", n.name, record.source[0])
        if host is not None and n.kind is not None and n.kind < Notification.DECISION:
            await self._fetch(host)

    async def _fetch(self, host: str) -> None:
        """One report fetch per host at a time; notifications arriving meanwhile cause one more."""
        if host in self._fetching:
            self._again.add(host)
            return
        self._fetching.add(host)
        try:
            while True:
                self._again.discard(host)
                try:
                    async with asyncio.timeout(FETCH_TIMEOUT_S):
                        self.engine.ingest(await self.agents.report(host))
                except Exception as exc:
                    log.info("snmp: report fetch from %s after a notification failed: %s", host, exc)
                if host not in self._again:
                    return
        finally:
            self._fetching.discard(host)

    # --- safety-net poll -------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        # Sleep first: the poller's engine (created at the first poll) holds the loop for a moment, which
        # must not fall into the start-up; the agents' first reports are not there yet anyway.
        while True:
            await asyncio.sleep(self.poll_interval_s)
            for host, endpoint in self.endpoints.items():
                await self.poll_once(host, endpoint)

    async def poll_once(self, host: str, endpoint: AgentEndpoint) -> list[str] | None:
        """Poll one agent and compare; returns the disagreements, None when the poll failed."""
        assert self.poller is not None
        try:
            async with asyncio.timeout(10 * (endpoint.timeout_s * (endpoint.retries + 1)) + 1.0):
                polled = await self.poller.poll(endpoint)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            if self._failing.get(host) != why:
                log.warning("snmp: poll of %s (%s) failed: %s", host, endpoint.label, why)
                self._failing[host] = why
            return None
        if self._failing.pop(host, None) is not None:
            log.info("snmp: poll of %s (%s) works again", host, endpoint.label)
        found = tuple(differences(polled.view, self.engine.reports.get(host)))
        previous, self._seen[host] = self._seen.get(host), found
        if found and found == previous and self._logged.get(host) != found:
            log.warning("snmp: %s's MIB disagrees with its HTTP report (not acted on): %s", host, "; ".join(found))
            self._logged[host] = found
        elif not found and self._logged.pop(host, None):
            log.info("snmp: %s's MIB agrees with its HTTP report again", host)
        return list(found)

    # --- the controller's own events to the NMS --------------------------------------------------

    async def forward(self, event: str, message: str, data: Any) -> None:
        """LogNotifier forwarder: the executor's notifications the event hook does not see."""
        if self.nms is None or event != "plan_failed":
            return
        plan_id = str((data or {}).get("plan_id", ""))
        host, action = await self._plan_facts(plan_id)
        self.nms.plan_failed(plan_id, host, action, message)

    async def on_event(self, event: Any) -> None:
        """EventBus hook: decisions, plan starts, finished plans and duty changes."""
        if self.nms is None:
            return
        data = event.data if isinstance(event.data, Mapping) else {}
        if event.kind == "journal" and data.get("kind") == "decision":
            entry = await asyncio.to_thread(self.engine.journal.get, data["id"])
            d = entry.data if entry is not None else {}
            faults = d.get("faults") or []
            host = (entry.host if entry is not None else None) or (str(faults[0]).split(":")[0] if faults else "")
            self.nms.decision(host, str(d.get("rule") or ""), str(d.get("action", "")), str(data.get("reason", "")))
        elif event.kind == "journal" and data.get("kind") == "plan_started":
            host, action = await self._plan_facts(str(data.get("plan_id")))
            self.nms.plan_started(str(data.get("plan_id")), host, action, str(data.get("reason") or ""))
        elif event.kind == "plan" and data.get("status") == "finished" and "id" in data:
            host, action = await self._plan_facts(str(data["id"]))
            self.nms.plan_finished(str(data["id"]), host, action, f"plan {data['id']} finished")
        elif event.kind == "state":
            for host, hs in (data.get("hosts") or {}).items():
                duty = str(hs.get("duty"))
                if self._duties.get(host) not in (None, duty):
                    self.nms.role_changed(host, duty, f"{host} duty {self._duties[host]} -> {duty}")
                self._duties[host] = duty

    async def _plan_facts(self, plan_id: str) -> tuple[str, str]:
        """(host, action) of a stored plan: the first host its steps name."""
        rec = await asyncio.to_thread(self.engine.store.get_plan, plan_id)
        if rec is None:
            return "", ""
        host = next((s.host for s in rec.plan.steps if s.host), "")
        return host or "", rec.plan.action.value
