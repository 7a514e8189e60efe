"""The runner over a real Engine and journal (agents are tests/controller/fakeworld.py's in-memory world):
checks and plans really run, failures block, retry/skip are journaled with who and why, maintenance is
held and restored, rehearsals plan later runs, and a new runner over the same files loses nothing."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
import pytest_asyncio

from ccfo.config.yamlpos import Problem
from ccfo.domain.health import ServiceState
from controller.checklists.loader import load_checklist
from controller.checklists.model import Checklist, Refused
from controller.checklists.ports import EngineSite, Unavailable
from controller.checklists.runner import ChecklistRunner, InvalidChecklist, NotFound
from controller.journal import Journal
from tests.checklists.doubles import CallsTestDouble, DrillsTestDouble, FakeClock
from tests.controller.harness import Harness
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio

SMALL = """
name: small
title: A small upgrade
phases:
  - id: prep
    title: Preparation
    steps:
      - {id: plan-ok, title: Plan approved, owner: it-lead, kind: manual, planned: 10m}
      - {id: reachable, title: Both hosts reachable, owner: operator, kind: check, planned: 1m,
         check: {hosts_reachable: [ipc-a, ipc-b]}}
      - {id: kcxp-standby, title: KCXP runs on the standby, owner: operator, kind: check, planned: 1m,
         timeout: 1s, check: {service_active: {host: ipc-b, service: kcxp}}}
      - {id: backup, title: Back up the software, owner: sysadmin, kind: manual, planned: 30m}
  - id: stop
    title: Stop and move
    maintenance: true
    steps:
      - id: stop-all
        title: Stop every service
        owner: operator
        kind: action
        planned: 5m
        action: {plan: stop_services}
        rollback: {title: Start them again, action: {plan: start_services}}
      - {id: all-stopped, title: CTI stopped on the primary, owner: operator, kind: check, planned: 1m,
         check: {service_inactive: {host: ipc-a, service: cti}}}
      - {id: move-board, title: Move the board, owner: telephony, kind: manual, planned: 1h,
         rollback: {title: Put the board back}}
  - id: tests
    title: Tests
    steps:
      - {id: line-a, title: Line dial test on ipc-a, owner: telephony, kind: check, planned: 2m,
         check: {line_test: ipc-a}}
      - {id: drill, title: A drill, owner: operator, kind: drill, planned: 10m, drill: primary-software-fault}
      - {id: call-in, title: Inbound call, owner: telephony, kind: call_test, planned: 2m,
         call_test: {call: inbound}}
"""


def small_checklist(tmp: Path, text: str = SMALL) -> Checklist:
    path = tmp / "small.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return load_checklist(path)


class World:
    """Engine over the in-memory agents, the runner, its clock and its test doubles."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.h = Harness(tmp)
        self.clock = FakeClock()
        self.drills = DrillsTestDouble(report_dir=tmp)
        self.calls = CallsTestDouble()
        self.checklist = small_checklist(tmp)
        self.runner = self.new_runner(self.h.journal)

    def library(self) -> tuple[dict[str, Checklist], list[Problem]]:
        return {self.checklist.name: self.checklist}, []

    def new_runner(self, journal: Journal) -> ChecklistRunner:
        return ChecklistRunner(journal, EngineSite(self.h.engine), self.drills, self.calls, self.library,
                               clock=self.clock, poll_s=0.02)

    async def step_is(self, step: str, *states: str) -> dict:
        return await async_wait_until(lambda: self.runner.status("current") if self.state(step) in states else None,
                                      timeout=10, describe=lambda: self.state(step))

    def state(self, step: str, run: str = "current") -> str:
        for p in self.runner.status(run)["phases"]:
            for s in p["steps"]:
                if s["id"] == step:
                    return s["state"]
        raise KeyError(step)

    async def op(self, op: str, target: str, who: str = "alice", text: str = "as planned") -> None:
        if op in ("done", "fail") and target in {s.id for s in self.checklist.steps}:
            await self.step_is(target, "running", "rolling_back")  # the automatic steps before it have run
        await self.runner.operate("current", op, target, who, text)


