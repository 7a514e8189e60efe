"""Two controller engines, each a member of a controller cluster on a real 3-member etcd, over one shared
set of agents (the in-memory world: its agents keep the highest leader term they have seen and refuse an
older one, as agents/terms.py does): only the elected member claims work and acts, under its term; the
follower refuses and names the leader; when the leader resigns the follower takes over with a higher term
and the agents follow the new term. The engines' own behaviour as leader or follower is unit-tested in
tests/controller/test_leadership.py; here the leadership is the real election."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.plan import build_failback, build_failover
from ccfo.domain.state import Mode, SiteState
from controller.cluster.election import Role
from controller.cluster.journalsync import JournalSync
from controller.cluster.node import ClusterNode
from controller.cluster.statesync import StateSync, SyncedLeadership, plans_prefix
from controller.engine import Engine, Refused
from controller.events import EventBus
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from lab.etcd import EtcdCluster
from tests.controller.fakeworld import FakeWorld
from tests.ha.test_cluster_node import config_with
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


class Member:
    def __init__(self, tmp: Path, cfg, name: str, world: FakeWorld) -> None:  # type: ignore[no-untyped-def]
        tmp.mkdir()
        self.node = ClusterNode.from_config(cfg, name)
        self.journal, self.store = Journal(tmp / "j.sqlite"), Store(tmp / "s.sqlite")
        ex = Executor(world, world, world, self.journal, self.store, host_ids=cfg.site.host_ids,
                      leadership=self.node.election)
        self.engine = Engine(cfg, self.store, self.journal, ex, EventBus())

    async def start(self) -> None:
        await self.engine.start(loop=False)
        assert await self.node.start() is None

    async def close(self) -> None:
        await self.engine.stop()
        await self.node.aclose()
        self.journal.close()
        self.store.close()


async def test_only_the_elected_member_acts_and_a_takeover_moves_the_term(tmp_path: Path, etcd3: EtcdCluster) -> None:
    cfg = load_config(config_with(tmp_path, etcd3.endpoints))
    cfg = replace(cfg, policy=replace(cfg.policy, rules=tuple(replace(r, debounce_by_fault={})
                                                              for r in cfg.policy.rules)))
    world = FakeWorld(cfg.site, SiteState.normal(cfg.site, cfg.site_model.controller.mode))
    a, b = Member(tmp_path / "a", cfg, "ctl-a", world), Member(tmp_path / "b", cfg, "ctl-b", world)
    try:
        await a.start()
        await async_wait_until(a.node.election.is_acting, timeout=15)
        await b.start()
        await async_wait_until(lambda: b.node.election.snapshot().leader == "ctl-a", timeout=15)
        assert not b.node.election.is_acting()
        term_a = a.node.election.term
        assert term_a is not None and a.engine.leadership is a.node.election

        plan = build_failover(cfg.site, a.engine.state, "ipc-b", "operator request")
        with pytest.raises(Refused, match=r"does not act now: ctl-b is a follower; ctl-a leads \(term \d+\)"):
            await b.engine.submit(plan, "olga", "sent to the follower")
        rec = await a.engine.submit(plan, "olga", "sent to the leader")
        await a.engine.wait_idle(15)
        assert a.store.get_plan(rec.id).status is PlanStatus.FINISHED
        assert world.critical_running() == ["ipc-b"] and {t for _, _, t in world.terms} == {term_a}
        ran_by_a = len(world.ran)

        await a.node.aclose()  # the leader resigns (its lease revoked): the follower takes over at once
        await async_wait_until(b.node.election.is_acting, timeout=15)
        term_b = b.node.election.term
        assert term_b is not None and term_b > term_a and not a.node.election.is_acting()
        back = build_failback(cfg.site, a.engine.state, 0.0, "operator request")
        with pytest.raises(Refused, match="does not act now"):
            await a.engine.submit(back, "olga", "sent to the old leader")
        assert len(world.ran) == ran_by_a, "the old leader started nothing"
        b.engine.state = a.engine.state  # one site state (until it lives in etcd): the failed-over site
        rec = await b.engine.submit(build_failback(cfg.site, b.engine.state, 0.0, "operator request"), "olga", "back")
        await b.engine.wait_idle(15)
        assert b.store.get_plan(rec.id).status is PlanStatus.FINISHED, b.store.get_plan(rec.id).error
        assert world.critical_running() == ["ipc-a"]
        assert {t for _, _, t in world.terms[ran_by_a:]} == {term_b}
        assert {h.highest_term for h in world.hosts.values()} == {term_b}
    finally:
        await a.close()
        await b.close()


class SyncedMember(Member):
    """A member whose engine acts only after taking the site state over from etcd (the service's wiring)."""

    def __init__(self, tmp: Path, cfg, name: str, world: FakeWorld) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tmp, cfg, name, world)
        self.sync: StateSync | None = None
        self.jsync: JournalSync | None = None

    async def start(self) -> None:
        self.sync = StateSync(self.node.election, self.node.client, self.engine.site.name, self.store,
                              self.engine.adopt, self.engine.mirror, mirror_s=3600)  # tests call mirror_once
        self.jsync = JournalSync(self.node.election, self.node.client, self.engine.site.name, self.journal)
        self.jsync.start()
        lead = SyncedLeadership(self.node.election, self.sync)
        self.engine.set_leadership(lead)
        self.node.election.on_change = lambda ld: self.sync.elected(ld.term) if ld.role is Role.LEADER else None  # type: ignore[union-attr]
        self.sync.start()
        await super().start()

    async def close(self) -> None:
        if self.sync is not None:
            await self.sync.aclose()
        if self.jsync is not None:
            await self.jsync.aclose()
        await super().close()


