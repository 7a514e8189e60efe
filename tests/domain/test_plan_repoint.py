"""Rule 4 complete (source plan II.2.4, III.6): a database site fault repoints the IPCs, the database connection
service and the application server, each machine's repoint followed by its readers' restarts, in the rule's order."""

from __future__ import annotations

from dataclasses import replace

from ccfo.domain.faults import Fault, FaultKind
from ccfo.domain.plan import Action, Plan, StepKind, build_repoint_db
from ccfo.domain.rules import evaluate
from ccfo.domain.site import Duty
from tests.domain.factories import NOW, active, documented_policy, normal_state, site_with_servers

SITE = site_with_servers()
ORDER = ("ipc", "db-connection", "application")


def machine_steps(plan: Plan) -> list[tuple[str, str, str | None]]:
    return [(s.host or "", s.kind.value, s.service) for s in plan.steps
            if s.kind in (StepKind.REPOINT_DB, StepKind.RESTART)]


def test_every_machine_in_the_rules_order_each_repoint_followed_by_its_readers() -> None:
    plan = build_repoint_db(SITE, normal_state(), "shanghai", "t", order=ORDER)
    assert machine_steps(plan) == [
        ("ipc-a", "repoint_db", None), ("ipc-a", "restart", "kcbp"), ("ipc-a", "restart", "cti"),
        ("ipc-b", "repoint_db", None), ("ipc-b", "restart", "kcbp"),
        ("dbconn-sz", "repoint_db", None), ("dbconn-sz", "restart", "dbconn"), ("dbconn-sz", "restart", "dbconn-pool"),
        ("app-sz", "repoint_db", None), ("app-sz", "restart", "appserver"),
        ("app-sh", "repoint_db", None),  # the backup: files follow, nothing is started
    ]
    assert all(s.target == "shanghai" for s in plan.steps if s.kind is StepKind.REPOINT_DB)
    tail = plan.steps[len(machine_steps(plan)):]
    assert tail[0].kind is StepKind.SET_STATE and tail[0].state == {"active_db": "shanghai"}
    verified = [(s.host, str(s.checks[0])) for s in tail if s.kind is StepKind.VERIFY]
    assert verified == [(m, "db:shanghai") for m in ("ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh")]
    assert tail[-1].kind is StepKind.NOTIFY


def test_the_order_is_the_rules_not_a_fixed_one() -> None:
    plan = build_repoint_db(SITE, normal_state(), "shanghai", "t", order=("application", "ipc", "db-connection"))
    repointed = [h for h, kind, _ in machine_steps(plan) if kind == "repoint_db"]
    assert repointed == ["app-sz", "app-sh", "ipc-a", "ipc-b", "dbconn-sz"]


def test_no_order_means_ipcs_then_database_connection_then_application() -> None:
    plan = build_repoint_db(SITE, normal_state(), "shanghai", "t")
    assert [h for h, kind, _ in machine_steps(plan) if kind == "repoint_db"] == [
        "ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh"]


def test_every_restart_comes_after_its_own_machines_repoint_and_before_the_next_machine() -> None:
    steps = machine_steps(build_repoint_db(SITE, normal_state(), "shanghai", "t", order=ORDER))
    current = None
    for host, kind, _ in steps:
        if kind == "repoint_db":
            current = host
        else:
            assert host == current, f"restart on {host} outside its repoint block (current {current})"


def test_kinds_not_in_the_order_and_servers_without_files_are_left_alone() -> None:
    plan = build_repoint_db(SITE, normal_state(), "shanghai", "t", order=("ipc",))
    assert {h for h, _, _ in machine_steps(plan)} == {"ipc-a", "ipc-b"}
    everything = build_repoint_db(SITE, normal_state(), "shanghai", "t", order=(*ORDER, "ta-import"))
    assert "ta-sz" not in {s.host for s in everything.steps}  # no database files: nothing to repoint


def test_an_ipc_restarts_only_the_readers_its_duty_runs() -> None:
    state = normal_state()
    state = state.with_host("ipc-b", duty=Duty.TAKEOVER).with_host("ipc-a", duty=Duty.OUT)
    steps = machine_steps(build_repoint_db(SITE, state, "shanghai", "t", order=ORDER))
    assert [s for s in steps if s[0] == "ipc-a"] == [("ipc-a", "repoint_db", None)]
    assert [s for s in steps if s[0] == "ipc-b"] == [
        ("ipc-b", "repoint_db", None), ("ipc-b", "restart", "kcbp-replica"), ("ipc-b", "restart", "cti")]


def test_the_database_rule_passes_its_order_to_the_plan() -> None:
    policy = documented_policy()
    rules = tuple(replace(r, repoint_order=("application", "ipc")) if r.action is Action.REPOINT_DB else r
                  for r in policy.rules)
    policy = replace(policy, rules=rules)
    d = evaluate(SITE, normal_state(), active(Fault(FaultKind.DB_DOWN, "shenzhen")), policy, NOW)
    assert d.plan is not None and d.action is Action.REPOINT_DB
    assert [h for h, kind, _ in machine_steps(d.plan) if kind == "repoint_db"] == [
        "app-sz", "app-sh", "ipc-a", "ipc-b"]



def test_the_policy_names_its_repoint_order() -> None:
    policy = documented_policy()
    assert policy.repoint_order is None  # no order written: the builder's default
    ordered = replace(policy, rules=tuple(replace(r, repoint_order=("db-connection", "ipc", "application"))
                                          if r.action is Action.REPOINT_DB else r for r in policy.rules))
    assert ordered.repoint_order == ("db-connection", "ipc", "application")
