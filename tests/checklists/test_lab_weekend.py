"""The weekend-upgrade checklist, end to end, on the live lab: the real controller process runs it (its
checks, its plans through the engine and the agents, the drills package's drills and SIPp calls); the
test plays the operators, ticking the manual steps and confirming the actions through the API and the
`ccfo checklist` CLI, and reads the report. An independent watcher fails the test if CTI/IVR ever run
on both hosts at once."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from controller.checklists.views import fmt_duration
from controller.cli import main
from tests.drills.labkit import DrillLab, start, stop_lab
from tests.integration.labkit import critical_hosts, running
from tests.integration.test_lab_failover import Watch
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]
RUNS = "/api/v1/checklist-runs"
SKIPPED = ("drill-primary-software", "drill-standby")


class Operators:
    """The people on the weekend: every change goes through the controller's API (or its CLI)."""

    def __init__(self, dl: DrillLab) -> None:
        self.dl, self.api = dl, dl.api
        self.cli = ["--url", dl.lab.api, "--token-file", str(dl.config / "secrets" / "operator.token")]

    async def status(self, run: str = "current") -> dict[str, Any]:
        r = await self.api.c.get(f"{RUNS}/{run}", headers=self.api._h("viewer"))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self.api.post(f"{RUNS}/current{path}", body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def ccfo(self, *argv: str) -> int:
        return await asyncio.to_thread(main, ["checklist", *argv, *self.cli])

    async def something_to_do(self) -> dict[str, Any] | None:
        s = await self.status("latest")
        if s["outcome"] or s["failed"] or s["blocked"] or s["awaiting_confirmation"] or s["awaiting_operator"]:
            return s
        return None

    async def work_through(self, timeout_s: float) -> dict[str, Any]:
        """Tick manual steps, confirm actions and drills, until the run ends or a step fails."""
        deadline = time.monotonic() + timeout_s
        ticked: list[str] = []
        while True:
            s = await async_wait_until(self.something_to_do, timeout=max(1.0, deadline - time.monotonic()),
                                       describe=lambda: "nothing to do")
            if s["outcome"] or s["failed"] or s["blocked"]:
                return s
            for step in s["awaiting_confirmation"]:
                await self.post(f"/steps/{step}/confirm", {"note": "go: window open, callers warned"})
            for step in [x for x in s["awaiting_operator"] if x not in s["awaiting_confirmation"]]:
                if not ticked:  # the first tick through the CLI, the others through the API
                    assert await self.ccfo("done", step, "--note", f"{step} done on site") == 0
                else:
                    await self.post(f"/steps/{step}/done", {"note": f"{step} done on site"})
                ticked.append(step)


async def _no_proposal(dl: DrillLab) -> bool:
    return await dl.api.plans("proposed") == []


def steps(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["id"]: x for p in s["phases"] for x in p["steps"]}


async def test_the_weekend_upgrade_runs_end_to_end_on_the_live_lab(tmp_path, capsys):
    dl = await start(tmp_path)
    watch = Watch(dl.lab)
    try:
        assert (dl.config / "checklists" / "weekend-upgrade.yaml").is_file(), "the lab config carries the runbooks"
        ops = Operators(dl)
        # A plan proposed while the lab's services were still starting is withdrawn by the controller once
        # the site reads normal (a drill refuses to start while a proposal waits).
        await async_wait_until(lambda: _no_proposal(dl), timeout=30)
        assert await ops.ccfo("list") == 0
        assert "weekend-upgrade" in capsys.readouterr().out
        assert await ops.ccfo("start", "weekend-upgrade", "--reason", "the IPC upgrade weekend") == 0
        first = await ops.status()
        assert first["id"] == "weekend-upgrade-1" and first["planned_from"] is None
        # Time budget: one of Sunday's three drills runs for real here (tests/drills runs the others); the
        # operators skip the other two up front, with the reason journaled. Every other step runs.
        for drill in SKIPPED:
            assert await ops.ccfo("skip", drill, "--reason", "rehearsed separately (tests/drills)") == 0
        s = await ops.work_through(timeout_s=420)
        by_id = steps(s)
        assert s["outcome"] == "finished", (s["line"], {k: v["note"] for k, v in by_id.items()
                                                         if v["state"] in ("failed", "blocked")})
        # every step ran for real, with who, when and its real duration
        assert {k for k, x in by_id.items() if x["state"] == "skipped"} == set(SKIPPED)
        assert all(x["state"] == "done" and x["real_s"] is not None and x["started"] and x["ended"]
                   for k, x in by_id.items() if k not in SKIPPED), {k: v["state"] for k, v in by_id.items()}
        skipped = [e for e in await dl.api.journal(kind="checklist_event") if e["status"] == "step_skipped"]
        assert {(e["actor"], e["reason"]) for e in skipped} == {("lab-operator", "rehearsed separately (tests/drills)")}
        assert by_id["plan-approved"]["ended_by"] == "lab-operator"
        assert "passed" in by_id["line-test-primary"]["note"] and "passed" in by_id["line-test-standby"]["note"]
        # the plans really ran through the engine and the agents
        plan_ids = [by_id[x]["output"]["plan_id"] for x in ("stop-system", "start-services", "repoint-db-test",
                                                             "repoint-db-back")]
        for pid in plan_ids:
            plan = await dl.api.plan(pid)
            assert plan["status"] == "finished" and plan["requested_by"] == "lab-operator", plan
        out = by_id["drill-primary-line"]["output"]
        assert out["passed"] and out["status"] == "passed" and Path(out["report_path"]).exists(), out
        assert by_id["drill-primary-line"]["note"].startswith("drill primary-span-fault PASSED")
        for call in ("call-inbound-sat", "call-outbound-sat", "call-agent-sat"):
            assert by_id[call]["output"]["passed"] and by_id[call]["output"]["calls"][0]["passed"]
        # maintenance for the two Saturday phases only, journaled, and restored
        modes = [(e["actor"], e["data"]["to"]) for e in reversed(await dl.api.journal(kind="mode_changed"))]
        assert modes == [("checklist:weekend-upgrade-1", "maintenance"), ("checklist:weekend-upgrade-1",
                                                                           "supervised")]
        assert (await dl.api.status())["mode"] == "supervised"
        assert critical_hosts(dl.lab) == ["ipc-a"] and running(dl.lab, "ipc-b", "kcxp")
        # the report lists every step with its real duration; drill results embedded
        out = tmp_path / "weekend.md"
        assert await ops.ccfo("report", s["id"], "--format", "md", "--output", str(out)) == 0
        report = out.read_text()
        header = next(line for line in report.splitlines() if line.startswith("| Step | Title |"))
        cols = [c.strip() for c in header.strip("|").split("|")]
        for sid, x in by_id.items():
            row = next(line for line in report.splitlines() if line.startswith(f"| {sid} |"))
            cells = dict(zip(cols, (c.strip() for c in row.strip("|").split(" | ")), strict=False))
            if sid in SKIPPED:
                assert cells["State"] == "skipped" and cells["Note"] == "rehearsed separately (tests/drills)"
            else:
                assert cells["State"] == "done" and cells["Real"] == fmt_duration(x["real_s"]) != "-", row
        assert "## Drill and call-test results" in report and "drill primary-span-fault PASSED" in report
        assert "time to recover" in report, "the drill's own report is embedded"
        capsys.readouterr()
        assert await ops.ccfo("status", s["id"]) == 0
        text = capsys.readouterr().out
        assert "FINISHED" in text and "critical path: " in text and re.search(r"\[skip\][ *]drill-standby ", text)
        doc = json.loads((await dl.api.c.get(f"{RUNS}/{s['id']}/report", params={"format": "json"},
                                             headers=dl.api._h("viewer"))).text)
        assert len(doc["timeline"]) >= 2 * len(by_id)
    finally:
        await watch.stop()
        await stop_lab(dl)
