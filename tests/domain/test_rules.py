"""Every documented rule and every extra case: the decision and the plan it produces."""

from __future__ import annotations

import pytest

from ccfo.domain.faults import Fault, FaultKind, FaultTracker, FlapPolicy
from ccfo.domain.plan import (
    Action,
    Plan,
    PlanRefused,
    StepKind,
    build_failback,
    build_failover,
    build_switchover,
    critical_start_index,
)
from ccfo.domain.rules import Disposition, NoSafeTarget, evaluate, failover_target
from ccfo.domain.site import Duty
from ccfo.domain.state import Mode, SiteState
from tests.domain.factories import (
    NOW,
    active,
    board_down,
    db_down,
    documented_policy,
    example_site,
    normal_state,
    primary_board_isolated,
    site_after_failover,
    span_alarm,
    standby_out,
    svc_down,
    unreachable,
)

SITE = example_site()
POLICY = documented_policy()


def decide(state: SiteState, *faults: Fault, tracker: FaultTracker | None = None, now: float = NOW):
    return evaluate(SITE, state, tracker or active(*faults), POLICY, now)


def kinds(plan: Plan) -> list[tuple[str, str | None, str | None]]:
    return [(s.kind.value, s.host, s.service or s.target or ",".join(s.targets) or None) for s in plan.steps]


def index(plan: Plan, kind: StepKind, host: str | None = None, service: str | None = None) -> int:
    for i, s in enumerate(plan.steps):
        if s.kind is kind and (host is None or s.host == host) and (service is None or s.service == service):
            return i
    raise AssertionError(f"no {kind} {host} {service} in {kinds(plan)}")


# --- Rule 1: primary board line or driver fault -------------------------------------------------

@pytest.mark.parametrize("fault", [span_alarm("ipc-a", 1), board_down("ipc-a"),
                                   Fault(FaultKind.DCHANNEL_DOWN, "ipc-a", "2"), Fault(FaultKind.AMI_LOST, "ipc-a")])
def test_primary_board_fault_isolates_the_board_only(fault):
    d = decide(normal_state(), fault)
    assert (d.rule, d.action, d.disposition) == ("primary-board-fault", Action.ISOLATE_BOARD, Disposition.PROPOSE)
    assert d.plan is not None
    assert [s.kind for s in d.plan.steps if s.host == "ipc-a"] == [StepKind.ISOLATE_BOARD, StepKind.VERIFY]
    assert not [s for s in d.plan.steps if s.kind in (StepKind.STOP, StepKind.START)], "other services keep running"
    assert d.plan.steps[2].state == {"board_isolated": {"ipc-a": True}}


def test_board_fault_on_an_already_isolated_board_does_nothing():
    d = decide(primary_board_isolated(), span_alarm("ipc-a", 2))
    assert d.action is Action.NONE and d.plan is None
    assert "already isolated" in d.reason


# --- Rule 2: primary CTI or IVR fault -------------------------------------------------------------

@pytest.mark.parametrize("service", ["cti", "ivr"])
def test_primary_cti_or_ivr_fault_fails_over_in_the_documented_order(service):
    d = decide(normal_state(), svc_down("ipc-a", service))
    assert (d.rule, d.action) == ("primary-cti-ivr-fault", Action.FAILOVER)
    plan = d.plan
    assert plan is not None
    # stop all services on the primary (best effort), then the fence confirms CTI/IVR stopped
    stops_a = [s.service for s in plan.steps if s.kind is StepKind.STOP and s.host == "ipc-a"]
    assert sorted(stops_a) == ["cti", "ivr", "kcbp", "kcxp"]
    fence = index(plan, StepKind.FENCE, "ipc-a")
    assert [str(c) for c in plan.steps[fence].checks] == ["inactive:cti", "inactive:ivr"]
    assert max(i for i, s in enumerate(plan.steps) if s.kind is StepKind.STOP and s.host == "ipc-a") < fence
    # on the standby: stop KCXP/KCBP, start the replicas, then CTI and IVR
    order = [(s.kind.value, s.service) for s in plan.steps if s.host == "ipc-b" and s.service]
    assert order == [("stop", "kcxp"), ("stop", "kcbp"), ("start", "kcbp-replica"), ("start", "kcxp-replica"),
                     ("start", "cti"), ("start", "ivr")]
    assert fence < index(plan, StepKind.STOP, "ipc-b", "kcxp")
    route = index(plan, StepKind.ROUTE_INBOUND)
    assert plan.steps[route].targets == ("ipc-b",)
    assert index(plan, StepKind.START, "ipc-b", "ivr") < index(plan, StepKind.VERIFY, "ipc-b") < route, \
        "new calls go to ipc-b only once its CTI/IVR are verified serving"
    assert plan.steps[index(plan, StepKind.SET_STATE)].state == {"duties": {"ipc-b": "takeover", "ipc-a": "out"}}


