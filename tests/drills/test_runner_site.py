"""The drill runner in-process against the controller's engine and a real site's agents (the engine's
unit-test world: tests/controller/fakeworld.py): a drill through the agent passes and fails back, a drill
whose expectation is too short fails and is undone, a drill never starts on a site that is not steady."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from controller.drill_host import EngineController
from controller.store import PlanStatus
from drills.model import load_scenario
from drills.runner import make_runner
from tests.controller.harness import Harness
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

SITE_DRILL = """\
name: site-cti-stop
description: Stop CTI on the primary through its agent; the standby takes over.
target: fundco-callcenter
steady_state: {state: normal, active_host: ipc-a, duties: {ipc-a: primary, ipc-b: standby}, calls: []}
fault: {kind: service_stop, host: ipc-a, service: cti}
expect:
  detect: {within_s: 5}
  decide: {action: failover, rule: primary-cti-ivr-fault, within_s: 10}
  plan: {within_s: 20}
  state: {state: failed over, active_host: ipc-b, duties: {ipc-a: out, ipc-b: takeover}, within_s: 20}
  recover: {within_s: 20}
  calls: []
load: {rate_cps: 0}
way_back: {failback: auto, drain_timeout_s: 1, within_s: 30}
"""


def drill_file(tmp: Path, text: str = SITE_DRILL, name: str = "site-cti-stop") -> Path:
    folder = tmp / "drills"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


async def steady(h: Harness) -> bool:
    snap = h.engine.snap
    return bool(snap and all(v.reachable for v in snap.hosts.values()) and h.engine.decision is not None
                and not h.engine.decision.reason.startswith("starting"))


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    await h.start()
    await async_wait_until(lambda: steady(h), timeout=10)
    yield h
    await h.stop()


def runner(h: Harness, path: Path, tmp: Path):  # type: ignore[no-untyped-def]
    scenario = load_scenario(path, h.cfg)
    return make_runner(scenario, h.cfg, EngineController(h.engine, "drill-tester"), h.world, h.world,
                       lab_dir=None, reports_dir=tmp / "reports")


async def test_a_site_drill_through_the_agent_passes_and_fails_back(site: Harness, tmp_path: Path) -> None:
    r = runner(site, drill_file(tmp_path), tmp_path)
    doc = await r.run()
    assert doc["status"] == "passed", (doc["reason"], doc["expectations"])
    assert f"drill-{r.run_id}-1" in site.world.ran, "the fault went through the agent's stop action"
    assert [e["status"] for e in doc["expectations"]] == ["met"] * 6
    fig = doc["figures"]
    assert 0 < fig["time_to_detect_s"] <= fig["time_to_decide_s"] <= fig["time_to_plan_finished_s"]
    assert doc["recovery"]["method"] == "controller status (no SIP plan)" and fig["time_to_recover_s"] > 0
    roles = {p["role"]: p for p in doc["plans"]}
    assert roles["fault"]["action"] == "failover" and roles["fault"]["status"] == "finished"
    assert roles["way back"]["action"] == "failback" and roles["way back"]["status"] == "finished"
    assert site.engine.state.is_normal(site.cfg.site) and site.world.critical_running() == ["ipc-a"]
    kinds = [(e.kind, e.actor) for e in site.journal.query(kinds=("drill_started", "drill_finished"))]
    assert kinds == [("drill_finished", "drill-tester"), ("drill_started", "drill-tester")]
    approvals = site.journal.query(kinds="plan_approved")
    assert approvals[0].actor == "drill-tester" and "the operator on duty approves" in (approvals[0].reason or "")
    written = json.loads(Path(doc["files"]["json"]).read_text())
    assert written["figures"] == fig and Path(doc["files"]["junit"]).exists()


async def test_an_expectation_too_short_fails_and_the_way_back_undoes_the_fault(site: Harness,
                                                                                 tmp_path: Path) -> None:
    text = SITE_DRILL.replace("within_s: 10}", "within_s: 0.01}")  # decide: faster than any debounce
    doc = await runner(site, drill_file(tmp_path, text), tmp_path).run()
    assert doc["status"] == "failed"
    status = {e["key"]: e["status"] for e in doc["expectations"]}
    assert status["detect"] in ("met", "unmet") and status["decide"] in ("unmet", "not reached")
    assert status["plan"] == status["state"] == status["recover"] == "not reached"
    assert doc["reason"].startswith("expectation not met")
    way_back = next(s for s in doc["steps"] if s["name"] == "way back")
    assert way_back["status"] == "ok" and "cti" in way_back["detail"]
    assert site.world.critical_running() == ["ipc-a"]
    assert site.plans(PlanStatus.PROPOSED) == [], "the drill's leftover proposals were rejected"
    assert site.engine.state.is_normal(site.cfg.site)


async def test_a_drill_never_starts_on_a_site_that_is_not_steady(site: Harness, tmp_path: Path) -> None:
    site.crash("ipc-b", "kcxp")
    await async_wait_until(lambda: site.plans(PlanStatus.PROPOSED), timeout=10)
    doc = await runner(site, drill_file(tmp_path), tmp_path).run()
    assert doc["status"] == "skipped" and "waiting for approval" in doc["reason"]
    assert [s["name"] for s in doc["steps"]] == ["preflight"], "nothing was touched"
    skipped = site.journal.query(kinds="drill_skipped")
    assert len(skipped) == 1 and skipped[0].status == "skipped"
