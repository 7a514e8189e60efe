"""The migration runbook on the live lab with its managed servers, from the site as it was before the migration
(LabLayout(servers=True, before_migration=True)): the real controller runs the checklist; the test plays the
operators through the API. Batches 1 and 3 are skipped (their machine steps are covered by the fake-world test
tests/checklists/test_migration_servers.py), batch 2 runs with its machine steps automatic (the cron files on
disk change), and batch 4 is rolled back half-way: every server's files, cron files and services are then as
before batch 4, read from the disk and the process table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.integration.labkit import Api, layout, running
from tests.support import async_wait_until

# Slow (`make test-slow`, run by CI): the runbook on a lab with its nine servers, about two minutes.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(420)]
RUNS = "/api/v1/checklist-runs"
SKIP_PHASES = ("batch-1-online-service", "batch-3-app-db-test")
HALF_WAY = ("stop-shanghai-app", "start-shenzhen-app")  # batch 4 stops after these: then the rollback


@pytest_asyncio.fixture
async def site(tmp_path: Path):
    lab = LabSite(layout(tmp_path, servers=True, before_migration=True))
    try:
        await lab.up(timeout=90)
    except Exception:
        await lab.down()
        raise
    api = Api(lab)
    try:
        await async_wait_until(lambda: _reporting(api), timeout=40)
        yield lab, api
    finally:
        await api.aclose()
        await lab.down()


async def _reporting(api: Api) -> bool:
    s = await api.status()
    return bool(s["servers"]) and all(v["reachable"] for v in [*s["hosts"].values(), *s["servers"].values()])


def servers_state(lab: LabSite) -> dict[str, Any]:
    """Every server's files (etc/, cron.d/) byte for byte and its services' processes: disk and process table."""
    out: dict[str, Any] = {}
    for name, spec in lab.site["servers"].items():
        d = lab.layout.host_dir(name)
        files = {f"{sub}/{p.name}": p.read_bytes() for sub in ("etc", "cron.d") for p in sorted((d / sub).iterdir())}
        out[name] = (files, {svc: running(lab, name, svc) for svc in spec["services"]})
    return out


class Operators:
    def __init__(self, api: Api) -> None:
        self.api = api

    async def status(self) -> dict[str, Any]:
        r = await self.api.c.get(f"{RUNS}/latest", headers=self.api._h("viewer"))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.api.post(f"{RUNS}/current{path}", body)
        assert r.status_code == 200, (path, r.text)
        return r.json()  # type: ignore[no-any-return]


def by_id(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["id"]: {**x, "phase": p["id"]} for p in s["phases"] for x in p["steps"]}


async def test_batch_2_runs_its_machine_steps_and_batch_4_rolled_back_half_way_leaves_the_servers_as_before(site):
    lab, api = site
    ops = Operators(api)
    ta_sh, ta_sz = (lab.layout.host_dir(n) / "cron.d" / "ta-import" for n in ("ta-sh", "ta-sz"))
    assert "#ccfo-disabled#" not in ta_sh.read_text() and "#ccfo-disabled#" in ta_sz.read_text(), "before: Shanghai"
    assert running(lab, "app-sh", "appserver") and not running(lab, "app-sz", "appserver")
    r = await api.post("/api/v1/checklists/datacenter-migration/runs", {"reason": "migration rehearsal on the lab"})
    assert r.status_code in (200, 201), r.text
    before_batch_4: dict[str, Any] | None = None
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, "the run did not reach batch 4's half-way point"
        s = await ops.status()
        steps = by_id(s)
        if all(steps[i]["state"] == "done" for i in HALF_WAY):
            break
        acted = False
        for sid in dict.fromkeys([*s["failed"], *s["awaiting_confirmation"], *s["awaiting_operator"]]):
            step = steps[sid]
            if step["phase"] in SKIP_PHASES:
                await ops.post(f"/steps/{sid}/skip", {"reason": "not part of this rehearsal"})
            elif sid in s["failed"]:
                pytest.fail(f"step {sid} failed: {step.get('output') or step.get('note')}")
            elif step["phase"] == "batch-4-app-db-cutover" and sid not in ("stop-dds", "cold-backup", *HALF_WAY):
                continue  # batch 4 goes only half-way
            elif sid in s["awaiting_confirmation"]:
                if step["phase"] == "batch-4-app-db-cutover" and before_batch_4 is None:
                    before_batch_4 = servers_state(lab)
                await ops.post(f"/steps/{sid}/confirm", {"note": "go"})
            else:
                if step["phase"] == "batch-4-app-db-cutover" and before_batch_4 is None:
                    before_batch_4 = servers_state(lab)
                await ops.post(f"/steps/{sid}/done", {"note": f"{sid} done on site"})
            acted = True
        if not acted:
            await async_wait_until(lambda s=s: _changed(ops, s), timeout=60)
    steps = by_id(await ops.status())
    # batch 2 ran its machine steps on the servers: the Shanghai import tasks off, the Shenzhen ones on
    assert steps["ta-stop-shanghai-tasks"]["state"] == steps["ta-create-shenzhen-tasks"]["state"] == "done"
    assert "#ccfo-disabled# " in ta_sh.read_text() and "#ccfo-disabled#" not in ta_sz.read_text()
    # batch 4 half-way: the application server moved
    assert before_batch_4 is not None
    assert running(lab, "app-sz", "appserver") and not running(lab, "app-sh", "appserver")
    assert servers_state(lab) != before_batch_4
    await ops.post("/phases/batch-4-app-db-cutover/rollback", {"reason": "rehearse the way back"})
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the rollback did not end"
        s = await ops.status()
        for sid in s["awaiting_operator"]:  # the manual ways back (DDS) are the DBA's
            await ops.post(f"/steps/{sid}/done", {"note": "undone on site"})
        if s["status"] != "rolling_back" and not s["awaiting_operator"] and not s["running"]:
            break
        await async_wait_until(lambda s=s: _changed(ops, s), timeout=60)
    steps = by_id(await ops.status())
    assert {steps[i]["state"] for i in HALF_WAY} == {"rolled_back"}, {i: steps[i]["state"] for i in HALF_WAY}
    assert servers_state(lab) == before_batch_4, "the servers' files, jobs and services are as before batch 4"
    assert running(lab, "app-sh", "appserver") and not running(lab, "app-sz", "appserver")
    journal = await api.journal(kind="plan_finished")
    assert len(journal) >= 6, "2 forward in batch 2, 2 in batch 4, 2 rollbacks: each a journaled plan"


async def _changed(ops: Operators, seen: dict[str, Any]) -> bool:
    now = await ops.status()
    keys = ("status", "failed", "awaiting_confirmation", "awaiting_operator", "running")
    states = [{i: x["state"] for i, x in by_id(v).items()} for v in (now, seen)]
    return any(now[k] != seen[k] for k in keys) or states[0] != states[1]