@pytest.mark.parametrize("mode", [Mode.SUPERVISED, Mode.AUTOMATIC])
async def test_a_plan_interrupted_by_the_loss_of_its_leader_is_resumed_by_the_next_with_no_step_twice(
        tmp_path: Path, etcd3: EtcdCluster, mode: Mode) -> None:
    """Supervised: the new leader shows the plan interrupted and an operator resumes it. Automatic: the new
    leader resumes it by itself (every step is idempotent by its agent action id)."""
    cfg = load_config(config_with(tmp_path, etcd3.endpoints))
    cfg = replace(cfg, site_model=cfg.site_model.model_copy(update={
        "controller": cfg.site_model.controller.model_copy(update={"mode": mode})}),
        policy=replace(cfg.policy, rules=tuple(replace(r, debounce_by_fault={}) for r in cfg.policy.rules)))
    world = FakeWorld(cfg.site, SiteState.normal(cfg.site, mode))
    a, b = SyncedMember(tmp_path / "a", cfg, "ctl-a", world), SyncedMember(tmp_path / "b", cfg, "ctl-b", world)
    real_action = world.action
    stuck = asyncio.Event()  # never set: the old leader's "start ivr on ipc-b" hangs, as if its host died there
    hung = asyncio.Event()
    windows: list[tuple[float, float | None]] = []

    async def action(host, action_id, act, **kw):  # type: ignore[no-untyped-def]
        if act == "start" and kw.get("service") == "ivr" and kw.get("term") == a.node.election.term:
            windows.append((time.time(), kw.get("valid_until")))  # the end of its acting window rides along
            hung.set()
            await stuck.wait()
        return await real_action(host, action_id, act, **kw)

    world.action = action  # type: ignore[method-assign]
    try:
        await a.start()
        await async_wait_until(a.engine.leadership.is_acting, timeout=15)
        await b.start()
        await async_wait_until(lambda: b.node.election.snapshot().leader == "ctl-a", timeout=15)
        plan = build_failover(cfg.site, a.engine.state, "ipc-b", "operator request")
        rec = await a.engine.submit(plan, "olga", "sent to the leader")
        await asyncio.wait_for(hung.wait(), 15)
        sent_at, until = windows[0]
        ttl = cfg.site_model.cluster.lease_ttl_s
        assert until is not None and sent_at < until < sent_at + ttl, (sent_at, until)
        ivr = next(i for i, st in enumerate(plan.steps) if st.service == "ivr" and st.host == "ipc-b")

        async def cursor_on_etcd() -> bool:  # the copy trails the SQLite write by one round trip
            got = await a.node.client.get(plans_prefix(cfg.site.name) + rec.id)
            return got.first is not None and f'"next_step": {ivr},' in got.first.text

        assert await async_wait_until(cursor_on_etcd, timeout=10)
        ran_before = list(world.ran)
        # the old leader's journal of the plan so far reaches the follower's file, each entry once
        by_a = [(e.ts, e.kind, e.step) for e in a.journal.query(plan_id=rec.id, limit=None)]

        def copied() -> bool:
            in_b = [(e.ts, e.kind, e.step) for e in b.journal.query(plan_id=rec.id, limit=None)]
            return sorted(in_b) == sorted(by_a)

        assert len(by_a) >= 8 and await async_wait_until(copied, timeout=10)

        await a.node.aclose()  # the leader is gone mid-plan (its lease revoked; its process is stuck)
        await async_wait_until(b.engine.leadership.is_acting, timeout=15)
        (entry,) = b.journal.query(kinds="plan_interrupted")
        assert entry.plan_id == rec.id and "the leader was lost while this plan ran" in (entry.reason or "")
        assert entry.data["from_step"] == ivr, "the cursor is at the step the old leader hung in"
        if mode is Mode.SUPERVISED:
            taken = b.store.get_plan(rec.id)
            assert taken is not None and taken.status is PlanStatus.INTERRUPTED, taken
            assert b.engine.state == SiteState.normal(cfg.site, mode), "the old leader had not reached set_state"
            for host in cfg.site.host_ids:
                b.engine.ingest(replace(await world.report(host), received_at=time.time()))
            for _ in range(3):
                await b.engine.cycle()
            assert b.store.get_plan(rec.id).status is PlanStatus.INTERRUPTED, "supervised: an operator decides"
            await b.engine.resume(rec.id, "olga", "continue under the new leader")
        else:
            for host in cfg.site.host_ids:  # the agents report to every member
                b.engine.ingest(replace(await world.report(host), received_at=time.time()))
            await b.engine.cycle()  # the new leader's first cycle as leader resumes it
            (resumed,) = b.journal.query(kinds="plan_resumed")
            assert resumed.actor == "controller" and "automatic mode" in (resumed.reason or "")
        await b.engine.wait_idle(15)
        done = b.store.get_plan(rec.id)
        assert done.status is PlanStatus.FINISHED, done.error
        assert world.critical_running() == ["ipc-b"]
        assert world.ran[:len(ran_before)] == ran_before and len(set(world.ran)) == len(world.ran), \
            "no agent action ran twice"
        assert {t for _, aid, t in world.terms if aid not in ran_before} == {b.node.election.term}
        # the new leader's record reaches etcd for the next one (the copy trails the SQLite write)

        async def finished_on_etcd() -> bool:
            got = await b.node.client.get(plans_prefix(cfg.site.name) + rec.id)
            return got.first is not None and '"status": "finished"' in got.first.text

        assert await async_wait_until(finished_on_etcd, timeout=10)
    finally:
        stuck.set()
        await a.close()
        await b.close()


