"""The agent's SNMP responder and FastAGI admission server, wired to its live model.

`SnmpAgi` owns both servers for one host: built from the site config, started and stopped by
`agents.runtime`, and told by the runtime whenever the AMI snapshot or a service changes (`changed()`),
so a span alarm leaves as a notification at once. The MIB view (`HostViewSource`) and the admission
figures (`live_capacity`) are read from the AMI snapshot and the service manager: synchronous and cheap.

What the agent cannot know is said plainly: the site mode reads "unknown" (the controller owns it) and
the duty is inferred from which services run. Without SNMP keys or a community the agent runs without
SNMP (logged once); a server that cannot bind is a start-up error (`SnmpAgiError`). pysnmp is loaded
only when SNMP is configured. Secrets are never logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from agents.fastagi import AdmissionServer, CapacityUnknown, LiveCapacity
from agents.report import driver_state
from agents.server import split_host_port
from ccfo.domain.capacity import HostLoad, UnknownPolicy
from ccfo.domain.site import CapacityPolicy
from ccfo.snmp.security import NotifyTarget, Secret, V3User
from ccfo.snmp.view import HostView, ServiceView, SpanView, TrunkView, capacity_fields
from ccfo.snmp.wiring import (
    SnmpConfigError,
    agent_engine_id,
    controller_target,
    file_reader,
    host_credentials,
    notify_target,
)

if TYPE_CHECKING:
    from agents.snmp.responder import SnmpResponder
    from ccfo.config.loader import LoadedConfig

log = logging.getLogger("ccfo.agent.snmp_agi")
WATCH_INTERVAL_S = 5.0  # the responder's own re-read: a safety net beside the change notifications


class SnmpAgiError(Exception):
    """The SNMP responder or the admission server cannot start (address taken, no AES); says which."""


def infer_duty(role: str, states: Mapping[str, str], runs_as: Mapping[str, Collection[str]],
               critical: Collection[str]) -> str:
    """What the host does now, from its running services: CTI/IVR up is primary (or takeover on the
    standby), a standby-layout service up is standby, nothing up is out; unknown before the first check."""
    active = {name for name, state in states.items() if state == "active"}
    if active & set(critical):
        return "primary" if role == "primary" else "takeover"
    if any("standby" in runs_as.get(name, ()) for name in active):
        return "standby"
    if states and all(state == "unknown" for state in states.values()):
        return "unknown"
    return "out"


class HostViewSource:
    """Calls return the host's current HostView; the same object while nothing changed (the responder
    rebuilds its table only when the view object changes)."""

    def __init__(self, host: str, role: str, runs_as: Mapping[str, Collection[str]], critical: Collection[str],
                 policy: CapacityPolicy, fax_channels: int, services: Any, ami: Callable[[], Any]) -> None:
        self.host, self.role = host, role
        self._runs_as, self._critical = runs_as, critical
        self._policy, self._fax_channels = policy, fax_channels
        self._services, self._ami = services, ami
        self._last: HostView | None = None

    def build(self) -> HostView:
        snap = self._ami().snapshot()
        connected = bool(snap.connected)
        statuses = self._services.services()
        states = {name: st.state.value for name, st in statuses.items()}
        driver = driver_state(self._services.driver().state, snap)
        spans: tuple[SpanView, ...] = ()
        channels, load = 0, HostLoad()
        trunks = tuple(TrunkView(str(t.name), str(t.driver), _updown(t.state) if connected else None,
                                 int(t.channels)) for t in getattr(snap, "trunks", ()))
        if connected:
            spans = tuple(SpanView(int(s.span), str(s.alarm), _updown(s.dchannel), int(s.channels))
                          for s in snap.spans)
            channels = int(snap.channels_available)
            load = HostLoad(int(snap.calls.ivr), int(snap.calls.agent), int(snap.calls.fax))
        return HostView(
            host=self.host, role=self.role, duty=infer_duty(self.role, states, self._runs_as, self._critical),
            mode="unknown", services=tuple(ServiceView(n, st.state.value, st.since) for n, st in statuses.items()),
            spans=spans, driver_up={"up": True, "down": False}.get(driver), ami_connected=connected,
            ami_hung=not connected and bool(getattr(snap, "hung", False)), trunks=trunks,
            **capacity_fields(channels, load, self._policy, self._fax_channels))

    def __call__(self) -> HostView:
        view = self.build()
        if view != self._last:
            self._last = view
        return self._last  # type: ignore[return-value]


def _updown(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"up": True, "down": False}.get(str(value).lower())


def live_capacity(ami: Any, policy: CapacityPolicy, fax_channels: int) -> LiveCapacity:
    """C, X, Y and fax calls now, from the AMI snapshot; CapacityUnknown ("AMI down (why)") while the AMI
    link is down, or while the host's SIP trunks have not been listed since it connected (C would be a
    guess), so the admission's per-kind policy answers and names the real cause."""
    snap = ami.snapshot()
    if not snap.connected:
        raise CapacityUnknown(f"AMI down ({snap.error or 'not connected'})")
    trunks = getattr(snap, "trunks", ())
    if trunks and not getattr(snap, "trunks_known", True):
        why = next((t.detail for t in trunks if t.state == "unknown"), "trunks not listed")
        raise CapacityUnknown(f"AMI down for the trunks (no trunk data: {why})")
    calls = snap.calls
    return LiveCapacity(int(snap.channels_available), HostLoad(int(calls.ivr), int(calls.agent), int(calls.fax)),
                        policy, fax_channels)


