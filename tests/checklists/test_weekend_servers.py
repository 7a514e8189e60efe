"""The weekend upgrade's Saturday afternoon ("switch the database and application server to the test
environment", source plan II.1) as executable steps on the managed servers: the shipped checklist's
`repoint-db-test` action runs rule 4's plan on the executor over the in-memory world (tests/controller/fakeworld:
a test double for the agents, which are remote), so the IPCs', the application servers' and the database
connection service's whitelisted files name the test environment and their readers restart; its rollback
(and the step `repoint-db-back`) puts every machine back as it was. The live weekend on the lab
(tests/checklists/test_lab_weekend.py) runs the same steps on the IPC pair."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.health import ServiceState
from ccfo.domain.state import SiteState
from controller.checklists.checks import build_plan, evaluate
from controller.checklists.loader import load_checklist
from controller.checklists.model import StepKind
from controller.checklists.specs import ActionKind, ActionSpec, CheckKind, CheckSpec
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")
WEEKEND = REPO / "config" / "checklists" / "weekend-upgrade.yaml"
WITH_DB_FILES = ("app-sz", "app-sh", "dbconn-sz")  # site.yaml servers with db_config_files


def world() -> FakeWorld:
    return FakeWorld(CFG.site, SiteState.normal(CFG.site))


def snapshot(w: FakeWorld) -> dict[str, Any]:
    machines = {**w.hosts, **w.servers}
    return {n: copy.deepcopy((m.services, m.jobs, m.files, m.db_site)) for n, m in machines.items()}


async def run(tmp: Path, w: FakeWorld, spec: ActionSpec, tag: str) -> list[tuple[str, str, str | None]]:
    """Run one action step's plan to its end; the agent actions it made, in order."""
    plan = build_plan(spec, CFG.site, SiteState.normal(CFG.site), "weekend test", repoint_order=CFG.repoint_order)
    journal, store = Journal(tmp / f"{tag}-j.sqlite"), Store(tmp / f"{tag}-s.sqlite")
    first = len(w.log)
    try:
        rec = store.add_plan(plan, status=PlanStatus.RUNNING, source="checklist", requested_by="t", reason="r",
                             now=1.0)

        async def on_state(s: SiteState) -> None:
            pass
        out = await Executor(w, w, w, journal, store, host_ids=CFG.site.host_ids).run(rec, SiteState.normal(CFG.site),
                                                                                    on_state)
        assert out.status is PlanStatus.FINISHED, out.error
        assert len(journal.query(plan_id=rec.id, kinds="step_finished", limit=None)) == len(plan.steps)
    finally:
        journal.close()
        store.close()
    return w.log[first:]


def test_saturday_afternoon_is_automatic_with_a_way_back_and_only_watching_stays_manual() -> None:
    c = load_checklist(WEEKEND, CFG.site)
    afternoon = c.phase("saturday-afternoon")
    forward, back = c.step("repoint-db-test"), c.step("repoint-db-back")
    assert forward.kind is back.kind is StepKind.ACTION and forward.confirm, "an operator confirms each plan"
    assert isinstance(forward.spec, ActionSpec) and forward.spec.action is ActionKind.REPOINT_DB
    assert (forward.spec.to, back.spec.to) == ("shanghai", "shenzhen")  # type: ignore[union-attr]
    assert forward.rollback is not None and forward.rollback.kind is StepKind.ACTION
    assert forward.rollback.spec == ActionSpec(ActionKind.REPOINT_DB, "shenzhen")
    assert "application server" in forward.title and "application server" in forward.rollback.title
    assert [s.id for s in afternoon.steps if s.kind is StepKind.MANUAL] == ["watch-services"]
    checks = [s.spec for s in afternoon.steps if s.kind is StepKind.CHECK and isinstance(s.spec, CheckSpec)]
    assert [x.value for x in checks if x.check is CheckKind.DB_SITE] == ["shanghai", "shenzhen"]


@pytest.mark.asyncio
async def test_the_step_repoints_the_application_server_and_the_database_then_its_rollback_restores_them(tmp_path):
    c = load_checklist(WEEKEND, CFG.site)
    w = world()
    before = snapshot(w)
    assert {m: w.machine(m).db_site for m in ("ipc-a", "ipc-b", *WITH_DB_FILES)} == dict.fromkeys(
        ("ipc-a", "ipc-b", *WITH_DB_FILES), "shenzhen")
    step = c.step("repoint-db-test")
    log = await run(tmp_path, w, step.spec, "forward")  # type: ignore[arg-type]
    assert {m: w.machine(m).db_site for m in ("ipc-a", "ipc-b", *WITH_DB_FILES)} == dict.fromkeys(
        ("ipc-a", "ipc-b", *WITH_DB_FILES), "shanghai")
    acts = [(m, a, x) for m, a, x in log if a in ("repoint_db", "restart")]
    # each machine's files, then the services that read them (rules.yaml repoint_order: ipc, db-connection,
    # application); a backup server's files follow but it is not started (it is kept ready)
    i = acts.index
    assert i(("dbconn-sz", "repoint_db", None)) + 1 == i(("dbconn-sz", "restart", "dbconn"))
    assert i(("app-sz", "repoint_db", None)) + 1 == i(("app-sz", "restart", "appserver"))
    assert i(("ipc-a", "repoint_db", None)) < i(("dbconn-sz", "repoint_db", None)) < i(("app-sz", "repoint_db", None))
    assert ("app-sh", "repoint_db", None) in acts and ("app-sh", "restart", "appserver") not in acts
    assert w.servers["app-sh"].services["appserver"] is ServiceState.INACTIVE
    untouched = {m for m, _, _ in log} & {"ta-sz", "ta-sh", "sms-sz", "sms-sh", "cs-sz", "cs-sh"}
    assert not untouched, "servers without database files are not part of the repoint"
    # the check that follows sees the servers too (the status the API serves)
    status = {"hosts": {h: {"reachable": True, "db_site": w.hosts[h].db_site} for h in w.hosts},
              "servers": {n: {"reachable": True, "db_site": w.servers[n].db_site if n in WITH_DB_FILES else None}
                          for n in w.servers}}
    assert evaluate(c.step("db-on-test").spec, status, {})[0]  # type: ignore[arg-type]
    assert step.rollback is not None
    await run(tmp_path, w, step.rollback.spec, "rollback")  # type: ignore[arg-type]
    assert snapshot(w) == before, "the rollback put every machine's database files back (services as they were)"
    await run(tmp_path, w, step.spec, "again")  # type: ignore[arg-type]
    await run(tmp_path, w, c.step("repoint-db-back").spec, "back")  # type: ignore[arg-type]
    assert snapshot(w) == before, "the afternoon's own way back (repoint-db-back) does the same"


def test_the_database_check_names_a_server_that_still_points_elsewhere() -> None:
    status = {"hosts": {"ipc-a": {"reachable": True, "db_site": "shanghai"}},
              "servers": {"app-sz": {"reachable": True, "db_site": "shenzhen"},
                          "ta-sz": {"reachable": True, "db_site": None},  # no database files: not judged
                          "app-sh": {"reachable": False, "db_site": "shenzhen"}}}  # unreachable: like a host
    ok, seen = evaluate(CheckSpec(CheckKind.DB_SITE, value="shanghai"), status, {})
    assert not ok and "app-sz points at shenzhen" in seen and "ta-sz" not in seen and "app-sh" not in seen
    status["servers"]["app-sz"]["db_site"] = "shanghai"
    assert evaluate(CheckSpec(CheckKind.DB_SITE, value="shanghai"), status, {})[0]