@pytest_asyncio.fixture
async def world(tmp_path):
    w = World(tmp_path)
    await w.h.start()
    await async_wait_until(lambda: w.h.engine.snap and all(v.reachable for v in w.h.engine.snap.hosts.values()),
                           timeout=10)
    await w.runner.start()
    yield w
    await w.runner.close()
    await w.h.stop()


async def test_a_failed_check_blocks_its_dependants_until_retried_and_retry_and_skip_are_journaled(world):
    world.h.world.hosts["ipc-b"].services["kcxp"] = ServiceState.FAILED
    # the check reads what operators see: wait until the controller has seen the crash (a fast machine ran
    # the check on the report from before it, and the check passed)
    await async_wait_until(lambda: EngineSite(world.h.engine).status()["hosts"]["ipc-b"]["services"]["kcxp"]
                           == "failed", timeout=10)
    await world.runner.start_run("small", "alice", "weekend test")
    await world.op("done", "plan-ok", text="signed by IT and business")
    s = await world.step_is("kcxp-standby", "failed")
    step = next(x for x in s["phases"][0]["steps"] if x["id"] == "kcxp-standby")
    assert "kcxp failed on ipc-b" in step["note"] and "not met within 1 s" in step["note"]
    assert world.state("backup") == "blocked" and s["blocked"][0] == "backup"
    assert world.state("reachable") == "done"
    with pytest.raises(Refused, match="passes or fails by itself"):
        await world.runner.operate("current", "done", "kcxp-standby", "alice", "")
    world.h.world.hosts["ipc-b"].services["kcxp"] = ServiceState.ACTIVE
    await world.op("retry", "kcxp-standby", who="bob", text="kcxp restarted by hand")
    await world.step_is("backup", "running")
    assert world.state("kcxp-standby") == "done"
    await world.op("skip", "backup", who="carol", text="backup taken yesterday")
    entries = world.h.journal.query(kinds="checklist_event", limit=None, newest_first=False)
    retry = next(e for e in entries if e.status == "step_retried")
    skip = next(e for e in entries if e.status == "step_skipped")
    assert (retry.actor, retry.reason, retry.data["step"]) == ("bob", "kcxp restarted by hand", "kcxp-standby")
    assert (skip.actor, skip.reason, skip.data["step"]) == ("carol", "backup taken yesterday", "backup")
    finished = next(e for e in entries if e.status == "step_finished" and e.data["step"] == "plan-ok")
    assert finished.actor == "alice" and finished.reason == "signed by IT and business"


async def test_actions_run_plans_after_confirmation_maintenance_is_held_and_rollback_restores(world):
    await world.runner.start_run("small", "alice", "weekend test")
    for step in ("plan-ok", "backup"):
        await world.op("done", step)
    await world.step_is("stop-all", "awaiting_confirmation")
    assert world.h.engine.state.mode.value == "maintenance", "maintenance before the phase's first step"
    assert world.h.world.critical_running() == ["ipc-a"], "nothing stops before the confirmation"
    await world.op("confirm", "stop-all", who="dave", text="window open, callers warned")
    await world.step_is("move-board", "running")
    assert world.h.world.critical_running() == []
    assert all(v is not ServiceState.ACTIVE for h in world.h.world.hosts.values() for v in h.services.values())
    plan_id = world.runner.status("current")["phases"][1]["steps"][0]["output"]["plan_id"]
    plan = world.h.store.get_plan(plan_id)
    assert plan.requested_by == "dave" and plan.status.value == "finished"
    await world.runner.operate("current", "rollback", "stop", "erin", "the board does not fit")
    await world.step_is("stop-all", "rolled_back")
    assert world.h.world.critical_running() == ["ipc-a"], "the way back started the services again"
    order = [e.data["step"] for e in world.h.journal.query(kinds="checklist_event", limit=None, newest_first=False)
             if e.status == "step_rolled_back"]
    assert order == ["all-stopped", "stop-all"], "reverse order; the manual step in progress was abandoned"
    await world.runner.operate("current", "abort", "", "erin", "try next weekend")
    assert world.h.engine.state.mode.value == "supervised", "the previous mode is back"
    modes = [(e.actor, e.data["to"]) for e in world.h.journal.query(kinds="mode_changed", newest_first=False)]
    assert modes == [("checklist:small-1", "maintenance"), ("checklist:small-1", "supervised")]