def ami_down_policy(model: Any, fail_open: bool) -> UnknownPolicy:
    """hosts.NAME.agi.ami_down as the core's per-kind policy; a kind left unset follows agi.fail_open."""
    def one(value: str | None) -> bool:
        return fail_open if value is None else value == "admit"
    return UnknownPolicy(ivr=one(model.ivr), agent=one(model.agent), fax=one(model.fax))


class SnmpAgi:
    """The SNMP responder and the admission server of one host (each only when configured)."""

    def __init__(self, loaded: LoadedConfig, host: str, services: Any, ami: Callable[[], Any]) -> None:
        site = loaded.site_model
        self.loaded, self.host = loaded, host
        self.model = site.hosts[host]
        self.enterprise = site.site.snmp_enterprise
        self._ami = ami
        policy = loaded.site.capacity
        self.view = HostViewSource(host, self.model.role.value,
                                   {n: {d.value for d in s.runs_as} for n, s in self.model.services.items()},
                                   {n for n, s in self.model.services.items() if s.critical}, policy,
                                   self.model.fax_channels, services, ami)
        self._policy = policy
        self.responder: SnmpResponder | None = None
        self.admission: AdmissionServer | None = None

    # --- configuration ---------------------------------------------------------------------------

    def snmp_settings(self) -> tuple[V3User | None, Secret | None, list[NotifyTarget]] | None:
        """Credentials and targets, or None (logged once) when this host runs without SNMP."""
        snmp, read = self.model.snmp, file_reader(lambda p: self.loaded.resolve(p))
        try:
            user, community = host_credentials(snmp, read)
        except SnmpConfigError as exc:
            log.error("snmp: %s (hosts.%s.snmp): running without SNMP", exc, self.host)
            return None
        if user is None and community is None:
            log.info("snmp: no keys or community configured (hosts.%s.snmp): running without SNMP", self.host)
            return None
        targets = []
        own = controller_target(self.loaded.site_model.controller, user, community)
        if own is not None:
            targets.append(own)
        for i, t in enumerate(snmp.notify_targets):
            try:
                targets.append(notify_target(f"nms{i}", t, read, user))
            except SnmpConfigError as exc:
                log.error("snmp: hosts.%s.snmp.notify_targets[%d]: %s: target left out", self.host, i, exc)
        return user, community, targets

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start_snmp()
            await self._start_agi()
        except BaseException:
            await self.stop()
            raise

    async def _start_snmp(self) -> None:
        settings = self.snmp_settings()
        if settings is None:
            return
        from agents.snmp.responder import SnmpResponder  # loads pysnmp: only when SNMP is configured
        user, community, targets = settings
        snmp = self.model.snmp
        bind = snmp.address or "0.0.0.0"
        responder = SnmpResponder(self.view, user=user, community=community, host=bind, port=snmp.port,
                                  enterprise=self.enterprise, targets=targets,
                                  engine_id=agent_engine_id(self.enterprise, self.host),
                                  watch_interval_s=WATCH_INTERVAL_S)
        try:
            await responder.start()
        except (OSError, RuntimeError) as exc:
            await responder.close()
            raise SnmpAgiError(f"cannot serve SNMP on {bind}:{snmp.port}: {_why(exc)}") from exc
        self.responder = responder

    async def _start_agi(self) -> None:
        agi = self.model.agi
        if not agi.enabled:
            log.info("fastagi: admission disabled (hosts.%s.agi.enabled)", self.host)
            return
        host, port = split_host_port(agi.listen)
        server = AdmissionServer(lambda: live_capacity(self._ami(), self._policy, self.model.fax_channels),
                                 host=host, port=port, fail_open=agi.fail_open,
                                 ami_down=ami_down_policy(agi.ami_down, agi.fail_open))
        try:
            await server.start()
        except OSError as exc:
            raise SnmpAgiError(f"cannot serve FastAGI admission on {agi.listen}: {_why(exc)}") from exc
        self.admission = server

    def changed(self, *_: object) -> None:
        """The AMI snapshot or a service changed: notify what the MIB names (never raises)."""
        if self.responder is None:
            return
        try:
            self.responder.view_changed()
        except Exception:
            log.exception("snmp: cannot notify a change")

    async def stop(self) -> None:
        responder, self.responder = self.responder, None
        admission, self.admission = self.admission, None
        if admission is not None:
            await admission.close()
        if responder is not None:
            await responder.close()

    def addresses(self) -> dict[str, str]:
        """Bound addresses (for the ready file and the start-up line)."""
        out = {}
        if self.responder is not None:
            out["snmp"] = f"{self.model.snmp.address or '0.0.0.0'}:{self.responder.port}"
        if self.admission is not None:
            out["agi"] = f"{split_host_port(self.model.agi.listen)[0]}:{self.admission.port}"
        return out


def _why(exc: BaseException) -> str:
    """"Address already in use", not asyncio's "error while attempting to bind on address (...): ..."."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc)
