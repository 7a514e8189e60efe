"""The agent's SNMP and FastAGI glue: the MIB view from the live model, admission from the AMI snapshot,
start/stop on the configured addresses (a per-test 127.x.y network), and start-up errors that say why."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from agents.runtime import AgentRuntime, Options, StartupError
from agents.services import ServiceState, ServiceStatus
from agents.snmp_agi import CapacityUnknown, HostViewSource, SnmpAgi, SnmpAgiError, infer_duty, live_capacity
from ccfo.config.loader import LoadedConfig, load_config
from ccfo.domain.site import CapacityPolicy
from lab.labconfig import LabLayout, build

REPO = Path(__file__).resolve().parents[2]
RUNS_AS = {"cti": {"primary", "takeover"}, "ivr": {"primary", "takeover"}, "kcxp": {"primary", "standby"},
           "kcxp-replica": {"takeover"}}
CRITICAL = {"cti", "ivr"}
_NETS = itertools.count(os.getpid() // 250)


# --- fakes of the live model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    span: int
    alarm: str = "ok"
    dchannel: bool = True
    channels: int = 30
    healthy: bool = True


@dataclass(frozen=True)
class Calls:
    ivr: int = 0
    agent: int = 0
    fax: int = 0


@dataclass(frozen=True)
class Snap:
    connected: bool = True
    spans: tuple[Span, ...] = (Span(1), Span(2))
    calls: Calls = Calls()
    driver: str = "up"
    error: str | None = None
    last_ok: float | None = 1.0

    @property
    def channels_available(self) -> int:
        return sum(s.channels for s in self.spans if s.healthy) if self.driver == "up" else 0

    @property
    def channels_free(self) -> int:
        return max(0, self.channels_available - self.calls.ivr - 2 * self.calls.agent)


@dataclass
class FakeAmi:
    snap: Snap = field(default_factory=Snap)

    def snapshot(self) -> Snap:
        return self.snap


@dataclass
class FakeServices:
    states: dict[str, str] = field(default_factory=lambda: {"cti": "active", "ivr": "active", "kcxp": "active",
                                                            "kcxp-replica": "inactive"})
    driver_state: str = "active"

    def services(self) -> dict[str, ServiceStatus]:
        return {n: ServiceStatus(n, ServiceState(s), 1795427911.0, 1795427911.0) for n, s in self.states.items()}

    def driver(self) -> ServiceStatus:
        return ServiceStatus("dahdi", ServiceState(self.driver_state), 1795427900.0, 1795427911.0)


def source(ami: FakeAmi, services: FakeServices, role: str = "primary") -> HostViewSource:
    return HostViewSource("ipc-a", role, RUNS_AS, CRITICAL, CapacityPolicy(reserve_for_transfers=2), 4, services,
                          lambda: ami)


# --- the view and the live capacity --------------------------------------------------------------


@pytest.mark.parametrize(("role", "states", "duty"), [
    ("primary", {"cti": "active", "ivr": "active", "kcxp": "active"}, "primary"),
    ("standby", {"cti": "active", "ivr": "inactive", "kcxp-replica": "active"}, "takeover"),
    ("standby", {"cti": "inactive", "kcxp": "active"}, "standby"),
    ("primary", {"cti": "failed", "kcxp": "active"}, "standby"),
    ("standby", {"cti": "inactive", "kcxp": "inactive", "kcxp-replica": "inactive"}, "out"),
    ("primary", {"cti": "unknown", "kcxp": "unknown"}, "unknown"),
])
def test_the_duty_is_inferred_from_the_running_services(role: str, states: dict[str, str], duty: str) -> None:
    assert infer_duty(role, states, RUNS_AS, CRITICAL) == duty


def test_the_view_follows_the_ami_snapshot_and_the_services() -> None:
    ami, services = FakeAmi(Snap(calls=Calls(ivr=5, agent=2, fax=1))), FakeServices()
    views = source(ami, services)
    view = views()
    assert (view.host, view.role, view.duty, view.mode) == ("ipc-a", "primary", "primary", "unknown")
    assert (view.channels, view.ivr_calls, view.agent_calls, view.fax_calls) == (60, 5, 2, 1)
    assert (view.used, view.free, view.reserve, view.fax_channels) == (9, 51, 2, 4)
    assert [(s.span, s.alarm, s.dchannel_up, s.channels) for s in view.spans] == [(1, "ok", True, 30),
                                                                                   (2, "ok", True, 30)]
    assert view.driver_up is True and view.ami_connected
    assert [(s.name, s.state) for s in view.services][:2] == [("cti", "active"), ("ivr", "active")]
    assert views() is view, "an unchanged model gives the same object (the responder keeps its table)"
    ami.snap = Snap(spans=(Span(1, "red", False, healthy=False), Span(2)), calls=Calls(ivr=5, agent=2, fax=1))
    changed = views()
    assert changed is not view and changed.channels == 30 and changed.span(1).alarm == "red"  # type: ignore


def test_without_ami_the_view_says_not_known_rather_than_lines_down() -> None:
    views = source(FakeAmi(Snap(connected=False, error="connection refused")), FakeServices(driver_state="failed"))
    view = views()
    assert not view.ami_connected and view.spans == () and view.channels == 0 and view.ivr_calls == 0
    assert view.driver_up is False  # the driver service failed: down, whatever AMI could say


def test_live_capacity_and_an_unknown_one() -> None:
    policy = CapacityPolicy()
    live = live_capacity(FakeAmi(Snap(calls=Calls(28, 1, 2))), policy, 4)
    assert (live.channels, live.load.ivr_calls, live.load.agent_calls, live.load.fax_calls) == (60, 28, 1, 2)
    assert live.policy is policy and live.fax_channels == 4
    with pytest.raises(CapacityUnknown, match="refused"):
        live_capacity(FakeAmi(Snap(connected=False, error="refused")), policy, 4)


# --- SnmpAgi on a lab-like config ----------------------------------------------------------------


def site_config(tmp_path: Path, edit: Any = None) -> tuple[LoadedConfig, LabLayout]:
    """The lab's generated config on this test's own 127.x.y network, optionally edited (site dict).

    The third octet is never 1, so these addresses never meet a whole lab's (labkit: 127.n.1.*)."""
    net = f"127.{2 + os.getpid() % 250}.{2 + next(_NETS) % 250}"
    lay = LabLayout(tmp_path / "lab", net=net, controller_listen=f"{net}.100:8080")
    build(REPO / "config", lay)
    if edit is not None:
        path = lay.config / "site.yaml"
        site = yaml.safe_load(path.read_text())
        edit(site)
        path.write_text(yaml.safe_dump(site, sort_keys=False))
    return load_config(lay.config), lay


