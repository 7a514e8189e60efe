"""The whole drill library on one live lab, drill after drill through `ccfo drill run`: each passes and
its way back leaves the lab healthy for the next one. Then a drill scheduled through the API runs inside
the controller process at its time. Slow (several minutes): `pytest -m slow`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from drills.model import library
from tests.drills.labkit import DrillLab, run_drill, start, stop_lab
from tests.integration.labkit import critical_hosts
from tests.support import async_wait_until

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(420)]
# The fencing drill power-cycles the primary: last, so a failure there spoils no other drill.
ORDER = sorted(library(), key=lambda name: (name == "primary-unreachable", name))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DrillLab]:
    dl = await start(tmp_path_factory.mktemp("library"))
    yield dl
    await stop_lab(dl)


@pytest.mark.parametrize("name", ORDER)
async def test_library_drill_passes_and_leaves_the_lab_healthy(shared_lab: DrillLab, name: str,
                                                               tmp_path: Path) -> None:
    await async_wait_until(shared_lab.healthy, timeout=60)
    rc, doc = await run_drill(shared_lab, name, tmp_path / "reports")
    assert rc == 0 and doc["status"] == "passed", (doc["reason"], doc["expectations"], doc["steps"])
    assert doc["figures"]["time_to_recover_s"] is not None and doc["figures"]["calls_attempted"] > 0
    assert all(c["passed"] for c in doc["checks"]) and doc["checks"]
    assert await async_wait_until(shared_lab.healthy, timeout=60)
    assert critical_hosts(shared_lab.lab) == ["ipc-a"]


async def test_a_drill_scheduled_through_the_api_runs_in_the_controller(shared_lab: DrillLab) -> None:
    api = shared_lab.api
    await async_wait_until(shared_lab.healthy, timeout=60)
    at = datetime.now().astimezone() + timedelta(seconds=1)
    r = await api.post("/api/v1/drills/schedules", {"id": "soon", "drill": "primary-cti-crash",
                                                     "at": at.isoformat()})
    assert r.status_code == 201 and r.json()["next_run"] == at.isoformat(), r.text
    started = await async_wait_until(lambda: _by(api, "drill_started", "schedule soon"), timeout=30)
    assert started["ts"] >= at.timestamp()
    done = await async_wait_until(lambda: _by(api, "drill_finished", "schedule soon"), timeout=300)
    assert done["status"] == "passed", (done["reason"], done["data"].get("expectations"))
    assert Path(done["data"]["files"]["junit"]).is_relative_to(shared_lab.lab.layout.root)
    runs = (await api.c.get("/api/v1/drills/runs", headers=api._h("viewer"))).json()["runs"]
    assert [(r["drill"], r["status"], r["by"]) for r in runs] == [("primary-cti-crash", "passed", "schedule soon")]
    assert await async_wait_until(shared_lab.healthy, timeout=60)


async def _by(api, kind: str, actor: str) -> dict | None:  # type: ignore[no-untyped-def]
    return next((e for e in await api.journal(kind=kind) if e["actor"] == actor), None)