def test_primary_middleware_fault_has_no_documented_rule_and_alerts():
    d = decide(normal_state(), svc_down("ipc-a", "kcxp"))
    assert d.action is Action.ALERT and d.disposition is Disposition.REPORT
    assert "no documented rule" in d.reason


def test_roles_swap_after_failover_so_the_rules_keep_working():
    after = site_after_failover()
    # a CTI crash on the new primary (ipc-b): the old primary is out, so there is no safe target
    d = decide(after, svc_down("ipc-b", "cti"))
    assert d.rule == "primary-cti-ivr-fault" and d.action is Action.ALERT
    assert "no safe target" in d.reason
    # a span alarm on the new primary: rule 1 applies to ipc-b now
    d = decide(after, span_alarm("ipc-b", 1))
    assert d.rule == "primary-board-fault"
    assert d.action is Action.ALERT, "isolating the only board in service would leave no channels"
    # once ipc-a is repaired and back as standby, a CTI crash on ipc-b fails over to ipc-a
    repaired = after.with_host("ipc-a", duty=Duty.STANDBY)
    d = decide(repaired, svc_down("ipc-b", "ivr"))
    assert d.action is Action.FAILOVER
    assert d.plan is not None and d.plan.meta == {"from": "ipc-b", "to": "ipc-a"}
    starts = [s.service for s in d.plan.steps if s.kind is StepKind.START and s.host == "ipc-a"]
    assert starts == ["cti", "ivr"], "ipc-a as standby already runs KCXP/KCBP; it takes the primary layout"


def test_fault_on_a_host_already_out_of_service_does_nothing():
    d = decide(site_after_failover(), svc_down("ipc-a", "kcxp"), span_alarm("ipc-a", 1))
    assert d.action is Action.NONE
    assert all("already out of service" in n for n in d.notes)


# --- primary unreachable: fence first -------------------------------------------------------------

def test_primary_unreachable_fences_before_anything_starts():
    d = decide(normal_state(), unreachable("ipc-a"))
    assert (d.rule, d.action) == ("primary-unreachable", Action.FAILOVER)
    assert d.plan is not None
    assert d.plan.steps[0].kind is StepKind.FENCE and d.plan.steps[0].host == "ipc-a"
    assert not [s for s in d.plan.steps if s.host == "ipc-a" and s.kind is StepKind.STOP], "cannot stop a silent host"


# --- Rule 3: standby fault --------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [svc_down("ipc-b", "kcxp"), board_down("ipc-b"), span_alarm("ipc-b", 1),
                                   unreachable("ipc-b")])
def test_standby_fault_stops_all_on_the_standby_and_routes_to_the_primary(fault):
    d = decide(normal_state(), fault)
    assert (d.rule, d.action) == ("standby-fault", Action.ISOLATE_STANDBY)
    plan = d.plan
    assert plan is not None
    assert {s.service for s in plan.steps if s.kind is StepKind.STOP} == {"kcxp", "kcbp"}
    assert all(s.host == "ipc-b" for s in plan.steps if s.kind in (StepKind.STOP, StepKind.ISOLATE_BOARD))
    assert plan.steps[index(plan, StepKind.ROUTE_INBOUND)].targets == ("ipc-a",)
    assert not [s for s in plan.steps if s.kind is StepKind.START], "nothing starts"
    assert plan.steps[index(plan, StepKind.SET_STATE)].state == {"duties": {"ipc-b": "out"},
                                                                  "board_isolated": {"ipc-b": True}}


# --- Rule 4: database site ----------------------------------------------------------------------