async def test_a_follower_shows_the_site_state_the_leader_wrote(tmp_path: Path, etcd3: EtcdCluster) -> None:
    """Found by the lab test: a member that had never led answered `ccfo status` with the mode of its own
    start. A follower mirrors the state key; the leader keeps its own."""
    cfg = load_config(config_with(tmp_path, etcd3.endpoints))
    world = FakeWorld(cfg.site, SiteState.normal(cfg.site))
    a, b = SyncedMember(tmp_path / "a", cfg, "ctl-a", world), SyncedMember(tmp_path / "b", cfg, "ctl-b", world)
    try:
        await a.start()
        await async_wait_until(a.engine.leadership.is_acting, timeout=15)
        await b.start()
        await async_wait_until(lambda: b.node.election.snapshot().leader == "ctl-a", timeout=15)
        await a.engine.set_mode(Mode.MANUAL, "olga", "night work")

        async def mirrored() -> bool:  # the leader's copy trails its SQLite write by one etcd round trip
            assert b.sync is not None
            await b.sync.mirror_once()
            return b.engine.state.mode is Mode.MANUAL

        assert await async_wait_until(mirrored, timeout=10)
        assert b.engine.state == a.engine.state and not b.engine.leadership.is_acting()
        assert a.sync is not None and not await a.sync.mirror_once(), "the leader does not mirror itself"
    finally:
        await b.close()
        await a.close()