async def agi(host: str, port: int, script: str = "admit?kind=agent") -> dict[str, str]:
    """Asterisk's side of one FastAGI session: the variables the server set."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    writer.write(f"agi_network: yes\nagi_network_script: {script}\nagi_channel: DAHDI/i1/1-1\n\n".encode())
    found: dict[str, str] = {}
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            name, _, value = line.decode().strip().removeprefix("SET VARIABLE ").partition(" ")
            found[name] = value[1:-1]
            writer.write(b"200 result=1\n")
    finally:
        writer.close()
    return found


@pytest_asyncio.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[SnmpAgi, FakeAmi, LabLayout]]:
    cfg, lay = site_config(tmp_path)
    ami = FakeAmi(Snap(spans=(Span(1),), calls=Calls(ivr=28, agent=1)))
    edges = SnmpAgi(cfg, "ipc-b", FakeServices(), lambda: ami)
    await edges.start()
    try:
        yield edges, ami, lay
    finally:
        await edges.stop()


@pytest.mark.asyncio
async def test_snmp_and_agi_serve_on_the_hosts_address_and_admission_reads_the_snapshot(started) -> None:
    edges, ami, lay = started
    addr = lay.hosts["ipc-b"]
    assert edges.addresses() == {"snmp": f"{addr}:1161", "agi": f"{addr}:4573"}
    assert edges.responder is not None and edges.responder.sender is not None
    assert [t.name for t in edges.responder.sender.targets] == ["controller"]
    full = await agi(addr, 4573)
    assert full["CCFO_ADMIT"] == "no" and "no room" in full["CCFO_REASON"], full
    ami.snap = Snap(spans=(Span(1),), calls=Calls(ivr=27, agent=1))
    assert (await agi(addr, 4573))["CCFO_ADMIT"] == "yes"


@pytest.mark.asyncio
async def test_a_change_leaves_as_notifications(started) -> None:
    edges, ami, _ = started
    ami.snap = Snap(spans=(Span(1, "red", False, healthy=False),), calls=Calls(ivr=28, agent=1))
    edges.changed()
    assert edges.responder is not None and edges.responder.notifications_sent == 2  # span alarm, D-channel down
    edges.changed()
    assert edges.responder.notifications_sent == 2, "nothing new, nothing sent"


@pytest.mark.asyncio
async def test_stop_frees_both_addresses(tmp_path: Path) -> None:
    cfg, lay = site_config(tmp_path)
    edges = SnmpAgi(cfg, "ipc-a", FakeServices(), lambda: FakeAmi())
    await edges.start()
    await edges.stop()
    assert edges.addresses() == {}
    addr = lay.hosts["ipc-a"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind((addr, 1161))
        tcp.bind((addr, 4573))


@pytest.mark.asyncio
@pytest.mark.parametrize("busy", ["snmp", "agi"])
async def test_an_address_in_use_is_a_clear_start_up_error(tmp_path: Path, busy: str) -> None:
    cfg, lay = site_config(tmp_path)
    addr = lay.hosts["ipc-a"]
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if busy == "snmp" else socket.SOCK_STREAM)
    holder.bind((addr, 1161 if busy == "snmp" else 4573))
    if busy == "agi":
        holder.listen()
    edges = SnmpAgi(cfg, "ipc-a", FakeServices(), lambda: FakeAmi())
    try:
        with pytest.raises(SnmpAgiError) as exc:
            await edges.start()
    finally:
        holder.close()
    what = f"SNMP on {addr}:1161" if busy == "snmp" else f"FastAGI admission on {addr}:4573"
    assert str(exc.value) == f"cannot serve {what}: Address already in use"
    assert edges.responder is None and edges.admission is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((addr, 1161))  # a responder started before the AGI failure was closed again


def no_snmp_keys(site: dict[str, Any]) -> None:
    for host in site["hosts"].values():
        host["snmp"] = {"address": host["address"], "port": 1161}
        host["agi"]["fail_open"] = False


@pytest.mark.asyncio
async def test_without_keys_there_is_no_snmp_logged_once_and_agi_still_runs(tmp_path: Path, caplog) -> None:
    cfg, lay = site_config(tmp_path, no_snmp_keys)
    edges = SnmpAgi(cfg, "ipc-a", FakeServices(), lambda: FakeAmi(Snap(connected=False, error="refused")))
    with caplog.at_level(logging.INFO, logger="ccfo.agent.snmp_agi"):
        await edges.start()
    try:
        assert edges.responder is None and set(edges.addresses()) == {"agi"}
        assert [r.getMessage() for r in caplog.records if "without SNMP" in r.getMessage()] == [
            "snmp: no keys or community configured (hosts.ipc-a.snmp): running without SNMP"]
        # AMI down, fail_open false and no agi.ami_down: the ami_down policy follows fail_open (refuse), and says why
        answer = await agi(lay.hosts["ipc-a"], 4573)
        assert answer["CCFO_ADMIT"] == "no" and answer["CCFO_REASON"].startswith("AMI down (refused)"), answer
        assert answer["CCFO_REASON"].endswith("agent refused by the ami_down policy"), answer
    finally:
        await edges.stop()


@pytest.mark.asyncio
async def test_an_unreadable_key_means_no_snmp_and_names_the_file_only(tmp_path: Path, caplog) -> None:
    cfg, lay = site_config(tmp_path)
    key = (lay.config / "secrets" / "snmp-priv-key").read_text().strip()
    (lay.config / "secrets" / "snmp-auth-key").unlink()
    edges = SnmpAgi(cfg, "ipc-a", FakeServices(), lambda: FakeAmi())
    with caplog.at_level(logging.INFO, logger="ccfo.agent.snmp_agi"):
        await edges.start()
    await edges.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "snmp-auth-key" in errors[0] and "running without SNMP" in errors[0], errors
    assert key not in caplog.text


# --- the whole agent process's start-up ----------------------------------------------------------


@pytest.mark.asyncio
async def test_the_agent_refuses_to_start_when_its_agi_address_is_taken(tmp_path: Path) -> None:
    cfg, lay = site_config(tmp_path)
    holder = socket.socket()
    holder.bind((lay.hosts["ipc-a"], 4573))
    holder.listen()
    runtime = AgentRuntime(cfg, Options("ipc-a", lab=True, listen="127.0.0.1:0", state_dir=tmp_path / "agent"))
    try:
        with pytest.raises(StartupError, match=f"cannot serve FastAGI admission on {lay.hosts['ipc-a']}:4573"):
            await runtime.start()
    finally:
        holder.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((lay.hosts["ipc-a"], 1161))  # SNMP, started first, was closed again


@pytest.mark.asyncio
async def test_the_agent_starts_without_snmp_keys(tmp_path: Path) -> None:
    cfg, lay = site_config(tmp_path, no_snmp_keys)
    runtime = AgentRuntime(cfg, Options("ipc-b", lab=True, listen="127.0.0.1:0", state_dir=tmp_path / "agent",
                                        ready_file=tmp_path / "ready.json"))
    await runtime.start()
    try:
        ready = yaml.safe_load((tmp_path / "ready.json").read_text())
        assert ready["agi"] == f"{lay.hosts['ipc-b']}:4573" and "snmp" not in ready
        assert runtime.snmp_agi.admission is not None and runtime.snmp_agi.responder is None
    finally:
        await runtime.stop()