def test_database_site_fault_repoints_every_host_and_restarts_readers():
    d = decide(normal_state(), db_down("shenzhen"))
    assert (d.rule, d.action) == ("database-site-fault", Action.REPOINT_DB)
    plan = d.plan
    assert plan is not None
    repoints = [(s.host, s.target) for s in plan.steps if s.kind is StepKind.REPOINT_DB]
    assert repoints == [("ipc-a", "shanghai"), ("ipc-b", "shanghai")]
    restarts = {(s.host, s.service) for s in plan.steps if s.kind is StepKind.RESTART}
    # readers that run now: ipc-a (primary) runs kcbp and cti; ipc-b (standby) runs kcbp only
    assert restarts == {("ipc-a", "kcbp"), ("ipc-a", "cti"), ("ipc-b", "kcbp")}
    for host in ("ipc-a", "ipc-b"):
        assert index(plan, StepKind.REPOINT_DB, host) < index(plan, StepKind.RESTART, host)
    assert plan.steps[index(plan, StepKind.SET_STATE)].state == {"active_db": "shanghai"}


def test_replica_database_down_is_reported_not_acted_on():
    d = decide(normal_state(), db_down("shanghai"))
    assert d.action is Action.ALERT and "replica site down" in d.reason


def test_both_database_sites_down_alerts_only():
    d = decide(normal_state(), db_down("shenzhen"), db_down("shanghai"))
    assert d.rule == "database-site-fault" and d.action is Action.ALERT
    assert "down too" in d.reason


# --- extra cases ------------------------------------------------------------------------------------

def test_both_hosts_faulty_means_no_safe_target_and_alert_only():
    d = decide(normal_state(), svc_down("ipc-a", "cti"), board_down("ipc-b"))
    assert d.rule == "primary-cti-ivr-fault"
    assert d.action is Action.ALERT and d.disposition is Disposition.REPORT
    assert d.plan is not None and [s.kind for s in d.plan.steps] == [StepKind.NOTIFY]
    assert "ipc-b has faults of its own" in d.reason


def test_primary_board_fault_while_standby_is_out_alerts_instead_of_going_dark():
    d = decide(standby_out(), span_alarm("ipc-a", 1))
    assert d.action is Action.ALERT and "no board in service" in d.reason


def test_failover_to_a_standby_with_an_isolated_board_is_unsafe():
    state = normal_state().with_host("ipc-b", board_isolated=True)
    d = decide(state, svc_down("ipc-a", "ivr"))
    assert d.action is Action.ALERT and "board isolated" in d.reason


def test_fault_that_clears_before_its_debounce_never_fires():
    fault = svc_down("ipc-a", "cti")
    t = FaultTracker.empty().observe([fault], NOW)
    d = decide(normal_state(), tracker=t, now=NOW + 2.9)  # rule debounce is 3 s
    assert d.action is Action.NONE and "waiting for their debounce" in d.reason
    t = t.observe([], NOW + 2.9)
    d = decide(normal_state(), tracker=t, now=NOW + 10)
    assert d.action is Action.NONE and d.reason == "all clear"


def test_fault_fires_exactly_at_its_debounce():
    t = FaultTracker.empty().observe([svc_down("ipc-a", "cti")], NOW)
    assert decide(normal_state(), tracker=t, now=NOW + 3.0).action is Action.FAILOVER


def test_flapping_fault_is_reported_not_acted_on():
    fault = span_alarm("ipc-a", 1)
    t = FaultTracker.empty(FlapPolicy(window_s=300, max_transitions=4))
    for i in range(5):  # present/clear five times in a minute
        t = t.observe([fault], NOW + i * 10).observe([], NOW + i * 10 + 5)
    t = t.observe([fault], NOW + 60)
    assert fault in t.flapping()
    d = decide(normal_state(), tracker=t, now=NOW + 120)
    assert d.disposition is Disposition.REPORT and d.action is Action.ALERT
    assert "flapping" in d.reason


def test_flapping_ends_when_the_transitions_leave_the_window():
    fault = span_alarm("ipc-a", 1)
    t = FaultTracker.empty(FlapPolicy(window_s=300, max_transitions=4))
    for i in range(5):
        t = t.observe([fault], NOW + i * 10).observe([], NOW + i * 10 + 5)
    t = t.observe([fault], NOW + 1000)
    assert fault not in t.flapping()


def test_first_rule_in_order_wins_and_the_rest_wait():
    d = decide(normal_state(), span_alarm("ipc-a", 1), svc_down("ipc-a", "cti"), db_down("shenzhen"))
    assert d.rule == "primary-cti-ivr-fault"
    assert any("wait for the next cycle" in n for n in d.notes)


