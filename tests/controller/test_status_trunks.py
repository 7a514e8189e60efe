"""The controller's read model with SIP trunks: C is the healthy spans plus the trunks reported up, and the
status lists every configured trunk with its reported state."""

from __future__ import annotations

from ccfo.clients.agent_http import parse_report
from ccfo.domain.health import DriverState, HostHealth, ServiceState, TrunkHealth
from controller.status import _trunks, host_capacity
from tests.domain.factories import normal_state
from tests.domain.test_trunks import sip_site


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
