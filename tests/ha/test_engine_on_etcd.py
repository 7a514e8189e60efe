"""Two controller engines, each a member of a controller cluster on a real 3-member etcd, over one shared
set of agents (the in-memory world: its agents keep the highest leader term they have seen and refuse an
older one, as agents/terms.py does): only the elected member claims work and acts, under its term; the
follower refuses and names the leader; when the leader resigns the follower takes over with a higher term
and the agents follow the new term. The engines' own behaviour as leader or follower is unit-tested in
tests/controller/test_leadership.py; here the leadership is the real election."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.plan import build_failback, build_failover
from ccfo.domain.state import SiteState
from controller.cluster.node import ClusterNode
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
