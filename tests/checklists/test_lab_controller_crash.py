"""A checklist run survives a real controller crash: on the live lab, the controller process is killed with
SIGKILL (no shutdown code runs) while an automatic step is under way; a new controller process over the same
journal shows the run as it was, the step that was running recorded as interrupted (failed, retry it), and
the operator can retry it through the API."""

from __future__ import annotations

import shutil
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lab.site import REPO, LabSite
from tests.integration.labkit import Api, layout
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]
RUNS = "/api/v1/checklist-runs"
CHECKLIST = """
name: crash-night
title: A night the controller dies
phases:
  - id: prep
    title: Preparation
    steps:
      - {id: plan-ok, title: Plan approved, owner: it-lead, kind: manual, planned: 10m}
      - {id: standby-cti, title: CTI runs on the standby, owner: operator, kind: check, planned: 1m,
         timeout: 10m, check: {service_active: {host: ipc-b, service: cti}}}
"""


def source(tmp: Path) -> Path:
    src = tmp / "source"
    shutil.copytree(REPO / "config", src)
    (src / "checklists" / "crash-night.yaml").write_text(textwrap.dedent(CHECKLIST).lstrip())
    return src


async def run_status(api: Api, run: str = "latest") -> dict[str, Any]:
    r = await api.c.get(f"{RUNS}/{run}", headers=api._h("viewer"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def recorded(x: dict[str, Any]) -> dict[str, Any]:
    """What the journal holds of a step (not the plan's view, which moves with the failed step)."""
    return {k: v for k, v in x.items() if k != "critical" and not k.startswith("planned")}


def step(s: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(x for p in s["phases"] for x in p["steps"] if x["id"] == sid)


async def test_a_sigkilled_controller_comes_back_with_the_running_step_interrupted(tmp_path: Path) -> None:
    lab = LabSite(layout(tmp_path), source=source(tmp_path))
    api: Api | None = None
    try:
        await lab.up()
        api = Api(lab)
        r = await api.post("/api/v1/checklists/crash-night/runs", {"reason": "the night"})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        r = await api.post(f"{RUNS}/current/steps/plan-ok/done", {"note": "approved by Li"})
        assert r.status_code == 200, r.text
        await async_wait_until(lambda: _state_is(api, "standby-cti", "running"), timeout=20)
        before = await run_status(api)

        pid = lab.procs["controller"].proc.pid  # type: ignore[union-attr]
        assert await lab.kill_controller() == -signal.SIGKILL
        await lab.start_controller()
        assert lab.procs["controller"].proc.pid != pid  # type: ignore[union-attr]

        after = await run_status(api)
        assert after["id"] == run_id == before["id"] and after["outcome"] is None, after
        done = step(after, "plan-ok")
        assert done["state"] == "done" and recorded(done) == recorded(step(before, "plan-ok")), done
        interrupted = step(after, "standby-cti")
        assert interrupted["state"] == "failed", interrupted
        assert interrupted["note"].startswith("interrupted: the controller stopped while this step ran"), interrupted
        assert after["failed"] == ["standby-cti"], after

        r = await api.post(f"{RUNS}/current/steps/standby-cti/retry", {"reason": "controller back"})
        assert r.status_code == 200, r.text
        await async_wait_until(lambda: _state_is(api, "standby-cti", "running"), timeout=20)
    finally:
        if api is not None:
            await api.aclose()
        await lab.down()


async def _state_is(api: Api, sid: str, state: str) -> bool:
    return step(await run_status(api), sid)["state"] == state
