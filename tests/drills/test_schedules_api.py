"""Drill schedules and the drills API, in-process on the engine's unit-test world: a schedule fires at
its time and runs the drill; a schedule firing while the site is degraded is skipped, journaled and
notified; API schedules persist across a restart; the routes check roles and validate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from ccfo.platform.auth import TokenStore, add_token
from controller.drill_host import EngineDrillHost
from controller.service import build_app, stop_services
from controller.status import status
from controller.store import PlanStatus
from drills.manager import DrillManager
from drills.model import ScheduleModel, library
from drills.schedule import DrillScheduler
from tests.controller.harness import Harness
from tests.drills.test_runner_site import SITE_DRILL, drill_file, steady
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.start()
    await async_wait_until(lambda: steady(h), timeout=10)
    yield h
    await h.stop()


def soon(seconds: float = 1.0) -> datetime:
    return datetime.now().astimezone() + timedelta(seconds=seconds)


async def test_a_date_schedule_fires_at_its_time(tmp_path: Path) -> None:
    fired: list[tuple[str, datetime]] = []

    async def fire(s: ScheduleModel) -> None:
        fired.append((s.id, datetime.now().astimezone()))

    at = soon(1.0)
    sched = DrillScheduler([ScheduleModel(id="soon", drill="primary-cti-crash", at=at)], tmp_path / "d.sqlite", fire,
                           lambda name: True)
    await sched.start()
    try:
        listed = sched.list()
        assert listed[0]["next_run"] == at.isoformat() and listed[0]["source"] == "config"
        await async_wait_until(lambda: fired, timeout=10)
        assert fired[0][0] == "soon" and fired[0][1] >= at
    finally:
        await sched.stop()


async def test_a_scheduled_drill_runs_the_drill_in_the_controller(site: Harness, tmp_path: Path) -> None:
    drill_file(tmp_path, SITE_DRILL)
    manager = DrillManager(EngineDrillHost(site.engine))
    manager.extra.append(tmp_path / "drills")
    at = soon(1.0)
    try:
        await manager.ensure_started()
        view = await manager.scheduler.add(ScheduleModel(id="nightly", drill="site-cti-stop", at=at), "alice")
        assert view["next_run"] == at.isoformat()
        done = await async_wait_until(lambda: site.journal.query(kinds="drill_finished"), timeout=45)
        assert done[0].status == "passed", done[0].reason
        started = site.journal.query(kinds="drill_started")[0]
        assert started.actor == "schedule nightly" and started.ts >= at.timestamp()
        assert site.engine.state.is_normal(site.cfg.site)
    finally:
        await manager.stop()


async def test_a_schedule_firing_on_a_degraded_site_is_skipped_journaled_and_notified(site: Harness,
                                                                                       tmp_path: Path) -> None:
    drill_file(tmp_path, SITE_DRILL)
    manager = DrillManager(EngineDrillHost(site.engine))
    manager.extra.append(tmp_path / "drills")
    site.crash("ipc-b", "kcxp")
    await async_wait_until(lambda: site.plans(PlanStatus.PROPOSED), timeout=10)
    plan = site.plans(PlanStatus.PROPOSED)[0]
    await site.engine.approve(plan.id, "bob", "take the standby out")
    await async_wait_until(lambda: site.plans(PlanStatus.FINISHED), timeout=10)
    assert (await manager_status(manager))["state"] == "degraded"
    try:
        await manager.ensure_started()
        await manager.scheduler.add(ScheduleModel(id="during-outage", drill="site-cti-stop", at=soon(1.0)), "alice")
        skipped = await async_wait_until(lambda: site.journal.query(kinds="drill_skipped"), timeout=10)
        assert skipped[0].actor == "schedule during-outage" and "the site is degraded, not normal" in skipped[0].reason
        await async_wait_until(lambda: [m for e, m in site.world.notices if e == "drill_skipped"], timeout=10)
        assert site.journal.query(kinds="drill_started") == [], "nothing ran"
    finally:
        await manager.stop()


async def manager_status(manager: DrillManager) -> dict:
    return status(manager.host.engine)


@pytest_asyncio.fixture
async def api(site: Harness, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    tokens = tmp_path / "tokens.yaml"
    toks = {role: add_token(tokens, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    app = build_app(site.engine, TokenStore.load(tokens))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")
    client.toks = toks  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await stop_services(app)


def auth(api: httpx.AsyncClient, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.toks[role]}"}  # type: ignore[attr-defined]


async def test_api_lists_drills_with_their_dry_run(api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/drills", headers=auth(api, "viewer"))
    assert r.status_code == 200
    drills = {d["name"]: d for d in r.json()["drills"]}
    assert len(drills) == len(library()) == 9 and all(d["valid"] for d in drills.values())
    r = await api.get("/api/v1/drills/primary-cti-crash", headers=auth(api, "viewer"))
    body = r.json()
    assert body["expected_decision"]["rule"] == "primary-cti-ivr-fault" and "1. preflight" in body["dry_run"]
    assert (await api.get("/api/v1/drills/nope", headers=auth(api, "viewer"))).status_code == 404


async def test_api_schedules_persist_and_show_their_next_run(api: httpx.AsyncClient, site: Harness) -> None:
    body = {"id": "weekly-cti", "drill": "primary-cti-crash", "cron": "0 3 * * sun"}
    assert (await api.post("/api/v1/drills/schedules", json=body, headers=auth(api, "viewer"))).status_code == 403
    r = await api.post("/api/v1/drills/schedules", json=body, headers=auth(api, "operator"))
    assert r.status_code == 201, r.text
    nxt = datetime.fromisoformat(r.json()["next_run"])
    assert nxt.weekday() == 6 and (nxt.hour, nxt.minute) == (3, 0) and nxt > datetime.now().astimezone()
    r = await api.post("/api/v1/drills/schedules", json=body, headers=auth(api, "operator"))
    assert r.status_code == 409 and "exists already" in r.text  # a conflict with the schedule that has the id
    bad = {"id": "bad", "drill": "primary-cti-crash", "cron": "0 25 * * *"}
    r = await api.post("/api/v1/drills/schedules", json=bad, headers=auth(api, "operator"))
    assert r.status_code == 422 and "cron" in r.text
    r = await api.post("/api/v1/drills/schedules", json={**bad, "drill": "nope", "cron": "0 3 * * *"},
                       headers=auth(api, "operator"))
    assert r.status_code == 404 and "no drill named 'nope'" in r.text
    restarted = DrillManager(EngineDrillHost(site.engine))  # a controller restart re-adds the stored schedule
    try:
        await restarted.ensure_started()
        assert [(s["id"], s["source"], s["next_run"]) for s in restarted.scheduler.list()] == [
            ("weekly-cti", "api", nxt.isoformat())]
    finally:
        await restarted.stop()
    assert (await api.delete("/api/v1/drills/schedules/weekly-cti", headers=auth(api, "operator"))).status_code == 204
    r = await api.get("/api/v1/drills/schedules", headers=auth(api, "viewer"))
    assert r.json()["schedules"] == []


async def test_api_refuses_a_run_on_a_site_that_is_not_steady(api: httpx.AsyncClient, site: Harness) -> None:
    site.crash("ipc-b", "kcxp")
    await async_wait_until(lambda: site.plans(PlanStatus.PROPOSED), timeout=10)
    r = await api.post("/api/v1/drills/runs", json={"drill": "primary-cti-crash"}, headers=auth(api, "operator"))
    assert r.status_code == 409 and "waiting for approval" in r.text
    r = await api.get("/api/v1/drills/history", headers=auth(api, "viewer"))
    assert [e["kind"] for e in r.json()["entries"]] == ["drill_skipped"]
    r = await api.post("/api/v1/drills/journal", json={"kind": "plan_started", "reason": "x"},
                       headers=auth(api, "operator"))
    assert r.status_code == 422, "only drill entries may be recorded through the drills API"


@pytest.mark.asyncio
async def test_a_recorded_drill_is_announced_on_the_event_stream(api: httpx.AsyncClient, site: Harness) -> None:
    seen: list[dict] = []

    async def hook(event) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "journal" and str(event.data.get("kind", "")).startswith("drill_"):
            seen.append(event.data)

    site.engine.events.hook(hook)
    r = await api.post("/api/v1/drills/journal", headers=auth(api, "operator"),
                       json={"kind": "drill_finished", "reason": "drill x passed", "status": "passed"})
    assert r.status_code == 201, r.text
    await async_wait_until(lambda: seen, timeout=5)
    assert seen[0]["kind"] == "drill_finished" and seen[0]["status"] == "passed", "the dashboard hears of it"
