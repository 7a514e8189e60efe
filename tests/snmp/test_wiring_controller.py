"""The controller's SNMP glue against real peers over UDP on a per-test 127.x.y network: an agent's
notification becomes a journal entry, an engine wake and a report fetch; the safety-net poll logs (and only
logs) disagreements with the HTTP report; the controller's own events reach an NMS."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from agents.snmp_agi import SnmpAgi
from ccfo.config.loader import LoadedConfig
from ccfo.domain.health import DriverState, HostHealth, ServiceState, SpanHealth
from ccfo.domain.state import SiteState
from ccfo.platform.auth import TokenFileError
from ccfo.snmp import layout as L
from ccfo.snmp.decode import DecodedNotification
from ccfo.snmp.security import Secret
from ccfo.snmp.view import HostView, ServiceView, SpanView
from controller.adapters.snmp_glue import JOURNAL_KIND, ControllerSnmp, differences
from controller.events import EventBus
from controller.journal import Journal
from controller.service import LogNotifier
from controller.snmp import ReceivedNotification, TrapReceiver
from tests.snmp.conftest import free_udp_port
from tests.snmp.test_wiring_agent import Calls, FakeAmi, FakeServices, Snap, Span, site_config
from tests.support import async_wait_until

SERVICES = {"cti": "active", "ivr": "active", "kcxp": "active", "kcxp-replica": "inactive"}


def health(host: str = "ipc-a", *, ivr: int = 5, agent: int = 2, fax: int = 0, spans: tuple[SpanHealth, ...] = (
        SpanHealth(1, "ok", True, 30), SpanHealth(2, "ok", True, 30)), ami: bool = True) -> HostHealth:
    return HostHealth(host, time.time(), ami, DriverState.UP, spans,
                      {n: ServiceState(s) for n, s in SERVICES.items()}, ivr, agent, fax, "shenzhen")


def view(**changes: Any) -> HostView:
    base = HostView("ipc-a", "primary", "primary", "unknown",
                    services=tuple(ServiceView(n, s) for n, s in SERVICES.items()),
                    spans=(SpanView(1, "ok", True, 30), SpanView(2, "ok", True, 30)), driver_up=True,
                    ami_connected=True, channels=60, ivr_calls=5, agent_calls=2)
    return replace(base, **changes)


def test_differences_name_what_disagrees() -> None:
    assert differences(view(), health()) == []
    assert differences(view(), None) == [], "no report yet: nothing to compare"
    assert differences(view(spans=(SpanView(1, "Red Alarm", False, 30), SpanView(2, "ok", True, 30))), health()) == [
        "span 1: snmp ('red', 'down', 30), report ('ok', 'up', 30)"]
    assert differences(view(ivr_calls=6), health()) == ["calls (ivr, agent, fax): snmp (6, 2, 0), report (5, 2, 0)"]
    lost = differences(view(ami_connected=False, spans=(), ivr_calls=0, agent_calls=0), health())
    assert lost == ["AMI link: snmp down, report up"], "with AMI down on one side, lines and calls are not compared"
    assert differences(view(services=(ServiceView("cti", "failed"),)), health())[:2] == [
        "service cti: snmp failed, report active", "service ivr: snmp None, report active"]


# --- a controller without its engine: the real journal and event bus, a fake engine and agent client --


@dataclass
class FakeAgents:
    fetched: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def report(self, host: str) -> HostHealth:
        self.fetched.append(host)
        if self.gate is not None:
            await self.gate.wait()
        return health(host)


class FakeEngine:
    def __init__(self, cfg: LoadedConfig, journal: Journal) -> None:
        self.site, self.journal, self.events = cfg.site, journal, EventBus()
        self.state = SiteState.normal(cfg.site)
        self.reports: dict[str, HostHealth] = {}
        self.ingested: list[HostHealth] = []
        self.woken = 0
        self.plans: dict[str, Any] = {}
        self.store = SimpleNamespace(get_plan=self.plans.get)

    def wake(self) -> None:
        self.woken += 1

    def ingest(self, h: HostHealth) -> None:
        self.ingested.append(h)
        self.reports[h.host] = h


@dataclass
class World:
    cfg: LoadedConfig
    engine: FakeEngine
    agents: FakeAgents
    notifier: LogNotifier
    snmp: ControllerSnmp
    agent: SnmpAgi
    ami: FakeAmi


def nms_on(port: int):  # type: ignore[no-untyped-def]
    def edit(site: dict[str, Any]) -> None:
        site["controller"]["snmp_poll_interval_s"] = 0
        site["controller"]["snmp_nms_targets"] = [{"host": "127.0.0.1", "port": port, "kind": "trap",
                                                   "community_file": "secrets/nms-community"}]
    return edit


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    nms_port = free_udp_port()
    cfg, lay = site_config(tmp_path, nms_on(nms_port))
    (lay.config / "secrets" / "nms-community").write_text("nms-community-1\n")
    (lay.config / "secrets" / "nms-community").chmod(0o600)
    engine, agents = FakeEngine(cfg, Journal(tmp_path / "journal.sqlite")), FakeAgents()
    notifier = LogNotifier(engine.events)
    ami = FakeAmi(Snap(calls=Calls(ivr=5, agent=2)))
    agent = SnmpAgi(cfg, "ipc-a", FakeServices(dict(SERVICES)), lambda: ami)
    snmp = ControllerSnmp(cfg, engine, agents, notifier)
    await agent.start()
    await snmp.start()
    try:
        yield World(cfg, engine, agents, notifier, snmp, agent, ami)
    finally:
        await snmp.stop()
        await agent.stop()
        engine.journal.close()


def entries(w: World) -> list[Any]:
    return w.engine.journal.query(kinds=JOURNAL_KIND)


@pytest.mark.asyncio
async def test_an_agents_span_alarm_is_journalled_wakes_the_engine_and_fetches_its_report(world: World) -> None:
    world.ami.snap = Snap(spans=(Span(1, "red", False, healthy=False), Span(2)), calls=Calls(ivr=5, agent=2))
    started = time.time()
    world.agent.changed()
    await async_wait_until(lambda: len(entries(world)) >= 2, timeout=3, describe=lambda: entries(world))
    found = entries(world)
    alarm = next(e for e in found if e.data["notification"] == "span_alarm_raised")
    assert alarm.host == "ipc-a" and alarm.data["span"] == 1 and alarm.data["fields"]["alarm"] == "red"
    assert alarm.data["version"] == "v3" and alarm.ts - started < 1.0
    assert alarm.reason.startswith("span_alarm_raised span 1 ")
    assert world.engine.woken >= 2
    await async_wait_until(lambda: world.engine.ingested, timeout=3)
    assert set(world.agents.fetched) == {"ipc-a"} and world.engine.ingested[0].host == "ipc-a"


def received(kind: L.Notification, host: str | None, **fields: Any) -> ReceivedNotification:
    decoded = DecodedNotification(kind, (1, 3, 6, 1, 4, 1, 32473, 1, 0, int(kind)), host, fields=fields)
    return ReceivedNotification(time.time(), ("127.0.0.1", 1161), "v3", "ccfo", decoded, ())


@pytest.mark.asyncio
async def test_fetches_are_coalesced_and_only_agent_notifications_fetch(world: World) -> None:
    world.agents.gate = asyncio.Event()
    first = asyncio.create_task(world.snmp.on_notification(received(L.Notification.SERVICE_DOWN, "ipc-b")))
    await async_wait_until(lambda: world.agents.fetched == ["ipc-b"], timeout=2)
    for _ in range(3):  # while the first fetch waits: one more fetch, not three
        await world.snmp.on_notification(received(L.Notification.SERVICE_DOWN, "ipc-b"))
    await world.snmp.on_notification(received(L.Notification.DECISION, "ipc-a", rule="r", action="failover"))
    await world.snmp.on_notification(received(L.Notification.SERVICE_DOWN, "intruder"))
    world.agents.gate.set()
    await asyncio.wait_for(first, 3)
    assert world.agents.fetched == ["ipc-b", "ipc-b"]
    rows = entries(world)
    assert len(rows) == 6 and world.engine.woken == 6
    assert sorted((e.host or "-", e.data["notification"]) for e in rows)[:2] == [
        ("-", "service_down"), ("ipc-a", "decision")]
    assert next(e for e in rows if e.host is None).data["claimed_host"] == "intruder"


@pytest.mark.asyncio
async def test_the_poll_logs_a_lasting_disagreement_once_and_never_acts(world: World, caplog) -> None:
    from controller.snmp import SnmpPoller
    world.snmp.poller = SnmpPoller(world.snmp.enterprise)
    endpoint = world.snmp.endpoints["ipc-a"]
    world.engine.reports["ipc-a"] = health(ivr=3)
    with caplog.at_level(logging.INFO, logger="ccfo.snmp"):
        for _ in range(3):
            assert await world.snmp.poll_once("ipc-a", endpoint) == [
                "calls (ivr, agent, fax): snmp (5, 2, 0), report (3, 2, 0)"]
        world.engine.reports["ipc-a"] = health()
        assert await world.snmp.poll_once("ipc-a", endpoint) == []
        assert await world.snmp.poll_once("ipc-b", world.snmp.endpoints["ipc-b"]) is None  # no agent there
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "disagrees" in m] == [
        "snmp: ipc-a's MIB disagrees with its HTTP report (not acted on): calls (ivr, agent, fax): snmp (5, 2, 0), "
        "report (3, 2, 0)"]
    assert "snmp: ipc-a's MIB agrees with its HTTP report again" in messages
    assert any(m.startswith("snmp: poll of ipc-b") and "failed" in m for m in messages)
    assert world.engine.ingested == [], "the poll never feeds the engine"


@pytest.mark.asyncio
async def test_the_controllers_events_reach_the_nms(world: World) -> None:
    got: list[ReceivedNotification] = []
    port = world.cfg.site_model.controller.snmp_nms_targets[0].port
    nms = TrapReceiver(got.append, host="127.0.0.1", port=port, communities=[Secret("nms-community-1")])
    await nms.start()
    try:
        plan = SimpleNamespace(steps=[SimpleNamespace(host=None), SimpleNamespace(host="ipc-b")],
                               action=SimpleNamespace(value="failover"))
        world.engine.plans["p1"] = SimpleNamespace(plan=plan)
        entry = world.engine.journal.append("decision", host="ipc-a", reason="primary CTI down", data={
            "rule": "primary-cti-ivr-fault", "action": "failover", "faults": ["ipc-a:service:cti=down"]})
        await world.engine.events.publish("journal", {"id": entry.id, "kind": "decision", "reason": entry.reason})
        await world.engine.events.publish("journal", {"id": 99, "kind": "plan_started", "plan_id": "p1",
                                                      "reason": "approved"})
        await world.notifier.notify("plan_failed", "step 2 failed", {"plan_id": "p1"})
        await world.engine.events.publish("plan", {"id": "p1", "status": "finished", "error": None})
        await world.engine.events.publish("state", {"hosts": {"ipc-a": {"duty": "standby"},
                                                              "ipc-b": {"duty": "takeover"}}})
        await async_wait_until(lambda: len(got) >= 6, timeout=3, describe=lambda: [r.notification for r in got])
    finally:
        await nms.close()
    by_kind = {r.kind: r.notification for r in got}
    assert by_kind[L.Notification.DECISION].fields["rule"] == "primary-cti-ivr-fault"
    assert by_kind[L.Notification.DECISION].host == "ipc-a"
    assert by_kind[L.Notification.PLAN_STARTED].fields["plan_id"] == "p1"
    assert (by_kind[L.Notification.PLAN_FAILED].host, by_kind[L.Notification.PLAN_FAILED].fields["action"]) == (
        "ipc-b", "failover")
    assert by_kind[L.Notification.PLAN_FINISHED].fields["plan_id"] == "p1"
    roles = sorted((r.notification.host, r.notification.fields["duty"]) for r in got
                   if r.kind is L.Notification.SITE_ROLE_CHANGED)
    assert roles == [("ipc-a", "standby"), ("ipc-b", "takeover")]


@pytest.mark.asyncio
async def test_stop_unhooks_and_frees_the_receivers_address(world: World) -> None:
    await world.snmp.stop()
    assert world.notifier.forwarders == []
    host, _, port = (world.cfg.site_model.controller.snmp_trap_listen or "").rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, int(port)))


@pytest.mark.asyncio
async def test_a_missing_key_or_a_taken_address_refuses_the_start(tmp_path: Path) -> None:
    cfg, lay = site_config(tmp_path)
    engine = FakeEngine(cfg, Journal(tmp_path / "journal.sqlite"))
    try:
        host, _, port = (cfg.site_model.controller.snmp_trap_listen or "").rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind((host, int(port)))
            snmp = ControllerSnmp(cfg, engine, FakeAgents(), LogNotifier(engine.events))
            with pytest.raises(OSError, match=f"cannot receive SNMP notifications on {host}:{port} "
                                              r"\(controller.snmp_trap_listen\): Address already in use"):
                await snmp.start()
        assert snmp.receiver is None and snmp.poller is None
        (lay.config / "secrets" / "snmp-priv-key").unlink()
        with pytest.raises(TokenFileError, match="snmp-priv-key: file not found"):
            ControllerSnmp(cfg, engine, FakeAgents(), LogNotifier(engine.events))
    finally:
        engine.journal.close()
