"""The migration checklist run through the controller's API in-process (ASGI), over the engine and executor
on the in-memory world (tests/controller/harness: the agents of the IPCs and of the managed servers are test
doubles, being remote; drills and SIPp calls are the runner's test doubles).

* A server agent that cannot be reached fails its step with the server's name; the run then offers the
  rollback of the phase's completed steps and runs none of them by itself; the operator's rollback does.
* Rehearsal, then the real run (issue 17 item 6), on this fake world rather than the lab so that the clock is
  the test's (an injected FakeClock: each manual step takes a known time): the whole migration is rehearsed,
  then the real run's planned durations are the rehearsal's measured ones, and its projection (planned and
  projected finish, slip) is computed from them. The lab test (tests/integration/test_lab_migration.py) does
  the same on the live lab with real durations, and checks the planned durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ccfo.platform.auth import TokenStore, add_token
from controller.service import build_app, start_services, stop_services
from tests.checklists.doubles import CallsTestDouble, DrillsTestDouble, FakeClock
from tests.controller.harness import Harness
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio
RUNS = "/api/v1/checklist-runs"
BATCH_2 = "batch-2-ta-import"


class Ops:
    """The operators, through the API."""

    def __init__(self, client: httpx.AsyncClient, toks: dict[str, str]) -> None:
        self.c, self.toks = client, toks

    def h(self, role: str = "operator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.toks[role]}"}

    async def start(self, name: str, **body: Any) -> dict[str, Any]:
        r = await self.c.post(f"/api/v1/checklists/{name}/runs", json={"reason": "the migration", **body},
                              headers=self.h())
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    async def status(self, run: str = "current") -> dict[str, Any]:
        r = await self.c.get(f"{RUNS}/{run}", headers=self.h("viewer"))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.c.post(f"{RUNS}/current{path}", json=body, headers=self.h())
        assert r.status_code == 200, (path, r.text)
        return r.json()  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def site(tmp_path):
    h = Harness(tmp_path)
    tokens_file = tmp_path / "tokens.yaml"
    toks = {role: add_token(tokens_file, f"{role}-user", role) for role in ("viewer", "operator")}
    app = build_app(h.engine, TokenStore.load(tokens_file))
    runner = app.state.checklists
    runner.drills, runner.calls = DrillsTestDouble(), CallsTestDouble()
    await h.start()
    await start_services(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")
    try:
        yield h, runner, Ops(client, toks)
    finally:
        await client.aclose()
        await stop_services(app)
        await h.stop()


def steps(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["id"]: x for p in s["phases"] for x in p["steps"]}


async def state_of(ops: Ops, step: str, *wanted: str) -> dict[str, Any] | None:
    s = await ops.status()
    return s if steps(s)[step]["state"] in wanted else None


async def test_an_unreachable_server_fails_its_step_by_name_and_the_rollback_is_offered_never_run(site):
    h, runner, ops = site
    ta_sh, ta_sz = h.world.servers["ta-sh"], h.world.servers["ta-sz"]
    ta_sh.jobs["ta-import"], ta_sz.jobs["ta-import"] = True, False  # before the migration: Shanghai imports
    s = await ops.start("datacenter-migration")
    for x in s["phases"][0]["steps"]:  # batch 1 is not what this test is about
        await ops.post(f"/steps/{x['id']}/skip", {"reason": "not in this test"})
    await async_wait_until(lambda: state_of(ops, "ta-copy-programs", "running"), timeout=10)
    await ops.post("/steps/ta-copy-programs/done", {"note": "copied"})
    await ops.post("/steps/ta-stop-shanghai-tasks/confirm", {"note": "go"})
    await async_wait_until(lambda: state_of(ops, "ta-stop-shanghai-tasks", "done"), timeout=20)
    assert ta_sh.jobs["ta-import"] is False
    ta_sz.reachable = False  # the Shenzhen import server's agent is gone
    await ops.post("/steps/ta-create-shenzhen-tasks/confirm", {"note": "go"})
    s = await async_wait_until(lambda: state_of(ops, "ta-create-shenzhen-tasks", "failed"), timeout=30)
    failed = steps(s)["ta-create-shenzhen-tasks"]
    assert "ta-sz" in failed["note"] and "AgentUnreachable" in failed["note"], failed["note"]
    await async_wait_until(lambda: not runner._tasks, timeout=10)  # the runner has nothing under way
    s = await ops.status()
    # offered, not run: the completed step keeps its effect until an operator decides
    assert s["rollback_offers"] == [{"phase": BATCH_2, "failed": ["ta-create-shenzhen-tasks"],
                                     "queue": ["ta-stop-shanghai-tasks", "ta-copy-programs"],
                                     "undoes": ["ta-stop-shanghai-tasks"],
                                     "command": f"ccfo checklist rollback {BATCH_2} --reason TEXT"}]
    assert f"offered: roll back phase {BATCH_2} (undoes ta-stop-shanghai-tasks)" in s["line"]
    assert s["rollback"] is None and steps(s)["ta-stop-shanghai-tasks"]["state"] == "done"
    assert ta_sh.jobs["ta-import"] is False and ("ta-sh", "job_enable", "ta-import") not in h.world.log
    assert not [e for e in runner.run("current").events if e.kind.value.startswith("rollback")]
    # the operator takes the offer: the way back runs, journaled like the way forward
    await ops.post(f"/phases/{BATCH_2}/rollback", {"reason": "ta-sz is down: keep importing in Shanghai"})
    s = await async_wait_until(lambda: state_of(ops, "ta-stop-shanghai-tasks", "rolled_back"), timeout=30)
    assert ta_sh.jobs["ta-import"] is True and ("ta-sh", "job_enable", "ta-import") in h.world.log
    assert s["rollback_offers"] == [], "a rollback taken is no longer offered"
    titles = {(p.plan.title, p.status.value) for p in h.store.plans()}
    assert ("on the managed servers: job enable ta-import on ta-sh", "finished") in titles, titles
    assert ("on the managed servers: job enable ta-import on ta-sz", "failed") in titles, titles


async def pump_servers(h: Harness) -> None:
    """The managed servers' heartbeats, as their agents send them (the harness pumps the IPCs' only); a server
    without database files reports none, like the real agent."""
    with_files = {s.id for s in h.cfg.site.servers if s.db_files}
    while True:
        for s in h.cfg.site.servers:
            report = await h.world.report(s.id)
            h.engine.ingest_server(replace(report, received_at=time.time(),
                                           db_site=report.db_site if s.id in with_files else None), [])
        await asyncio.sleep(0.05)


def longest_path(checklist: dict[str, Any], dur: dict[str, float]) -> float:
    """The finish of a run planned with `dur`, from its start: phases one after the other (no planned starts in
    this checklist), a step after its phase's start and its `after` steps. Independent of controller code."""
    end_of: dict[str, float] = {}
    phase_start = 0.0
    for p in checklist["phases"]:
        assert p["start"] is None
        for x in p["steps"]:
            start = max([phase_start, *(end_of[a] for a in x["after"])])
            end_of[x["id"]] = start + dur[x["id"]]
        phase_start = max(end_of[x["id"]] for x in p["steps"])
    return phase_start


