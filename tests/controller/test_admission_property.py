"""Property: whatever operator requests arrive together, interleaved with the engine's own cycles (and its
automatic plans), never two plans run at once and CTI/IVR never run on two hosts.

Hypothesis draws a sequence of bursts; the actions of one burst (a cycle after some seconds of the
virtual clock, operator submits in either direction, approve, reject, resume, abort, mode changes, crashes
and repairs, calls that hold a drain) run concurrently on one event loop over the in-memory world.
The journal is then folded with the campaign's own invariant (lab.campaign_check.concurrent_plans), and
the world's critical services are sampled at every event the engine publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfo.domain.health import ServiceState
from ccfo.domain.plan import PlanRefused, build_failback, build_failover, build_switchover
from ccfo.domain.state import Mode
from controller.engine import Refused
from controller.store import PlanStatus
from lab.campaign_check import concurrent_plans
from tests.controller.test_engine import Bench
from tests.support import async_wait_until

HOSTS = ("ipc-a", "ipc-b")
action = st.one_of(
    st.tuples(st.just("cycle"), st.sampled_from((0.0, 0.5, 1.0, 3.5, 6.0))),
    st.tuples(st.just("switchover"), st.sampled_from(HOSTS)),
    st.tuples(st.just("failover"), st.sampled_from(HOSTS)),
    st.tuples(st.just("failback")),
    st.tuples(st.just("approve")),
    st.tuples(st.just("reject")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("mode"), st.sampled_from(tuple(Mode))),
    st.tuples(st.just("crash"), st.sampled_from(HOSTS), st.sampled_from(("cti", "ivr"))),
    st.tuples(st.just("heal"), st.sampled_from(HOSTS), st.sampled_from(("cti", "ivr"))),
    st.tuples(st.just("calls"), st.sampled_from(HOSTS), st.integers(0, 3)),
)
bursts = st.lists(st.lists(action, min_size=1, max_size=5), min_size=1, max_size=10)


async def do(b: Bench, act: tuple[Any, ...]) -> None:
    e, kind = b.engine, act[0]
    with contextlib.suppress(Refused, PlanRefused, KeyError):
        if kind == "cycle":
            await b.tick(act[1])
        elif kind == "switchover":
            await e.submit(build_switchover(e.site, e.state, act[1], 2.0, "burst"), "op", "burst")
        elif kind == "failover":
            await e.submit(build_failover(e.site, e.state, act[1], "burst"), "op", "burst")
        elif kind == "failback":
            await e.submit(build_failback(e.site, e.state, 2.0, "burst"), "op", "burst")
        elif kind in ("approve", "reject"):
            proposed = b.plans(PlanStatus.PROPOSED)
            if proposed:
                await getattr(e, kind)(proposed[0].id, "op", "burst")
        elif kind in ("resume", "abort"):
            stopped = b.store.plans({PlanStatus.FAILED, PlanStatus.INTERRUPTED})
            if stopped:
                await getattr(e, kind)(stopped[0].id, "op", "burst")
        elif kind == "mode":
            await e.set_mode(act[1], "admin", "burst")
        elif kind == "crash" and b.world.hosts[act[1]].services[act[2]] is ServiceState.ACTIVE:
            b.crash(act[1], act[2])
        elif kind == "heal" and b.world.hosts[act[1]].services[act[2]] is ServiceState.FAILED:
            b.world.hosts[act[1]].services[act[2]] = ServiceState.ACTIVE  # systemd restarted what crashed
        elif kind == "calls":
            b.world.hosts[act[1]].calls = act[2]


async def scenario(tmp: Path, plan: list[list[tuple[Any, ...]]]) -> None:
    b = Bench(tmp, Mode.AUTOMATIC)
    both: list[list[str]] = []

    async def sample(_: Any) -> None:
        running = b.world.critical_running()
        if len(running) > 1:
            both.append(running)
    b.events.hook(sample)
    await b.engine.start(loop=False)
    try:
        await b.tick()
        for burst in plan:
            await asyncio.gather(*(do(b, act) for act in burst))
        for host in b.world.hosts.values():  # let every plan end: drains empty, time moves
            host.calls = 0
        for _ in range(400):
            if b.engine.running is None and not b.engine.claims.holders():
                break
            await async_wait_until(lambda: b.clock.sleepers or b.engine.running is None, timeout=10)
            b.clock.advance(1.0)
        await b.engine.wait_idle(10)
        rows = b.journal.query(newest_first=False, limit=None)
        _, overlapping = concurrent_plans((r.id, r.kind, r.plan_id) for r in rows)
        assert overlapping == []
        assert both == [], f"CTI/IVR on two hosts: {both[:3]}"
        assert b.store.plans({PlanStatus.RUNNING}) == [] and not b.engine.claims.holders()
    finally:
        await b.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bursts)
def test_operator_bursts_interleaved_with_cycles_never_run_two_plans(plan: list[list[tuple[Any, ...]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), plan))