# --- modes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "disposition"), [
    (Mode.AUTOMATIC, Disposition.EXECUTE),
    (Mode.SUPERVISED, Disposition.PROPOSE),
    (Mode.MANUAL, Disposition.REPORT),
    (Mode.MAINTENANCE, Disposition.REPORT),
])
def test_each_mode_decides_the_same_plan_and_differs_in_what_it_may_do(mode, disposition):
    d = decide(normal_state(mode), svc_down("ipc-a", "cti"))
    assert d.action is Action.FAILOVER and d.disposition is disposition
    assert d.approval_required is (disposition is Disposition.PROPOSE)
    assert d.plan is not None and d.plan.steps  # the plan is always shown


def test_automatic_mode_holds_down_after_an_automatic_action():
    state = SiteState.normal(SITE, Mode.AUTOMATIC)
    recent = SiteState(state.hosts, state.active_db, Mode.AUTOMATIC, last_automatic_at=NOW - 60)
    d = decide(recent, span_alarm("ipc-a", 1))
    assert d.disposition is Disposition.PROPOSE and "hold-down" in d.reason
    old = SiteState(state.hosts, state.active_db, Mode.AUTOMATIC, last_automatic_at=NOW - 601)
    assert decide(old, span_alarm("ipc-a", 1)).disposition is Disposition.EXECUTE


# --- operator plans ----------------------------------------------------------------------------------

def test_operator_failover_matches_rule_two():
    plan = build_failover(SITE, normal_state(), "ipc-b", "operator test")
    auto = decide(normal_state(), svc_down("ipc-a", "cti")).plan
    assert auto is not None
    assert kinds(plan)[:-1] == kinds(auto)[:-1]  # all but the notify text


def test_operator_failover_to_the_active_host_is_refused():
    with pytest.raises(PlanRefused, match="already the active host"):
        build_failover(SITE, normal_state(), "ipc-a", "x")


def test_planned_switchover_drains_before_anything_stops():
    plan = build_switchover(SITE, normal_state(), "ipc-b", 120, "planned")
    route, drain = index(plan, StepKind.ROUTE_INBOUND), index(plan, StepKind.WAIT_DRAINED, "ipc-a")
    assert drain == 0 and plan.steps[drain].timeout_s == 120, "the old host drains while it still serves"
    first_stop = min(i for i, s in enumerate(plan.steps) if s.kind is StepKind.STOP)
    assert drain < first_stop
    # new calls go to ipc-b (listed first: the front tries it first) only once its CTI/IVR are verified serving
    assert index(plan, StepKind.START, "ipc-b", "ivr") < index(plan, StepKind.VERIFY, "ipc-b") < route
    assert plan.steps[route].targets == ("ipc-b", "ipc-a") and len([s for s in plan.steps
                                                              if s.kind is StepKind.ROUTE_INBOUND]) == 1
    # the old primary stays in service as the standby: only CTI/IVR stop there
    assert {s.service for s in plan.steps if s.kind is StepKind.STOP and s.host == "ipc-a"} == {"cti", "ivr"}
    assert plan.steps[index(plan, StepKind.SET_STATE)].state == {"duties": {"ipc-b": "takeover", "ipc-a": "standby"}}


def test_failback_after_failover_brings_the_primary_back_and_drains_the_standby():
    plan = build_failback(SITE, site_after_failover(), 60, "repaired")
    assert plan.action is Action.FAILBACK
    assert plan.steps[0].kind is StepKind.RESTORE_BOARD and plan.steps[0].host == "ipc-a"
    assert index(plan, StepKind.START, "ipc-a", "kcxp") < index(plan, StepKind.WAIT_DRAINED, "ipc-b")
    assert index(plan, StepKind.FENCE, "ipc-b") < index(plan, StepKind.START, "ipc-a", "cti")
    assert plan.steps[index(plan, StepKind.SET_STATE)].state["duties"] == {"ipc-a": "primary", "ipc-b": "standby"}


def test_failback_restores_an_out_standby():
    plan = build_failback(SITE, standby_out(), 60, "repaired")
    assert [(s.kind.value, s.service) for s in plan.steps if s.host == "ipc-b"][:3] == [
        ("restore_board", None), ("start", "kcbp"), ("start", "kcxp")]


def _end_state(start: SiteState, plan) -> SiteState:  # type: ignore[no-untyped-def]
    for step in plan.steps:
        if step.kind is StepKind.SET_STATE and step.state:
            start = start.apply(step.state)
    return start


