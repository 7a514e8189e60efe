"""Controller HA in the engine and the executor, over the in-memory world on a virtual clock: a follower
observes and never decides, claims work or acts; a leader's term rides on every agent action; a leader
that stops acting (lease lapsed) or whose term an agent refuses stops before the next step and leaves the
plan interrupted for the acting leader. The real election on etcd is tested in tests/ha; here the
leadership is a stand-in whose answers the test sets (the engine only reads `is_acting()` and `term`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.health import ServiceState
from ccfo.domain.plan import build_failover
from ccfo.domain.rules import Disposition
from ccfo.domain.state import Mode, SiteState
from controller.admission import claim_drill
from controller.engine import Refused
from controller.status import status
from controller.store import PlanRecord, PlanStatus, Store
from tests.controller.test_engine import REPO, Bench


@dataclass
class Lead:
    acting: bool = True
    current: int | None = 7
    leader: str = "ctl-b"

    def is_acting(self) -> bool:
        return self.acting

    @property
    def term(self) -> int | None:
        return self.current if self.acting else None

    def describe(self) -> str:
        return "ctl-a leads (term 7), acting" if self.acting else f"ctl-a is a follower; {self.leader} leads (term 8)"

    def valid_until(self) -> float | None:
        return None


async def bench_with(tmp_path, lead: Lead, mode: Mode = Mode.SUPERVISED) -> Bench:
    b = Bench(tmp_path, mode)
    b.engine.set_leadership(lead)
    await b.engine.start(loop=False)
    await b.tick()
    return b


@pytest.mark.asyncio
async def test_a_follower_observes_but_never_decides_claims_or_acts(tmp_path) -> None:
    lead = Lead(acting=False)
    b = await bench_with(tmp_path, lead, Mode.AUTOMATIC)
    try:
        b.crash("ipc-a", "cti")
        for _ in range(3):
            d = await b.tick(5.0)
        assert d.disposition is Disposition.NONE and d.reason == "not acting: ctl-a is a follower; ctl-b leads (term 8)"
        assert b.plans(PlanStatus.RUNNING) == b.plans(PlanStatus.PROPOSED) == [] and b.world.ran == []
        assert b.journal.query(kinds="fault_seen") == [], "the leader journals; a follower only observes"
        plan = build_failover(b.engine.site, b.engine.state, "ipc-b", "operator request")
        with pytest.raises(Refused, match="does not act now: ctl-a is a follower; ctl-b leads"):
            await b.engine.submit(plan, "olga", "by hand")
        with pytest.raises(Refused, match="ctl-b leads"):
            await b.engine.set_mode(Mode.MAINTENANCE, "olga", "night work")
        claim, why = await claim_drill(b.engine.claims, "r1", "primary-cti-crash", "olga")
        assert claim is None and why is not None and "ctl-b leads" in why
        assert b.store.plans(None, 10) == [] and b.world.ran == []
        lead.acting = True  # elected: the same fault is now decided (automatic mode) and acted on
        d = await b.tick()
        d = await b.tick(5.0)
        await b.engine.wait_idle(10)
        assert b.world.critical_running() == ["ipc-b"], d.reason
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_a_followers_status_shows_the_faults_of_now(tmp_path) -> None:
    """Any member serves the status and the dashboard: a follower's faults follow the reports (a member
    deposed while cut off kept "both hosts unreachable" after the heal; the netns lab found it)."""
    lead = Lead(acting=False)
    b = await bench_with(tmp_path, lead, Mode.AUTOMATIC)
    try:
        b.crash("ipc-a", "cti")
        await b.tick(1.0)
        assert [f["fault"] for f in status(b.engine)["faults"]] == ["ipc-a:service:cti=down"]
        b.world.hosts["ipc-a"].services["cti"] = ServiceState.ACTIVE
        await b.tick(1.0)
        assert status(b.engine)["faults"] == [] and status(b.engine)["state"] == "normal"
        assert b.journal.query(kinds="fault_seen") == [] and b.world.ran == []
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_every_agent_action_carries_the_leaders_term(tmp_path) -> None:
    b = await bench_with(tmp_path, Lead(current=7))
    try:
        plan = build_failover(b.engine.site, b.engine.state, "ipc-b", "operator request")
        rec = await b.engine.submit(plan, "olga", "by hand")
        await b.engine.wait_idle(10)
        assert b.store.get_plan(rec.id).status is PlanStatus.FINISHED
        assert len(b.world.terms) >= 4 and {t for _, _, t in b.world.terms} == {7}, b.world.terms
        assert {h.highest_term for h in b.world.hosts.values()} == {7}
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_a_leader_that_stops_acting_mid_plan_stops_before_the_next_step(tmp_path) -> None:
    lead = Lead()
    b = await bench_with(tmp_path, lead)
    seen = b.world.action

    async def lapse_after_the_first_stop(host, action_id, action, **kw):  # type: ignore[no-untyped-def]
        result = await seen(host, action_id, action, **kw)
        if action == "stop":
            lead.acting = False  # the lease lapses while the first stop runs
        return result

    b.world.action = lapse_after_the_first_stop  # type: ignore[method-assign]
    try:
        plan = build_failover(b.engine.site, b.engine.state, "ipc-b", "operator request")
        rec = await b.engine.submit(plan, "olga", "by hand")
        await b.engine.wait_idle(10)
        done = b.store.get_plan(rec.id)
        assert done.status is PlanStatus.INTERRUPTED and done.error is not None
        assert "does not act now: ctl-a is a follower" in done.error and done.error.startswith("stopped before step")
        assert [a for _, a, _ in b.world.log] == ["stop"], "nothing ran after the lease lapsed"
        assert b.world.critical_running() == [] or b.world.critical_running() == ["ipc-a"]
        (entry,) = b.journal.query(kinds="plan_interrupted")
        assert entry.plan_id == rec.id and "stopped before step" in (entry.reason or "")
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_an_agent_that_has_seen_a_newer_term_deposes_the_leader(tmp_path) -> None:
    b = await bench_with(tmp_path, Lead(current=7))
    for h in b.world.hosts.values():
        h.highest_term = 9  # a newer leader has already acted here
    try:
        plan = build_failover(b.engine.site, b.engine.state, "ipc-b", "operator request")
        rec = await b.engine.submit(plan, "olga", "by hand")
        await b.engine.wait_idle(10)
        done = b.store.get_plan(rec.id)
        assert done.status is PlanStatus.INTERRUPTED, (done.status, done.error)
        assert "refused our leader term 7: the agent has seen term 9" in (done.error or "")
        assert b.world.ran == [] and b.world.critical_running() == ["ipc-a"], "the deposed leader changed nothing"
        failed = b.journal.query(kinds="step_failed")
        assert failed and "TermRefused" in str(failed[0].data)
    finally:
        await b.close()


def test_a_plan_record_survives_its_copy_to_etcd_and_back(tmp_path) -> None:
    """What a new leader reads from etcd is the record the old one wrote (controller/cluster/statesync.py);
    `put_plan` stores it as is, and only the leader's own writes are told to `on_write`."""
    cfg = load_config(REPO / "config")
    store = Store(tmp_path / "s.sqlite")
    told: list[tuple[str, dict]] = []
    store.on_write = lambda kind, doc: told.append((kind, doc))
    try:
        plan = build_failover(cfg.site, SiteState.normal(cfg.site, Mode.SUPERVISED), "ipc-b", "x")
        rec = store.add_plan(plan, status=PlanStatus.RUNNING, source="operator", requested_by="olga", reason="r",
                             now=1.0)
        rec = store.update_plan(rec, 2.0, next_step=3, decided_by="olga")
        back = PlanRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
        assert back == rec and [k for k, _ in told] == ["plan", "plan"] and told[-1][1]["next_step"] == 3
        other = Store(tmp_path / "other.sqlite")
        other.on_write = lambda kind, doc: told.append((kind, doc))
        other.put_plan(back)
        other.save_state(SiteState.normal(cfg.site, Mode.SUPERVISED), tell=False)
        assert other.get_plan(rec.id) == rec and len(told) == 2, "a taken-over record is not copied back"
        other.close()
    finally:
        store.close()


@pytest.mark.asyncio
async def test_a_new_leader_judges_no_fault_on_reports_from_before_it_began_to_act(tmp_path) -> None:
    lead = Lead(acting=False)
    b = await bench_with(tmp_path, lead, Mode.AUTOMATIC)
    try:
        await b.tick(1.0)
        b.world.hosts["ipc-b"].services["kcxp"] = ServiceState.FAILED
        await b.report("ipc-b")  # seen while a follower; then ipc-b's middleware comes back
        b.world.hosts["ipc-b"].services["kcxp"] = ServiceState.ACTIVE
        b.clock.advance(0.5)
        lead.acting = True
        for _ in range(3):
            b.clock.advance(0.5)
            await b.report("ipc-a")  # ipc-b's next report is late
            d = await b.engine.cycle()
            assert d.disposition is Disposition.NONE, d.reason
        assert b.journal.query(kinds="fault_seen") == [], "judged on a report from before this member acted"
        d = await b.tick()
        assert b.journal.query(kinds="fault_seen") == [] and d.disposition is Disposition.NONE, d.reason
    finally:
        await b.close()
