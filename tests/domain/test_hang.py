"""A hung service is a failed service: the `hung` state becomes a fault the shipped rules handle, with its
own debounce per fault kind, and a hung Asterisk (`ami=hung`) is told from a lost AMI link."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.faults import Fault, FaultKind, FaultSyntaxError, FaultTracker, format_fault, parse_fault
from ccfo.domain.health import DriverState, HostHealth, ServiceState, SpanHealth, faults, snapshot
from ccfo.domain.plan import Action, StepKind
from ccfo.domain.rules import Disposition, evaluate
from tests.domain.factories import NOW, normal_state, primary_board_isolated, site_after_failover

REPO = Path(__file__).resolve().parents[2]
LOADED = load_config(REPO / "config")
SITE, POLICY = LOADED.site, LOADED.policy
A = ServiceState.ACTIVE


@pytest.mark.parametrize(("text", "fault"), [
    ("ipc-a:service:cti=hung", Fault(FaultKind.SERVICE_HUNG, "ipc-a", "cti")),
    ("ipc-b:service:kcxp-replica=hung", Fault(FaultKind.SERVICE_HUNG, "ipc-b", "kcxp-replica")),
    ("ipc-a:ami=hung", Fault(FaultKind.AMI_HUNG, "ipc-a")),
])
def test_hung_faults_parse_and_format_back(text, fault):
    assert parse_fault(text) == fault
    assert format_fault(fault) == text


def test_a_wrong_hang_form_lists_the_hung_forms():
    with pytest.raises(FaultSyntaxError, match="HOST:service:NAME=hung") as exc:
        parse_fault("ipc-a:service:cti=frozen")
    assert "HOST:ami=hung" in str(exc.value)


def tracker_since(fault: Fault, since: float) -> FaultTracker:
    return FaultTracker.empty().observe([fault], since)


@pytest.mark.parametrize("service", ["cti", "ivr"])
def test_rule_two_fails_over_a_hung_cti_or_ivr_after_its_own_short_debounce(service):
    hung = Fault(FaultKind.SERVICE_HUNG, "ipc-a", service)
    t = tracker_since(hung, NOW)
    early = evaluate(SITE, normal_state(), t, POLICY, NOW + 0.4)
    assert early.action is Action.NONE and "waiting for their debounce" in early.reason
    d = evaluate(SITE, normal_state(), t, POLICY, NOW + 0.5)  # service_hung: 0.5 s in rules.yaml
    assert (d.rule, d.action, d.disposition) == ("primary-cti-ivr-fault", Action.FAILOVER, Disposition.PROPOSE)
    assert d.faults == (hung,)
    stops = [s for s in d.plan.steps if s.kind is StepKind.STOP and s.host == "ipc-a"]
    fence = next(i for i, s in enumerate(d.plan.steps) if s.kind is StepKind.FENCE)
    start = next(i for i, s in enumerate(d.plan.steps) if s.kind is StepKind.START and s.service == service)
    assert {s.service for s in stops} >= {"cti", "ivr"} and fence < start


def test_each_fault_kind_has_its_own_debounce_on_the_same_rule():
    """rules.yaml: a crash (the agent saw the pid exit) needs none, a hang 0.5 s; on the standby rule a hang
    waits 1 s while a crash keeps the rule's 5 s."""
    down = tracker_since(Fault(FaultKind.SERVICE_DOWN, "ipc-a", "cti"), NOW)
    assert evaluate(SITE, normal_state(), down, POLICY, NOW).action is Action.FAILOVER
    hung = tracker_since(Fault(FaultKind.SERVICE_HUNG, "ipc-a", "cti"), NOW)
    assert evaluate(SITE, normal_state(), hung, POLICY, NOW + 0.4).action is Action.NONE
    standby_down = tracker_since(Fault(FaultKind.SERVICE_DOWN, "ipc-b", "kcxp"), NOW)
    assert evaluate(SITE, normal_state(), standby_down, POLICY, NOW + 4.9).action is Action.NONE
    assert evaluate(SITE, normal_state(), standby_down, POLICY, NOW + 5.0).action is not Action.NONE


