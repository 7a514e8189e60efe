"""The named switches (switches.yaml) on the executor over the in-memory world, and through the operator API:
each switch changes exactly what it says on the named servers, journaled step by step like a failover, and its
inverse puts every machine's services, jobs, switch files and database back as they were."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.plan import Action, StepKind
from ccfo.domain.state import SiteState
from ccfo.domain.switches import build_switch
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld
from tests.controller.test_api import api, auth  # noqa: F401 - the API fixture
from tests.support import async_wait_until

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")
JOURNALED = {"operator_action", "plan_started", "step_started", "step_finished", "plan_finished"}


def world() -> FakeWorld:
    w = FakeWorld(CFG.site, SiteState.normal(CFG.site))
    for name, server in CFG.site_model.servers.items():  # the switch files hold their Shenzhen values
        w.servers[name].files = {f.id: "shenzhen" for f in server.switch_files}
    return w


def snapshot(w: FakeWorld) -> dict[str, Any]:
    machines = {**w.hosts, **w.servers}
    return {name: copy.deepcopy((m.services, m.jobs, m.files, m.db_site)) for name, m in machines.items()}


async def run(tmp: Path, w: FakeWorld, state: SiteState, name: str, inverse: bool = False):
    switch = CFG.switch(name)
    assert switch is not None
    plan = build_switch(CFG.site, state, switch, "test", inverse=inverse, repoint_order=CFG.repoint_order)
    tmp.mkdir(parents=True)
    journal, store = Journal(tmp / "j.sqlite"), Store(tmp / "s.sqlite")
    try:
        rec = store.add_plan(plan, status=PlanStatus.RUNNING, source="operator", requested_by="t", reason="r",
                             now=1.0)

        async def on_state(s: SiteState) -> None:
            pass
        outcome = await Executor(w, w, w, journal, store, host_ids=CFG.site.host_ids).run(rec, state, on_state)
        finished = journal.query(plan_id=rec.id, kinds="step_finished", limit=None)
        return plan, outcome, finished
    finally:
        journal.close()
        store.close()


def test_the_plan_of_a_switch_is_its_steps_then_a_notice_and_repoint_db_is_rule_4() -> None:
    state = SiteState.normal(CFG.site)
    sms = build_switch(CFG.site, state, CFG.switch("sms-email-from-shanghai"), "why")  # type: ignore[arg-type]
    assert sms.action is Action.SWITCH and sms.title == "Send SMS and e-mail from Shanghai again"
    assert [s.describe() for s in sms.steps] == [
        "enable job sms-send on sms-sh", "enable job mail-send on sms-sh",
        "back up and point sms-gateway on app-sz at shanghai (then its reload command)",
        "restart appserver on app-sz",
        "disable job sms-send on sms-sz (best effort; a later step guarantees it)",
        "disable job mail-send on sms-sz (best effort; a later step guarantees it)",
        "notify: switch sms-email-from-shanghai done: Send SMS and e-mail from Shanghai again"]
    db = build_switch(CFG.site, state, CFG.switch("database-to-shanghai"), "why",  # type: ignore[arg-type]
                      repoint_order=CFG.repoint_order)
    repoints = [s.host for s in db.steps if s.kind is StepKind.REPOINT_DB]
    assert repoints == ["ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh"] and db.meta == {
        "switch": "database-to-shanghai", "inverse": False}
    assert any(s.kind is StepKind.SET_STATE and (s.state or {}).get("active_db") == "shanghai" for s in db.steps)
    back = build_switch(CFG.site, state, CFG.switch("database-to-shanghai"), "why", inverse=True)  # type: ignore[arg-type]
    assert back.meta["inverse"] and {s.target for s in back.steps if s.kind is StepKind.REPOINT_DB} == {"shenzhen"}


@pytest.mark.asyncio
@pytest.mark.parametrize(("name", "changed"), [
    ("customer-service-to-shanghai", {"cs-sh": ({"apache2": "active", "mysql": "active"}, {}, {"cs-entry": "shanghai"}),
                                      "cs-sz": (None, {}, {"cs-entry": "shanghai"})}),
    ("sms-email-from-shanghai", {"sms-sh": ({}, {"sms-send": True, "mail-send": True}, {}),
                                 "sms-sz": ({}, {"sms-send": False, "mail-send": False}, {}),
                                 "app-sz": (None, {}, {"sms-gateway": "shanghai"})}),
    ("app-shanghai-restart", {"app-sh": ({"appserver": "active"}, {}, {"sms-gateway": "shenzhen"})}),
])
async def test_each_switch_changes_what_it_says_and_its_inverse_restores_every_machine(tmp_path, name, changed):
    w = world()
    before = snapshot(w)
    state = SiteState.normal(CFG.site)
    plan, outcome, finished = await run(tmp_path / "fwd", w, state, name)
    assert outcome.status is PlanStatus.FINISHED, outcome.error
    assert len(finished) == len(plan.steps), "every step journaled as finished"
    after = snapshot(w)
    for machine, (services, jobs, files) in changed.items():
        if services is not None:
            assert {k: v.value for k, v in after[machine][0].items()} == services, machine
        assert after[machine][1] == {**before[machine][1], **jobs}, machine
        assert after[machine][2] == {**before[machine][2], **files}, machine
    untouched = set(after) - set(changed) - ({"app-sz"} if name == "sms-email-from-shanghai" else set())
    assert {m: after[m] for m in untouched} == {m: before[m] for m in untouched}, "nothing else moved"
    _, outcome, _ = await run(tmp_path / "back", w, outcome.state, name, inverse=True)
    assert outcome.status is PlanStatus.FINISHED, outcome.error
    assert snapshot(w) == before, "the inverse restores every machine"


@pytest.mark.asyncio
async def test_the_database_switch_and_its_inverse_repoint_every_machine_and_record_the_database(tmp_path):
    w = world()
    before = snapshot(w)
    _, outcome, _ = await run(tmp_path / "fwd", w, SiteState.normal(CFG.site), "database-to-shanghai")
    assert outcome.status is PlanStatus.FINISHED and outcome.state.active_db == "shanghai"
    assert {m: w.machine(m).db_site for m in ("ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh")} == dict.fromkeys(
        ("ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh"), "shanghai")
    _, outcome, _ = await run(tmp_path / "back", w, outcome.state, "database-to-shanghai", inverse=True)
    assert outcome.status is PlanStatus.FINISHED and outcome.state.active_db == "shenzhen"
    assert {m: s[3] for m, s in snapshot(w).items()} == {m: s[3] for m, s in before.items()}


@pytest.mark.asyncio
async def test_a_best_effort_step_on_the_failed_machine_does_not_fail_the_switch_but_a_required_one_does(tmp_path):
    w = world()
    w.servers["cs-sz"].reachable = False  # the new customer-service system is the fault
    _, outcome, _ = await run(tmp_path / "a", w, SiteState.normal(CFG.site), "customer-service-to-shanghai")
    assert outcome.status is PlanStatus.FINISHED and w.servers["cs-sh"].files == {"cs-entry": "shanghai"}
    w.servers["sms-sh"].reachable = False
    _, outcome, _ = await run(tmp_path / "b", w, SiteState.normal(CFG.site), "sms-email-from-shanghai")
    assert outcome.status is PlanStatus.FAILED and outcome.error is not None
    assert outcome.error.startswith("step 1 (enable job sms-send on sms-sh) failed: AgentUnreachable: sms-sh")
    assert w.servers["app-sz"].files == {"sms-gateway": "shenzhen"}, "nothing after the failed step ran"


@pytest.mark.asyncio
async def test_the_api_lists_dry_runs_runs_and_inverts_a_switch_as_a_journaled_plan(api):  # noqa: F811
    h = api.h
    for name, server in h.cfg.site_model.servers.items():
        h.world.servers[name].files = {f.id: "shenzhen" for f in server.switch_files}
    r = await api.get("/api/v1/switches", headers=auth(api, "viewer"))
    assert r.status_code == 200 and r.json()["switches"][0]["id"] == "customer-service-to-shanghai"
    listed = r.json()["switches"][2]
    assert listed["steps"][0]["text"] == "start appserver on app-sh"
    assert listed["inverse"][0]["text"] == "stop appserver on app-sh"
    path = "/api/v1/switches/app-shanghai-restart"
    r = await api.post(path, json={"reason": "Shenzhen app server down"}, headers=auth(api, "viewer"))
    assert r.status_code == 403, "a switch needs an operator"
    r = await api.post("/api/v1/switches/no-such", json={"reason": "try it"}, headers=auth(api, "operator"))
    assert r.status_code == 404 and "unknown switch 'no-such'" in r.json()["detail"]
    r = await api.post(path, params={"dry_run": "true"}, json={"reason": "what would it do"},
                       headers=auth(api, "operator"))
    assert r.status_code == 200 and r.json()["plan"]["action"] == "switch"
    assert h.world.servers["app-sh"].services["appserver"].value == "inactive", "a dry run runs nothing"
    assert h.store.plans(None, 50) == []
    for inverse, want in ((False, "active"), (True, "inactive")):
        r = await api.post(path, json={"reason": "Shenzhen app server down", "inverse": inverse},
                           headers=auth(api, "operator"))
        assert r.status_code == 202, r.text
        plan_id = r.json()["id"]
        done = await async_wait_until(lambda pid=plan_id: _finished(h, pid), timeout=10)
        assert done.plan.meta == {"switch": "app-shanghai-restart", "inverse": inverse}
        assert h.world.servers["app-sh"].services["appserver"].value == want
        await async_wait_until(lambda pid=done.id: _journaled(h, pid), timeout=10)  # plan_finished follows the status


def _journaled(h, plan_id: str) -> bool:  # type: ignore[no-untyped-def]
    return JOURNALED.issubset(e.kind for e in h.journal.query(plan_id=plan_id, limit=None))


def _finished(h, plan_id: str):  # type: ignore[no-untyped-def]
    rec = h.store.get_plan(plan_id)
    return rec if rec is not None and rec.status is PlanStatus.FINISHED else None
