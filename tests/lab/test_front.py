"""The SIP front against real processes: Kamailio (config/kamailio/kamailio.cfg) on the test's own loopback
address, in front of two hosts' IVR stand-ins (agents/lab_services.py execs a SIPp UAS while `ivr` runs),
routed by ccfo's Kamailio adapter (ccfo.clients.kamailio) over jsonrpcs; callers are SIPp UACs
(drills.sipp) whose call logs say which IVR answered and whether the front held the call."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ccfo.clients.kamailio import KamailioError
from drills.sipp import Sip, SipPlan, parse_screen
from tests.drills.labkit import sipp_pids
from tests.frontkit import Front
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]
_NETS = itertools.count(100 + os.getpid() % 50)


class Ivr:
    """One host's ivr service, started and stopped the way the agent does it (lab_services commands)."""

    def __init__(self, run: Path, addr: str, port: int, net: str) -> None:
        self.run = run
        run.mkdir(parents=True)
        (run / "ivr.sip").write_text(f"sip={addr}:{port}\nagent={net}.241:{port}\ndialout={net}.242:{port}\n"
                                     f"caller={net}.240\n")

    def __call__(self, verb: str) -> int:
        argv = [sys.executable, "-S", str(REPO / "agents" / "lab_services.py"), verb, "ivr", "--dir", str(self.run)]
        return subprocess.run(argv, timeout=30).returncode

    async def do(self, verb: str) -> int:
        return await asyncio.to_thread(self, verb)


class World:
    def __init__(self, tmp: Path) -> None:
        n = next(_NETS) % 250 + 2
        self.net = net = f"127.{n}.5"
        self.port = port = 5060 + next(_NETS) % 500
        self.ivr = {h: Ivr(tmp / h, f"{net}.{i}", port, net) for i, h in ((1, "ipc-a"), (2, "ipc-b"))}
        dest = {h: f"sip:{net}.{i}:{port}" for i, h in ((1, "ipc-a"), (2, "ipc-b"))}
        self.front = Front(tmp / "front", (f"{net}.200", port), dest, hold_s=8.0, hold_retry_s=0.5)
        plan = SipPlan({"ipc-a": (f"{net}.1", port), "ipc-b": (f"{net}.2", port)}, f"{net}.240",
                       (f"{net}.241", port), (f"{net}.242", port), front=(f"{net}.200", port), hold_s=8.0)
        self.sip = Sip(plan, tmp / "sipp")

    async def answered_by(self) -> tuple[str | None, ...]:
        out = await self.sip.front_call("call")
        return tuple(self.sip.plan.host_at(b) for b in out.fates.answered.values())


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    for ivr in w.ivr.values():
        assert await ivr.do("start") == 0
    await w.front.start(["ipc-a"])
    yield w
    await w.sip.close()
    await w.front.stop()
    for ivr in w.ivr.values():
        await ivr.do("stop")
    await async_wait_until(lambda: not sipp_pids(w.net), timeout=20, describe=lambda: sipp_pids(w.net))


async def test_calls_go_where_the_adapter_routes_them_and_the_route_reads_back(world: World) -> None:
    assert await world.answered_by() == ("ipc-a",)
    detail = await world.front.router.route(("ipc-b",))
    assert "ipc-b" in detail and "read back" in detail
    assert [d.uri for d in await world.front.router.current()] == [f"sip:{world.net}.2:{world.port}"]
    text = world.front.router.list_file.read_text()
    assert f"1 sip:{world.net}.2:{world.port} 9 1" in text and f"{world.net}.1:" not in text
    # a destination receives calls once its IVR answered the front's OPTIONS probe (at most ~1 s)
    assert await world.answered_by() == ("ipc-b",)
    await world.front.router.route(("ipc-a", "ipc-b"))
    assert await world.answered_by() == ("ipc-a",), "the first host listed is tried first"
    assert not list(world.front.router.list_file.parent.glob(".dispatcher.list.*")), "no temp file left behind"


async def test_a_restarted_front_keeps_the_route_from_its_list_file(world: World) -> None:
    await world.front.router.route(("ipc-b",))
    await world.front.stop()
    await world.front.start()  # no list written by the test: Kamailio reads what the adapter wrote
    assert [d.uri for d in await world.front.router.current()] == [f"sip:{world.net}.2:{world.port}"]
    assert await world.answered_by() == ("ipc-b",)


async def test_an_unreachable_front_is_a_failed_route_with_the_reason(world: World) -> None:
    await world.front.stop()
    with pytest.raises(KamailioError, match=r"Kamailio is not reachable at .*rpc\.sock"):
        await world.front.router.route(("ipc-b",))
    with pytest.raises(KamailioError, match="no SIP destination configured for ipc-z"):
        await world.front.router.route(("ipc-z",))


async def test_a_call_in_the_switch_gap_rings_longer_and_is_answered_by_the_new_host(world: World) -> None:
    assert await world.ivr["ipc-b"].do("stop") == 0
    assert await world.ivr["ipc-a"].do("stop") == 0  # the gap: no IVR serves anywhere
    await async_wait_until(lambda: _flags(world, "I"), timeout=10)  # the front's probe saw it
    call = asyncio.create_task(world.sip.front_call("gap"))
    await async_wait_until(lambda: "ccfo front: holding" in world.front.log.read_text(), timeout=10)
    await asyncio.sleep(1.5)  # the switch takes its time: the caller keeps ringing
    assert not call.done()
    assert await world.ivr["ipc-b"].do("start") == 0  # the new host's IVR serves...
    await world.front.router.route(("ipc-b", "ipc-a"))  # ...and only then are new calls routed to it
    out = await call
    assert out.stats.succeeded == 1 and list(out.fates.answered.values()) == [f"{world.net}.2:{world.port}"]
    assert out.fates.held == frozenset(out.fates.answered), "the 200 OK says the front held the call"
    assert parse_screen(Path(out.files["screen"])).get("180", 0) >= 1, "the caller heard ringing"
    assert out.stats.setup_ms is not None and out.stats.setup_ms >= 1500, "it rang longer than a normal call"


async def test_with_no_host_serving_the_hold_ends_in_503_after_the_limit(world: World) -> None:
    world.front.hold_s = 2.0
    await world.front.stop()
    await world.front.start()
    assert await world.ivr["ipc-a"].do("stop") == 0
    await async_wait_until(lambda: _flags(world, "I"), timeout=10)
    t0 = asyncio.get_running_loop().time()
    out = await world.sip.front_call("no-host")
    waited = asyncio.get_running_loop().time() - t0
    assert out.stats.succeeded == 0 and not out.fates.answered
    assert "SIP/2.0 503 No host serves" in Path(out.files["err"]).read_text(errors="replace")
    assert 1.5 <= waited < 6.0, f"held about hold_s (2 s), then refused; took {waited:.1f} s"


async def _flags(world: World, state: str) -> bool:
    return all(d.flags.startswith(state) for d in await world.front.router.current())
