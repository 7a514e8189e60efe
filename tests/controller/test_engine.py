"""The control loop on an in-memory world: detect, debounce, propose, approve, execute, restart, modes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from ccfo.config.loader import load_config
from ccfo.domain.health import DriverState, ServiceState
from ccfo.domain.plan import build_failover
from ccfo.domain.site import Duty
from ccfo.domain.state import Mode, SiteState
from controller.engine import Engine, Refused
from controller.events import EventBus
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld
from tests.support import async_wait_until

REPO = Path(__file__).resolve().parents[2]


class Harness:
    """Engine + executor over a FakeWorld, with a pump that pushes fresh reports like agents do."""

    def __init__(self, tmp: Path, mode: Mode = Mode.SUPERVISED) -> None:
        cfg = load_config(REPO / "config")
        model = cfg.site_model.model_copy(update={"controller": cfg.site_model.controller.model_copy(
            update={"mode": mode, "poll_interval_s": 0.05, "heartbeat_s": 0.2})})
        rules = cfg.rules_model
        policy = replace(cfg.policy, rules=tuple(replace(r, debounce_s=0.2, debounce_by_kind=())
                                                 for r in cfg.policy.rules))
        self.cfg = replace(cfg, site_model=model, policy=policy, rules_model=rules)
        self.tmp = tmp
        self.world = FakeWorld(cfg.site, SiteState.normal(cfg.site, mode))
        self._pump: asyncio.Task[None] | None = None
        self.open()

    def open(self) -> None:
        self.journal, self.store = Journal(self.tmp / "j.sqlite"), Store(self.tmp / "s.sqlite")
        ex = Executor(self.world, self.world, self.world, self.journal, self.store, host_ids=self.cfg.site.host_ids)
        self.engine = Engine(self.cfg, self.store, self.journal, ex, EventBus())

    async def start(self) -> None:
        await self.engine.start()
        self._pump = asyncio.create_task(self.pump())

    async def pump(self) -> None:
        while True:
            for host in self.cfg.site.host_ids:
                try:
                    report = await self.world.report(host)
                    self.engine.ingest(replace(report, received_at=time.time()))
                except Exception:
                    pass
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._pump:
            self._pump.cancel()
        await self.engine.stop()
        self.journal.close()
        self.store.close()

    def crash(self, host: str, service: str) -> None:
        self.world.hosts[host].services[service] = ServiceState.FAILED

    def plans(self, status: PlanStatus) -> list:
        return self.store.plans({status})


@pytest_asyncio.fixture
async def lab(tmp_path):
    h = Harness(tmp_path)
    await h.start()
    yield h
    await h.stop()


@pytest.mark.asyncio
async def test_supervised_cti_crash_is_proposed_then_approved_and_executed(lab):
    lab.crash("ipc-a", "cti")
    proposed = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    assert proposed[0].plan.action.value == "failover" and proposed[0].source == "primary-cti-ivr-fault"
    assert lab.world.critical_running() == ["ipc-a"], "nothing happens before the approval"
    await lab.engine.approve(proposed[0].id, "alice", "approved in the drill")
    await async_wait_until(lambda: lab.plans(PlanStatus.FINISHED), timeout=10)
    assert lab.world.critical_running() == ["ipc-b"]
    assert lab.engine.state.host("ipc-b").duty is Duty.TAKEOVER
    assert lab.store.load_state().host("ipc-a").duty is Duty.OUT, "the swap is persisted"
    approvals = lab.journal.query(kinds="plan_approved")
    assert approvals[0].actor == "alice" and approvals[0].reason == "approved in the drill"


@pytest.mark.asyncio
async def test_a_proposal_is_withdrawn_when_its_fault_clears(lab):
    lab.crash("ipc-a", "cti")
    proposed = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    lab.world.hosts["ipc-a"].services["cti"] = ServiceState.ACTIVE  # the CTI came back by itself
    gone = await async_wait_until(lambda: lab.plans(PlanStatus.SUPERSEDED), timeout=5)
    assert [p.id for p in gone] == [proposed[0].id] and "cleared" in (gone[0].error or "")
    assert lab.plans(PlanStatus.PROPOSED) == []
    with pytest.raises(Refused):
        await lab.engine.approve(proposed[0].id, "alice", "too late")
    assert lab.world.critical_running() == ["ipc-a"], "an approval of a withdrawn plan changes nothing"
    entry = (await async_wait_until(lambda: lab.journal.query(kinds="plan_rejected"), timeout=5))[-1]
    assert entry.plan_id == proposed[0].id and entry.actor == "controller" and entry.status == "superseded"


@pytest.mark.asyncio
async def test_a_rejected_proposal_is_not_proposed_again_until_the_situation_changes(lab):
    lab.crash("ipc-a", "cti")
    first = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    await lab.engine.reject(first[0].id, "alice", "we fix the CTI in place")
    cycles = lab.engine.cycles
    await async_wait_until(lambda: lab.engine.cycles >= cycles + 5, timeout=5)
    assert lab.plans(PlanStatus.PROPOSED) == [], "the rejected plan came straight back"
    lab.crash("ipc-a", "ivr")  # the situation changes: the controller asks again
    again = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    assert again[0].id != first[0].id and "ivr" in again[0].reason


@pytest.mark.asyncio
async def test_a_proposal_replaced_by_a_new_one_is_journaled_as_superseded(lab):
    """Found by the fault campaign: a proposal superseded by a newer one changed only in the plan store,
    so the journal's last word on it stayed "proposed" (silently lost from the timeline)."""
    lab.world.hosts["ipc-a"].driver = DriverState.DOWN  # rule 1: isolate the primary's board
    first = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    assert first[0].plan.action.value == "isolate_board"
    lab.crash("ipc-a", "cti")  # rule 2 outranks it: fail over instead
    gone = await async_wait_until(lambda: lab.plans(PlanStatus.SUPERSEDED), timeout=10,
                                  describe=lambda: [(p.status, p.plan.action.value) for p in lab.store.plans()])
    assert [p.id for p in gone] == [first[0].id]
    entries = await async_wait_until(lambda: lab.journal.query(kinds="plan_rejected", plan_id=first[0].id),
                                     timeout=5)
    assert len(entries) == 1 and entries[0].status == "superseded" and entries[0].actor == "controller"
    assert "new plan" in (entries[0].reason or "")


