"""Rule 4 on the executor: the managed servers' agents are driven exactly like the IPCs' (journaled, verified),
each machine repointed then its readers restarted, and an unreachable server agent fails its step by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.plan import build_repoint_db
from ccfo.domain.state import SiteState
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")  # the shipped site: two IPCs and the servers of both data centers
ORDER = next(r.repoint_order for r in CFG.policy.rules if r.id == "database-site-fault")


@pytest.fixture
def parts(tmp_path: Path):
    journal, store = Journal(tmp_path / "j.sqlite"), Store(tmp_path / "s.sqlite")
    yield journal, store
    journal.close()
    store.close()


async def run(parts, world: FakeWorld):
    journal, store = parts
    ex = Executor(world, world, world, journal, store, host_ids=CFG.site.host_ids)
    state = SiteState.normal(CFG.site)
    plan = build_repoint_db(CFG.site, state, "shanghai", "test", order=ORDER)
    rec = store.add_plan(plan, status=PlanStatus.RUNNING, source="test", requested_by="t", reason="r", now=1.0)

    async def on_state(s: SiteState) -> None:
        pass
    return plan, rec, await ex.run(rec, state, on_state)


@pytest.mark.asyncio
async def test_each_agent_gets_its_repoint_then_its_readers_restart_in_the_rules_order(parts):
    world = FakeWorld(CFG.site, SiteState.normal(CFG.site))
    plan, rec, outcome = await run(parts, world)
    assert outcome.status is PlanStatus.FINISHED, outcome.error
    assert outcome.state.active_db == "shanghai"
    assert world.log == [
        ("ipc-a", "repoint_db", None), ("ipc-a", "restart", "kcbp"), ("ipc-a", "restart", "cti"),
        ("ipc-b", "repoint_db", None), ("ipc-b", "restart", "kcbp"),
        ("dbconn-sz", "repoint_db", None), ("dbconn-sz", "restart", "dbconn"),
        ("app-sz", "repoint_db", None), ("app-sz", "restart", "appserver"),
        ("app-sh", "repoint_db", None),
    ]
    for machine in ("ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh"):
        assert world.machine(machine).db_site == "shanghai"
    assert world.servers["app-sh"].services == {"appserver": "inactive"}, "the backup stays stopped"
    for name in ("ta-sz", "sms-sz", "cs-sz"):  # no database files: untouched
        assert not [e for e in world.log if e[0] == name]
    finished = {e.step: e for e in parts[0].query(plan_id=rec.id, kinds="step_finished", limit=None)}
    server_steps = [i for i, s in enumerate(plan.steps) if s.host in ("dbconn-sz", "app-sz", "app-sh")]
    assert len(server_steps) == 8, "3 repoints, 2 restarts, 3 verifications of the servers' reported database"
    assert all(finished[i].host == plan.steps[i].host for i in server_steps)


@pytest.mark.asyncio
async def test_an_unreachable_server_agent_fails_its_step_by_name_and_nothing_after_it_runs(parts):
    world = FakeWorld(CFG.site, SiteState.normal(CFG.site))
    world.servers["app-sz"].reachable = False
    plan, rec, outcome = await run(parts, world)
    assert outcome.status is PlanStatus.FAILED
    index = next(i for i, s in enumerate(plan.steps) if s.host == "app-sz")
    assert outcome.error is not None and outcome.error.startswith(
        f"step {index + 1} (back up and repoint the database config files on app-sz to shanghai) failed: "
        "AgentUnreachable: app-sz:")
    assert world.log[-2:] == [("dbconn-sz", "repoint_db", None), ("dbconn-sz", "restart", "dbconn")]
    assert world.servers["app-sh"].db_site == "shenzhen", "no step after the failed one ran"
    assert outcome.state.active_db == "shenzhen", "the new database is not recorded"
    (failed,) = parts[0].query(plan_id=rec.id, kinds="step_failed", limit=None)
    assert failed.host == "app-sz" and "app-sz" in failed.data["output"]
