"""Verification calls and the steady load against a real SIP endpoint: the lab's `ivr` stand-in
(agents/lab_services.py execs a SIPp UAS while the service runs) on the test's own 127.x.3 addresses,
behind a real Kamailio front (config/kamailio/, tests/frontkit.py) that holds calls for 2 s at most.
Every figure is checked against SIPp's own statistics files and call logs; no SIPp process outlives the test."""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from drills.load import Load
from drills.sipp import Sip, SipPlan, parse_screen, parse_stat_csv
from tests.drills.labkit import sipp_pids
from tests.frontkit import Front
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]
_NETS = itertools.count(150 + os.getpid() % 50)


class Ivr:
    """One host's ivr service, started and stopped the way the agent does it (lab_services commands)."""

    def __init__(self, run: Path, net: str, port: int) -> None:
        self.run = run
        run.mkdir(parents=True)
        (run / "ivr.sip").write_text(f"sip={net}.1:{port}\nagent={net}.241:{port}\ndialout={net}.242:{port}\n"
                                     f"caller={net}.240\n")

    def __call__(self, verb: str) -> int:
        argv = [sys.executable, "-S", str(REPO / "agents" / "lab_services.py"), verb, "ivr", "--dir", str(self.run)]
        return subprocess.run(argv, timeout=30).returncode

    def crash(self) -> None:
        os.kill(int((self.run / "ivr.pid").read_text()), signal.SIGKILL)


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Ivr, Sip, str]]:
    net = f"127.{next(_NETS) % 250 + 2}.3"
    port = 5060 + next(_NETS) % 500
    ivr = Ivr(tmp_path / "run", net, port)
    front = Front(tmp_path / "front", (f"{net}.200", port), {"ipc-a": f"sip:{net}.1:{port}",
                                                              "ipc-b": f"sip:{net}.2:{port}"}, hold_s=2.0)
    plan = SipPlan({"ipc-a": (f"{net}.1", port), "ipc-b": (f"{net}.2", port)}, f"{net}.240", (f"{net}.241", port),
                   (f"{net}.242", port), front=(f"{net}.200", port), hold_s=2.0)
    sip = Sip(plan, tmp_path / "sipp")
    assert await asyncio.to_thread(ivr, "start") == 0
    await front.start(["ipc-a", "ipc-b"])
    yield ivr, sip, net
    await sip.close()
    await front.stop()
    await asyncio.to_thread(ivr, "stop")
    await async_wait_until(lambda: not sipp_pids(net), timeout=20, describe=lambda: sipp_pids(net))


def last_row(path: str) -> dict[str, str]:
    rows = list(csv.reader(Path(path).read_text().splitlines(), delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False))


async def test_inbound_passes_only_when_the_active_host_alone_answers(world) -> None:
    _, sip, _ = world
    ok = await sip.inbound("ipc-a")
    assert ok.passed and ok.answered_by == ("ipc-a",), ok.detail
    front, b = (last_row(f) for f in ok.files)
    assert (front["SuccessfulCall(C)"], b["FailedCall(C)"]) == ("1", "1"), "ipc-b has no IVR: its direct call fails"
    assert "through the front: answered by ipc-a" in ok.detail
    assert ok.stats.attempted == 2 and ok.stats.succeeded == 1 and ok.stats.setup_ms is not None
    wrong = await sip.inbound("ipc-b")
    assert not wrong.passed and "answered by ipc-a; expected the active host ipc-b" in wrong.detail


async def test_a_crashed_ivr_takes_its_sip_endpoint_down_and_a_restart_brings_it_back(world) -> None:
    ivr, sip, _ = world
    ivr.crash()
    down = await sip.inbound("ipc-a")
    assert not down.passed and down.answered_by == ()
    assert await asyncio.to_thread(ivr, "status") == 1, "dead, pid file left: what the agent reports as failed"
    assert await asyncio.to_thread(ivr, "start") == 0
    assert (await sip.inbound("ipc-a")).passed


async def test_agent_answer_and_outbound_go_through_the_ivr_to_the_far_ends(world) -> None:
    ivr, sip, _ = world
    agent = await sip.agent_answer("ipc-a")
    assert agent.passed, agent.detail
    caller, phone = (last_row(f) for f in agent.files)
    assert caller["SuccessfulCall(C)"] == phone["SuccessfulCall(C)"] == "1"
    assert parse_screen(Path(agent.files[0]).with_suffix(".screen")).get("302") == 1, "the IVR transferred"
    out = await sip.outbound("ipc-a")
    assert out.passed, out.detail
    assert last_row(out.files[1])["SuccessfulCall(C)"] == "1", "the far end answered the host's call out"
    await asyncio.to_thread(ivr, "stop")
    failed = await sip.agent_answer("ipc-a")
    assert not failed.passed and "the agent phone got no call" in failed.detail


async def test_the_steady_load_goes_through_the_front_and_counts_refused_held_and_answered(world) -> None:
    ivr, sip, net = world
    load = Load(sip, 4.0, 60)
    await load.enter("drill")
    first = load.segments[0].proc
    csv_file, calls = Path(first.files["csv"]), Path(first.files["calls"])
    await async_wait_until(lambda: (s := parse_stat_csv(csv_file)) and s.succeeded >= 3, timeout=20)
    ivr.crash()  # calls in progress are cut; new calls are held 2 s, then refused (503)
    err = Path(first.files["err"])
    await async_wait_until(lambda: err.exists() and "SIP/2.0 503" in err.read_text(errors="replace"), timeout=20)
    assert await asyncio.to_thread(ivr, "start") == 0
    await async_wait_until(lambda: " X-CCFO-Held" in calls.read_text(), timeout=20)  # held, then answered
    await load.enter("way_back")
    await async_wait_until(lambda: (s := parse_stat_csv(Path(load.segments[-1].proc.files["csv"])))
                           and s.succeeded >= 2, timeout=20)
    await load.stop()
    drill, back = load.figures("drill"), load.figures("way_back")
    row = last_row(str(csv_file))
    assert drill["attempted"] == int(row["TotalCallCreated"]) and drill["failed"] == int(row["FailedCall(C)"]) >= 1
    assert drill["succeeded"] == int(row["SuccessfulCall(C)"]) >= 3
    assert drill["calls_refused"] >= 1 and drill["calls_held"] >= 1, drill
    assert drill["failed"] == drill["calls_refused"] + drill["calls_cut"], "every failed call is refused or cut"
    assert drill["answered_by"] == {f"{net}.1:{(sip.plan.endpoints['ipc-a'])[1]}": drill["attempted"]
                                    - drill["calls_refused"]}, "only ipc-a's IVR ever answered"
    assert back["succeeded"] >= 2 and back["calls_refused"] == 0 and len(load.segments) == 2
    assert all(seg.outcome and seg.outcome.returncode is not None for seg in load.segments), "soft exits, no kill"
    await load.enter("later")
    assert len(load.segments) == 2, "a stopped load stays stopped"