def test_a_hung_middleware_on_the_primary_alerts_and_on_the_standby_isolates_it():
    d = evaluate(SITE, normal_state(), tracker_since(Fault(FaultKind.SERVICE_HUNG, "ipc-a", "kcxp"), NOW),
                 POLICY, NOW + 10)
    assert d.action is Action.ALERT and "no documented rule covers it" in d.reason
    d = evaluate(SITE, normal_state(), tracker_since(Fault(FaultKind.SERVICE_HUNG, "ipc-b", "kcxp"), NOW),
                 POLICY, NOW + 1.0)
    assert (d.rule, d.action) == ("standby-fault", Action.ISOLATE_STANDBY)


def test_after_a_failover_the_new_primary_hung_is_rule_two_again():
    d = evaluate(SITE, site_after_failover(), tracker_since(Fault(FaultKind.SERVICE_HUNG, "ipc-b", "ivr"), NOW),
                 POLICY, NOW + 1)
    assert d.rule == "primary-cti-ivr-fault" and d.action is Action.ALERT  # ipc-a is out: no safe target
    assert "no standby host is in service" in d.reason


def test_a_hung_asterisk_on_the_primary_fails_over_a_lost_link_isolates_the_board():
    hung = evaluate(SITE, normal_state(), tracker_since(Fault(FaultKind.AMI_HUNG, "ipc-a"), NOW), POLICY, NOW + 1)
    assert (hung.rule, hung.action) == ("primary-cti-ivr-fault", Action.FAILOVER)
    lost = evaluate(SITE, normal_state(), tracker_since(Fault(FaultKind.AMI_LOST, "ipc-a"), NOW), POLICY, NOW + 5)
    assert (lost.rule, lost.action) == ("primary-board-fault", Action.ISOLATE_BOARD)


def test_every_rule_debounce_per_kind_is_one_of_its_faults():
    for rule in POLICY.rules:
        assert set(rule.debounce_by_fault) <= rule.faults, rule.id
        for kind in rule.faults:
            assert rule.debounce(kind) == rule.debounce_by_fault.get(kind, rule.debounce_s)


def report(host: str, *, ami: bool = True, ami_hung: bool = False, **services: ServiceState) -> HostHealth:
    default = {"cti": A, "ivr": A, "kcxp": A, "kcbp": A} if host == "ipc-a" else {"kcxp": A, "kcbp": A}
    default.update({k.replace("_", "-"): v for k, v in services.items()})
    spans = tuple(SpanHealth(i, "ok", True, 30) for i in range(1, 3 if host == "ipc-a" else 2))
    return dataclasses.replace(HostHealth(host, 100.0, ami, DriverState.UP, spans, default), ami_hung=ami_hung)


def found(state=None, **reports: HostHealth) -> set[Fault]:
    reps = {"ipc-a": report("ipc-a"), "ipc-b": report("ipc-b")}
    reps.update({k.replace("_", "-"): v for k, v in reports.items()})
    return set(faults(SITE, state or normal_state(), snapshot(SITE, reps, 100.5, heartbeat_s=1.0, missed=3)))


def test_hung_is_a_fault_only_where_the_duty_runs_the_service():
    assert found(ipc_a=report("ipc-a", cti=ServiceState.HUNG)) == {Fault(FaultKind.SERVICE_HUNG, "ipc-a", "cti")}
    # cti does not run on the standby: a hung leftover there is not a fault of the site's layout
    assert found(ipc_b=report("ipc-b", cti=ServiceState.HUNG)) == set()


def test_ami_hung_versus_lost_and_an_isolated_board_does_not_hide_a_hung_asterisk():
    assert found(ipc_a=report("ipc-a", ami=False)) == {Fault(FaultKind.AMI_LOST, "ipc-a")}
    assert found(ipc_a=report("ipc-a", ami=False, ami_hung=True)) == {Fault(FaultKind.AMI_HUNG, "ipc-a")}
    assert found(primary_board_isolated(), ipc_a=report("ipc-a", ami=False)) == set()
    assert found(primary_board_isolated(), ipc_a=report("ipc-a", ami=False, ami_hung=True)) == {
        Fault(FaultKind.AMI_HUNG, "ipc-a")}
