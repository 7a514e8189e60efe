"""The controller's read model with SIP trunks: C is the healthy spans plus the trunks reported up, and the
status lists every configured trunk with its reported state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents.services import ServiceState as AgentServiceState
from agents.snmp_agi import HostViewSource
from ccfo.clients.agent_http import parse_report
from ccfo.domain.health import DriverState, HostHealth, ServiceState, TrunkHealth
from ccfo.domain.site import CapacityPolicy
from ccfo.snmp.view import TrunkView
from controller.adapters.snmp_glue import differences
from controller.client import _status_text
from controller.status import _trunks, host_capacity
from tests.controller.test_api import api, auth
from tests.domain.factories import normal_state
from tests.domain.test_trunks import sip_site
from tests.snmp.conftest import sample_view

__all__ = ["api"]  # the fixture, imported for its name


def health(*trunks: TrunkHealth, ami: bool = True) -> HostHealth:
    return HostHealth("ipc-b", 100.0, ami, DriverState.DOWN, (), {"kcxp": ServiceState.ACTIVE}, ivr_calls=3,
                      agent_calls=2, trunks=trunks)


def test_capacity_comes_from_the_trunks_that_are_up() -> None:
    site, state = sip_site(), normal_state()
    both = host_capacity(site, state, "ipc-b", health(TrunkHealth("carrier-a", "up", 20),
                                                      TrunkHealth("carrier-b", "up", 10, "sip")))
    assert (both["channels"], both["board_channels"], both["trunk_channels"], both["free"]) == (30, 0, 30, 23)
    one = host_capacity(site, state, "ipc-b", health(TrunkHealth("carrier-a", "down", 20),
                                                     TrunkHealth("carrier-b", "up", 10, "sip")))
    assert (one["channels"], one["free"], one["more_agent_transfers"]) == (10, 3, 3)
    lost = host_capacity(site, state, "ipc-b", health(ami=False))
    assert lost["channels"] == 0


def test_status_lists_configured_trunks_with_their_reported_state() -> None:
    host = sip_site().host("ipc-b")
    assert _trunks(host, health(TrunkHealth("carrier-a", "down", 20))) == [
        {"name": "carrier-a", "driver": "pjsip", "channels": 20, "state": "down"},
        {"name": "carrier-b", "driver": "sip", "channels": 10, "state": "unknown"}]


def test_the_agent_report_trunks_reach_the_core() -> None:
    body = {"host": "ipc-b", "ami": {"connected": True, "state": "up"}, "board": {"driver": "down"},
            "spans": [], "services": {}, "calls": {"ivr": 0, "agent": 0, "fax": 0},
            "trunks": [{"name": "carrier-a", "driver": "pjsip", "channels": 20, "state": "up", "detail": "x"},
                       {"name": "carrier-b", "driver": "sip", "channels": 10, "state": "weird", "detail": ""}]}
    rep = parse_report("ipc-b", body, 5.0)
    assert rep.trunks == (TrunkHealth("carrier-a", "up", 20, "pjsip"), TrunkHealth("carrier-b", "unknown", 10, "sip"))


def test_the_snmp_safety_net_compares_trunks_with_the_report() -> None:

    view = sample_view(services=(), trunks=(TrunkView("carrier-a", "pjsip", True, 20),
                                            TrunkView("carrier-b", "sip", True, 10)))
    rep = HostHealth("ipc-a", 1.0, True, DriverState.UP, (), {}, 28, 1, 2,
                     trunks=(TrunkHealth("carrier-a", "up", 20), TrunkHealth("carrier-b", "down", 10, "sip")))
    found = [d for d in differences(view, rep) if d.startswith("trunk")]
    assert found == ["trunk carrier-b: snmp ('up', 10), report ('down', 10)"]


def test_the_agents_mib_view_carries_the_trunks() -> None:
    trunks = (SimpleNamespace(name="carrier-a", driver="pjsip", state="up", channels=20),
              SimpleNamespace(name="carrier-b", driver="sip", state="unknown", channels=10))
    snap = SimpleNamespace(connected=True, spans=(), trunks=trunks, channels_available=20, driver="down",
                           calls=SimpleNamespace(ivr=1, agent=2, fax=0))
    services = SimpleNamespace(services=dict, driver=lambda: SimpleNamespace(state=AgentServiceState.INACTIVE))
    view = HostViewSource("ipc-b", "standby", {}, set(), CapacityPolicy(), 4, services,
                          lambda: SimpleNamespace(snapshot=lambda: snap)).build()
    assert [(t.name, t.driver, t.up, t.channels) for t in view.trunks] == [("carrier-a", "pjsip", True, 20),
                                                                           ("carrier-b", "sip", None, 10)]
    assert (view.channels, view.used, view.free) == (20, 5, 15)


def test_ccfo_status_text_shows_the_trunks() -> None:
    status = {"site": "s", "state": "normal", "mode": "supervised", "active_host": "ipc-a", "active_db": "x",
              "capacity": {"line": "with 0 agent call(s), 30 more IVR call(s) fit"}, "faults": [],
              "hosts": {"ipc-b": {"role": "standby", "duty": "standby", "board_isolated": False, "reachable": True,
                                  "driver": "down", "spans": [], "services": {},
                                  "trunks": [{"name": "carrier-1", "driver": "pjsip", "channels": 30, "state": "down"}],
                                  "capacity": {"channels": 0, "ivr_calls": 0, "agent_calls": 0, "free": 0,
                                               "fax_calls": 0, "fax_channels": 4}}}}
    assert "driver=down  trunk carrier-1=down/30ch" in _status_text(status)


@pytest.mark.asyncio
async def test_an_agent_report_with_trunks_is_validated_and_reaches_the_status(api):
    body = {"host": "ipc-a", "ami": {"connected": True}, "board": {"driver": "up"}, "spans": [],
            "services": {}, "calls": {"ivr": 0, "agent": 0, "fax": 0}, "db": {"site": "shenzhen"},
            "trunks": [{"name": "carrier-a", "driver": "pjsip", "channels": "many", "state": "up"}]}
    r = await api.post("/api/v1/agents/ipc-a/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 422, "a trunk's channels must be a count"
    body["trunks"] = [{"name": "carrier-a", "driver": "pjsip", "channels": 30, "state": "up", "detail": "x"}]
    r = await api.post("/api/v1/agents/ipc-a/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 204
    hosts = (await api.get("/api/v1/status", headers=auth(api, "viewer"))).json()["hosts"]
    assert hosts["ipc-a"]["trunks"] == []  # the example site configures no trunk on ipc-a: none is shown
    assert hosts["ipc-a"]["capacity"]["trunk_channels"] == 0
