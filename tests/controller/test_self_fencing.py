"""Self-fencing on the controller (`fencing.method: self`, controller/fencing.py), on the in-memory world
and a virtual clock: the plan for an unreachable primary starts nothing on the standby until the primary's
agent has certainly stopped its own CTI/IVR (last report + self_fence_after_s + margin), then goes on.
The agent's half is tested in tests/agents/test_selffence.py."""

from __future__ import annotations

import pytest

from ccfo.domain.plan import build_failover
from controller.fencing import SelfFencing
from controller.store import PlanStatus
from tests.controller.test_engine import Bench
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio


async def test_the_standby_starts_only_after_the_primary_has_fenced_itself(tmp_path) -> None:
    b = Bench(tmp_path)
    await b.engine.start(loop=False)
    await b.tick()
    last = b.clock.now()  # the primary's last report
    b.engine.executor.fencer = SelfFencing(10.0, 2.0, lambda host: last if host == "ipc-a" else None, b.clock)
    b.world.hosts["ipc-a"].reachable = False  # cut off: its agent will stop CTI/IVR itself after 10 s
    try:
        b.clock.advance(3.0)
        plan = build_failover(b.engine.site, b.engine.state, "ipc-b", "primary unreachable", source_reachable=False)
        rec = await b.engine.submit(plan, "olga", "primary unreachable")
        await async_wait_until(lambda: b.clock.sleepers > 0, timeout=5)  # the fence step waits
        assert ("ipc-b", "start", "cti") not in b.world.log and ("ipc-b", "start", "ivr") not in b.world.log
        b.clock.advance(8.9)  # 11.9 s after the last report: still inside after + margin
        assert ("ipc-b", "start", "cti") not in b.world.log
        b.clock.advance(0.2)
        await b.engine.wait_idle(10)
        done = b.store.get_plan(rec.id)
        assert done.status is PlanStatus.FINISHED, done.error
        assert ("ipc-b", "start", "cti") in b.world.log
        fence = next(e for e in b.journal.query(kinds="step_finished", limit=None) if "fencing.method self" in
                     str(e.data.get("output")))
        assert "ipc-a agent unreachable" in fence.data["output"] and "10 s without a controller + 2 s margin" in \
            fence.data["output"]
    finally:
        await b.close()