async def test_line_tests_drills_and_calls_run_through_their_ports(world):
    await world.runner.start_run("small", "alice", "weekend test")
    for step in ("plan-ok", "backup"):
        await world.op("done", step)
    await world.step_is("stop-all", "awaiting_confirmation")
    await world.op("confirm", "stop-all")
    await world.step_is("move-board", "running")
    world.h.world.hosts["ipc-a"].fail_actions.add("line_test")
    await world.op("done", "move-board")
    s = await world.step_is("line-a", "failed")
    assert s["maintenance"] is None, "the maintenance phase is over"
    assert "line_test failed on ipc-a" in s["phases"][2]["steps"][0]["note"]
    world.h.world.hosts["ipc-a"].fail_actions.clear()
    await world.op("retry", "line-a", text="span cable reseated")
    await world.step_is("drill", "awaiting_confirmation")
    assert world.h.world.ran[-1].startswith("ccfo-checklist-small-1-line-a-2-"), "a fresh action id per attempt"
    await world.op("confirm", "drill")
    s = await async_wait_until(lambda: world.runner.status("latest") if world.runner.status("latest")["status"] ==
                               "finished" else None, timeout=10)
    assert world.drills.ran == ["primary-software-fault"] and world.calls.ran == ["inbound"]
    assert s["status"] == "finished"
    report = await world.runner.report(s["id"], "md")
    assert "TEST DOUBLE drill primary-software-fault: passed" in report
    assert "# drill primary-software-fault (TEST DOUBLE)" in report, "the drill report is embedded"


async def test_without_the_drills_package_drill_steps_fail_saying_so(world):
    world.runner.drills = world.runner.calls = Unavailable()
    text = SMALL.split("  - id: stop\n")[0].replace("kind: check, planned: 1m,\n         timeout: 1s",
                                                      "kind: check, planned: 1m,\n         timeout: 5s")
    text += ("      - {id: drill, title: A drill, owner: operator, kind: drill, planned: 10m, drill: x,\n"
             "         confirm: false}\n")
    world.checklist = small_checklist(world.tmp, text)
    await world.runner.start_run("small", "alice", "no drills here")
    await world.op("done", "plan-ok")
    await world.op("done", "backup")
    s = await world.step_is("drill", "failed")
    assert "drills not available" in s["phases"][0]["steps"][-1]["note"]


async def test_only_one_open_run_and_unknown_or_invalid_checklists_are_refused(world):
    await world.runner.start_run("small", "alice", "first")
    with pytest.raises(Refused, match=r"small-1 .* is still open"):
        await world.runner.start_run("small", "bob", "second")
    with pytest.raises(NotFound):
        await world.runner.start_run("nope", "bob", "x")
    world.runner.library = lambda: ({}, [Problem(str(world.tmp / "bad.yaml"), 3, "phases", "broken")])
    with pytest.raises(InvalidChecklist, match=r"bad\.yaml:3: phases: broken"):
        await world.runner.start_run("bad", "bob", "x")


MANUAL_ONLY = """
name: small
title: Three manual steps
phases:
  - id: prep
    title: Preparation
    steps:
      - {id: plan-ok, title: Plan approved, owner: it-lead, kind: manual, planned: 10m}
      - {id: copy, title: Copy the software, owner: sysadmin, kind: manual, planned: 1h}
      - {id: backup, title: Back up the software, owner: sysadmin, kind: manual, planned: 30m, after: [plan-ok]}
"""