async def test_a_rehearsal_of_the_migration_then_the_real_run_projects_with_the_rehearsals_durations(site):
    h, runner, ops = site
    clock = FakeClock()
    runner.clock = clock
    pump = asyncio.create_task(pump_servers(h))
    try:
        r = await ops.c.get("/api/v1/checklists/datacenter-migration", headers=ops.h("viewer"))
        checklist = r.json()
        ids = [x["id"] for p in checklist["phases"] for x in p["steps"]]
        took = {sid: 60.0 * (i + 1) for i, sid in enumerate(ids)}  # what each manual step takes in the rehearsal
        s = await ops.start("datacenter-migration", rehearsal=True)
        rehearsal_id = s["id"]
        assert s["rehearsal"] and s["planned_from"] is None
        while s["outcome"] is None:
            assert not s["failed"], [(i, steps(s)[i]["note"]) for i in s["failed"]]
            acted = False
            for sid in s["awaiting_confirmation"]:
                await ops.post(f"/steps/{sid}/confirm", {"note": "go"})
                acted = True
            for sid in [x for x in s["awaiting_operator"] if x not in s["awaiting_confirmation"]]:
                clock.tick(took[sid])
                await ops.post(f"/steps/{sid}/done", {"note": "done on site"})
                acted = True
            if not acted:
                await async_wait_until(lambda s=s: _moved(ops, s), timeout=30)
            s = await ops.status("latest")
        assert s["outcome"] == "finished", s["line"]
        measured = {sid: x["real_s"] for sid, x in steps(s).items()}
        assert None not in measured.values()
        assert measured["cs-server-os"] == took["cs-server-os"], "a manual step lasts from ready to done"
        assert measured["cs-switch-entry"] == 0.0, "the fake clock stood still while the plan ran"
        manual = [x["id"] for p in checklist["phases"] for x in p["steps"] if x["kind"] == "manual"]
        assert sum(measured[m] for m in manual) >= sum(took[m] for m in manual)

        # the real run: planned with the rehearsal's measured durations, frozen into the run
        clock.tick(86400)
        real = await ops.start("datacenter-migration")
        assert not real["rehearsal"] and real["planned_from"] == rehearsal_id
        for sid, x in steps(real).items():
            assert x["planned_s"] == measured[sid] and x["planned_source"] == rehearsal_id, sid
        estimates = {x["id"]: x["planned_s"] for p in checklist["phases"] for x in p["steps"]}
        assert real["planned_finish"] - real["started"] == longest_path(checklist, measured)
        assert longest_path(checklist, measured) != longest_path(checklist, estimates)
        assert real["projected_finish"] == real["planned_finish"] and real["slip_s"] == 0
        # the projection moves with what happens, the rest still at the rehearsal's durations
        assert steps(real)["cs-server-os"]["state"] == "running" and steps(real)["cs-server-os"]["critical"]
        clock.tick(measured["cs-server-os"] + 600)
        real = await ops.post("/steps/cs-server-os/done", {"note": "ten minutes longer than rehearsed"})
        assert real["slip_s"] == 600
        assert real["projected_finish"] == real["started"] + longest_path(checklist, measured) + 600
        # and the report says where the plan came from
        r = await ops.c.get(f"{RUNS}/current/report", headers=ops.h("viewer"))
        assert f"from rehearsal {rehearsal_id}" in r.text
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _moved(ops: Ops, seen: dict[str, Any]) -> bool:
    now = await ops.status("latest")
    return (now["outcome"], now["failed"], now["awaiting_confirmation"], now["awaiting_operator"],
            [x["state"] for x in steps(now).values()]) != (
        seen["outcome"], seen["failed"], seen["awaiting_confirmation"], seen["awaiting_operator"],
        [x["state"] for x in steps(seen).values()])