def test_every_failback_ends_in_the_normal_state_boards_included():
    # Found by the 200-run campaign (seed 2026, run 35): after a switchover to ipc-b, ipc-b's board was
    # isolated (rule 3, ipc-b then active); the failback switched CTI/IVR home but left that board out, and
    # the site stayed degraded.
    switched = normal_state().with_host("ipc-a", duty=Duty.STANDBY).with_host("ipc-b", duty=Duty.TAKEOVER)
    isolated = switched.with_host("ipc-b", board_isolated=True)
    plan = build_failback(SITE, isolated, 60, "repaired")
    assert ("restore_board", "ipc-b") in [(s.kind.value, s.host) for s in plan.steps]
    assert index(plan, StepKind.START, "ipc-a", "ivr") < index(plan, StepKind.RESTORE_BOARD, "ipc-b")
    assert _end_state(isolated, plan).is_normal(SITE)
    for start in (switched, site_after_failover(), standby_out(),
                  site_after_failover().with_host("ipc-b", board_isolated=True)):
        assert _end_state(start, build_failback(SITE, start, 60, "repaired")).is_normal(SITE), start


def test_failback_in_normal_state_is_refused():
    with pytest.raises(PlanRefused, match="already in its normal state"):
        build_failback(SITE, normal_state(), 60, "x")


def test_critical_start_index_finds_cti_starts():
    plan = build_failover(SITE, normal_state(), "ipc-b", "x")
    assert critical_start_index(plan, "ipc-b", ["cti", "ivr"]) == index(plan, StepKind.START, "ipc-b", "cti")
    assert critical_start_index(plan, "ipc-a", ["cti", "ivr"]) is None


def test_no_safe_failover_target_is_a_typed_answer():
    """Regression: `_failover_target` said "unsafe" with a "!"-prefixed string, which any caller could take
    for a host id."""
    after = site_after_failover()  # ipc-b took over, ipc-a is out: no standby left
    assert failover_target(SITE, after, "ipc-b", {}) == NoSafeTarget("no standby host is in service")
    present = {svc_down("ipc-b", "cti"): NOW}
    faulty = failover_target(SITE, normal_state(), "ipc-a", present)
    assert faulty == NoSafeTarget("ipc-b has faults of its own (ipc-b:service:cti=down)")
    assert failover_target(SITE, primary_board_isolated().with_host("ipc-b", board_isolated=True), "ipc-a", {}) \
        == NoSafeTarget("ipc-b has its board isolated")
    assert failover_target(SITE, normal_state(), "ipc-a", {}) == "ipc-b"


@pytest.mark.parametrize("build", ["switchover", "failback"])
def test_the_switch_gap_holds_only_the_cti_ivr_moves(build):
    """From the first CTI/IVR stop to the route step, new calls are held by the SIP front: only the stops,
    the fence, the starts and the verify of CTI/IVR are in there; middleware is readied before, tidied after."""
    if build == "switchover":
        plan = build_switchover(SITE, normal_state(), "ipc-b", 30, "planned")
        source, target = "ipc-a", "ipc-b"
    else:
        failed_over = build_failover(SITE, normal_state(), "ipc-b", "x")
        state = normal_state().apply(next(s.state for s in failed_over.steps if s.kind is StepKind.SET_STATE))
        plan = build_failback(SITE, state, 5, "repaired")
        source, target = "ipc-b", "ipc-a"
    first_stop = index(plan, StepKind.STOP, source, "ivr")
    route = index(plan, StepKind.ROUTE_INBOUND)
    gap = plan.steps[first_stop:route]
    assert all(s.service in ("cti", "ivr") for s in gap if s.kind in (StepKind.STOP, StepKind.START)), gap
    assert [s.kind for s in gap].count(StepKind.FENCE) == 1 and gap[-1].kind is StepKind.VERIFY
    assert index(plan, StepKind.FENCE, source) < index(plan, StepKind.START, target, "cti")
    assert plan.steps[route].targets[0] == target


def test_debounce_per_fault_kind_overrides_the_rules_own():
    from dataclasses import replace as dc_replace
    base = next(r for r in POLICY.rules if r.id == "standby-fault")
    rule = dc_replace(base, debounce_by_fault={FaultKind.SERVICE_DOWN: 0.0})
    assert rule.debounce(FaultKind.SERVICE_DOWN) == 0.0
    assert rule.debounce(FaultKind.SPAN_ALARM) == base.debounce_s > 0