async def test_a_rehearsals_real_durations_plan_the_next_run(world):
    world.checklist = small_checklist(world.tmp, MANUAL_ONLY)
    reh = await world.runner.start_run("small", "alice", "rehearsal", rehearsal=True)
    for step, took in (("plan-ok", 120), ("copy", 3000), ("backup", 30)):
        world.clock.tick(took)
        await world.op("done", step)
    assert not world.runner.runs[reh.id].open
    real = await world.runner.start_run("small", "alice", "the real night")
    s = world.runner.status(real.id)
    assert s["planned_from"] == reh.id
    planned = {x["id"]: x["planned_s"] for x in s["phases"][0]["steps"]}
    assert planned == {"plan-ok": 120.0, "copy": 3000.0, "backup": 3030.0}, "copy and backup ran side by side"
    assert s["planned_finish"] == world.clock.t + 120 + 3030
    assert s["critical_path"] in (["plan-ok", "copy"], ["plan-ok", "backup"])
    fresh = await world.runner.operate(real.id, "abort", "", "alice", "enough")
    assert fresh.outcome == "aborted"
    third = await world.runner.start_run("small", "alice", "ignore the rehearsal", plan_from="none")
    assert world.runner.status(third.id)["phases"][0]["steps"][1]["planned_s"] == 3600.0


async def test_a_new_runner_over_the_same_journal_loses_nothing(world):
    world.drills.gate = asyncio.Event()
    await world.runner.start_run("small", "alice", "weekend test")
    world.clock.tick(60)
    await world.op("done", "plan-ok", text="approved")
    await world.op("done", "backup", text="backed up")
    await world.step_is("stop-all", "awaiting_confirmation")
    await world.op("confirm", "stop-all", who="dave", text="go")
    await world.step_is("move-board", "running")
    world.clock.tick(600)
    before = world.runner.status("current")
    path = world.h.journal.path
    # a second runner over a second connection to the same file: the controller restarted
    again = world.new_runner(Journal(path))
    await again.start()
    assert again.status(before["id"]) == before
    await again.close()
    # a drill caught mid-run when the controller stops is recorded as interrupted, and can be retried
    await world.op("done", "move-board", text="board moved")
    await world.step_is("drill", "awaiting_confirmation")
    await world.op("confirm", "drill")
    await asyncio.wait_for(world.drills.started.wait(), 10)
    await world.runner.close()  # stopped while the drill runs (SIGKILL of the real process: test_lab_controller_crash)
    third = world.new_runner(Journal(path))
    await third.start()
    s = third.status(before["id"])
    drill = next(x for x in s["phases"][2]["steps"] if x["id"] == "drill")
    assert drill["state"] == "failed" and drill["note"].startswith("interrupted")
    assert [x["state"] for x in s["phases"][1]["steps"]] == ["done", "done", "done"]
    world.drills.gate.set()
    await third.operate("current", "retry", "drill", "alice", "controller back")
    assert third.status("current")["awaiting_confirmation"] == ["drill"], "a retried drill waits for its go again"
    await third.operate("current", "confirm", "drill", "alice", "go")
    await async_wait_until(lambda: third.status("latest")["status"] == "finished", timeout=10)
    assert world.drills.ran == ["primary-software-fault", "primary-software-fault"]
    await third.close()


async def test_the_drills_package_adapters_fail_clearly_when_they_cannot_run(world):
    from controller.checklists.drills_port import PackageCalls, PackageDrills
    from controller.checklists.specs import CallKind, CallTestSpec

    drill = await PackageDrills(world.h.engine).run("no-such-drill")
    assert not drill.passed and "no drill named 'no-such-drill'" in drill.summary
    call = await PackageCalls(world.h.engine).run(CallTestSpec(CallKind.INBOUND))
    assert not call.passed and call.summary.startswith("no SIP plan")
