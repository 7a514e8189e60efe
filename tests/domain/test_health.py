"""The health model: reports folded into a snapshot, and the faults it shows."""

from __future__ import annotations

from ccfo.domain.faults import Fault, FaultKind
from ccfo.domain.health import DriverState, HostHealth, ServiceState, SpanHealth, faults, snapshot
from tests.domain.factories import example_site, normal_state, primary_board_isolated, site_after_failover

SITE = example_site()
A, OFF = ServiceState.ACTIVE, ServiceState.INACTIVE


def report(host: str, at: float = 100.0, *, ami: bool = True, driver: DriverState = DriverState.UP,
           spans: tuple[SpanHealth, ...] | None = None, **services: ServiceState) -> HostHealth:
    default = {"cti": A, "ivr": A, "kcxp": A, "kcbp": A} if host == "ipc-a" else {"kcxp": A, "kcbp": A}
    default.update({k.replace("_", "-"): v for k, v in services.items()})
    n = 2 if host == "ipc-a" else 1
    spans = spans if spans is not None else tuple(SpanHealth(i, "ok", True, 30) for i in range(1, n + 1))
    return HostHealth(host, at, ami, driver, spans, default)


def found(state=None, now: float = 100.5, **reports: HostHealth) -> set[Fault]:
    reps = {"ipc-a": report("ipc-a"), "ipc-b": report("ipc-b")}
    reps.update({k.replace("_", "-"): v for k, v in reports.items()})
    snap = snapshot(SITE, reps, now, heartbeat_s=1.0, missed=3)
    return set(faults(SITE, state or normal_state(), snap))


def test_healthy_site_has_no_faults():
    assert found() == set()


def test_service_down_only_where_the_duty_runs_it():
    assert found(ipc_a=report("ipc-a", cti=OFF)) == {Fault(FaultKind.SERVICE_DOWN, "ipc-a", "cti")}
    # the standby's CTI is installed but stopped by design: not a fault
    assert found(ipc_b=report("ipc-b", cti=OFF, ivr=OFF)) == set()
    # after a failover the standby's CTI must run, and the old primary's must not
    after = site_after_failover()
    b = report("ipc-b", cti=OFF, ivr=A, kcxp=OFF, kcbp=OFF, kcxp_replica=A, kcbp_replica=A)
    a = report("ipc-a", cti=OFF, ivr=OFF, kcxp=OFF, kcbp=OFF)
    assert found(after, ipc_a=a, ipc_b=b) == {Fault(FaultKind.SERVICE_DOWN, "ipc-b", "cti")}


def test_span_alarm_and_dchannel_down():
    spans = (SpanHealth(1, "red", True, 30), SpanHealth(2, "ok", False, 30))
    assert found(ipc_a=report("ipc-a", spans=spans)) == {Fault(FaultKind.SPAN_ALARM, "ipc-a", "1"),
                                                          Fault(FaultKind.DCHANNEL_DOWN, "ipc-a", "2")}


def test_driver_down_is_one_board_fault_not_one_per_span():
    spans = (SpanHealth(1, "not_open", None, 30), SpanHealth(2, "not_open", None, 30))
    assert found(ipc_a=report("ipc-a", driver=DriverState.DOWN, spans=spans)) == {Fault(FaultKind.BOARD_DOWN, "ipc-a")}


def test_ami_loss_is_its_own_fault_never_lines_down():
    assert found(ipc_b=report("ipc-b", ami=False, spans=())) == {Fault(FaultKind.AMI_LOST, "ipc-b")}


def test_isolated_board_is_not_a_board_fault():
    assert found(primary_board_isolated(), ipc_a=report("ipc-a", driver=DriverState.DOWN)) == set()


def test_host_unreachable_after_missed_heartbeats():
    assert found(now=103.0) == set()  # 3 heartbeats of 1 s: still reachable at 3.0 s
    assert found(now=103.1) == {Fault(FaultKind.HOST_UNREACHABLE, "ipc-a"), Fault(FaultKind.HOST_UNREACHABLE, "ipc-b")}
    assert Fault(FaultKind.HOST_UNREACHABLE, "ipc-a") in found(ipc_a=report("ipc-a", at=90.0))


def test_host_that_never_reported_is_unreachable():
    snap = snapshot(SITE, {"ipc-b": report("ipc-b")}, 100.5, 1.0, 3)
    assert snap.host("ipc-a").health is None and not snap.host("ipc-a").reachable
    assert Fault(FaultKind.HOST_UNREACHABLE, "ipc-a") in faults(SITE, normal_state(), snap)


def test_database_down_is_reported():
    snap = snapshot(SITE, {"ipc-a": report("ipc-a"), "ipc-b": report("ipc-b")}, 100.5, 1.0, 3,
                    db_down=frozenset({"shenzhen"}))
    assert faults(SITE, normal_state(), snap) == {Fault(FaultKind.DB_DOWN, "shenzhen")}


def test_a_database_fault_names_its_site_and_no_host():
    """Regression: `Fault.host` held the database site id for db_down, so a database site read as a host
    (the journal's host column said "shenzhen")."""
    snap = snapshot(SITE, {"ipc-a": report("ipc-a"), "ipc-b": report("ipc-b")}, 100.5, 1.0, 3,
                    db_down=frozenset({"shenzhen"}))
    (fault,) = faults(SITE, normal_state(), snap)
    assert fault.host is None and fault.db_site == "shenzhen" and str(fault) == "db:shenzhen=down"
    (span,) = faults(SITE, normal_state(), snapshot(SITE, {"ipc-a": report("ipc-a", cti=OFF),
                                                          "ipc-b": report("ipc-b")}, 100.5, 1.0, 3))
    assert span.host == "ipc-a" and span.db_site is None