@pytest.mark.asyncio
async def test_automatic_mode_executes_without_approval(tmp_path):
    h = Harness(tmp_path, Mode.AUTOMATIC)
    await h.start()
    try:
        h.crash("ipc-a", "ivr")
        await async_wait_until(lambda: h.plans(PlanStatus.FINISHED), timeout=10)
        assert h.world.critical_running() == ["ipc-b"]
        assert h.engine.state.last_automatic_at is not None
    finally:
        await h.stop()


@pytest.mark.asyncio
async def test_maintenance_mode_reports_and_does_nothing(tmp_path):
    h = Harness(tmp_path, Mode.MAINTENANCE)
    await h.start()
    try:
        h.crash("ipc-a", "cti")
        await async_wait_until(lambda: h.journal.count(kinds="decision"), timeout=5)
        d = await async_wait_until(lambda: h.engine.decision if h.engine.decision and
                                   h.engine.decision.action.value == "failover" else None, timeout=5)
        assert d.disposition.value == "report"
        assert not h.store.plans(None) and h.world.critical_running() == ["ipc-a"]
    finally:
        await h.stop()


@pytest.mark.asyncio
async def test_one_plan_at_a_time(lab):
    lab.world.hosts["ipc-a"].calls = 5  # the switchover drains, so it stays running
    plan = lab.engine.site and build_failover(lab.engine.site, lab.engine.state, "ipc-b", "x")
    from ccfo.domain.plan import build_switchover
    rec = await lab.engine.submit(build_switchover(lab.engine.site, lab.engine.state, "ipc-b", 30, "x"), "bob", "r")
    with pytest.raises(Refused, match=f"plan {rec.id}"):
        await lab.engine.submit(plan, "carol", "second")
    lab.world.hosts["ipc-a"].calls = 0
    await async_wait_until(lambda: lab.plans(PlanStatus.FINISHED), timeout=10)


@pytest.mark.asyncio
async def test_a_plan_running_when_the_controller_dies_is_interrupted_and_resumable(tmp_path):
    h = Harness(tmp_path)
    await h.start()
    h.world.hosts["ipc-a"].calls = 5
    from ccfo.domain.plan import build_switchover
    rec = await h.engine.submit(build_switchover(h.engine.site, h.engine.state, "ipc-b", 60, "x"), "bob", "r")
    await async_wait_until(lambda: h.journal.count(kinds="step_started", plan_id=rec.id) >= 1, timeout=5)
    await h.stop()  # the controller dies mid-plan (draining: the switchover's first step)
    h.open()
    await h.start()
    try:
        got = h.store.get_plan(rec.id)
        assert got.status is PlanStatus.INTERRUPTED and got.next_step == 0
        assert h.journal.count(kinds="plan_interrupted", plan_id=rec.id) == 1
        h.world.hosts["ipc-a"].calls = 0
        await h.engine.resume(rec.id, "bob", "resume after restart")
        await async_wait_until(lambda: h.store.get_plan(rec.id).status is PlanStatus.FINISHED, timeout=10)
        assert h.world.critical_running() == ["ipc-b"]
    finally:
        await h.stop()


@pytest.mark.asyncio
async def test_mode_change_is_persisted_and_journaled(lab):
    await lab.engine.set_mode(Mode.MAINTENANCE, "admin", "weekend upgrade")
    assert lab.store.load_state().mode is Mode.MAINTENANCE
    e = lab.journal.query(kinds="mode_changed")[0]
    assert e.actor == "admin" and e.data == {"from": "supervised", "to": "maintenance"}


@pytest.mark.asyncio
async def test_reject_leaves_the_world_alone(lab):
    lab.crash("ipc-a", "cti")
    proposed = await async_wait_until(lambda: lab.plans(PlanStatus.PROPOSED), timeout=5)
    await lab.engine.reject(proposed[0].id, "alice", "false alarm")
    assert lab.store.get_plan(proposed[0].id).status is PlanStatus.REJECTED
    with pytest.raises(Refused):
        await lab.engine.approve(proposed[0].id, "alice", "changed my mind")
