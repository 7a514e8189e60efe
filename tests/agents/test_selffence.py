"""Self-fencing on the agent (`fencing.method: self`, agents/selffence.py), with real stand-in CTI and IVR
processes and the agent's action executor; the clock is the test's (the watchdog compares only its own
monotonic readings): no controller answer for `after_s` stops CTI/IVR and refuses their start, a
controller's answer lifts the refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.actions import ActionRefused, ActionRequest
from agents.selffence import SelfFence
from agents.services import ServiceState
from tests.agents.test_api_helpers import make_host

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_no_controller_for_after_s_stops_cti_ivr_and_refuses_them_until_one_answers(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    clock = Clock()
    fence = SelfFence(host.services, ["cti", "ivr"], 10.0, clock=clock)
    host.executor.fence = fence
    try:
        for name in ("cti", "ivr"):
            await host.services.start(name)
        clock.t += 9.9
        await fence.check()
        assert not fence.fenced and host.services.effective("cti").state is ServiceState.ACTIVE
        clock.t += 0.2
        await fence.check()
        assert fence.fenced
        assert {n: host.services.effective(n).state for n in ("cti", "ivr")} == {
            "cti": ServiceState.INACTIVE, "ivr": ServiceState.INACTIVE}
        with pytest.raises(ActionRefused, match="self-fenced: no controller answered for 10 s; cti stays stopped"):
            await host.executor.run(ActionRequest(action_id="s1", action="start", service="cti"), "controller")
        assert host.services.effective("cti").state is ServiceState.INACTIVE
        fence.contact()  # the acting controller answers again
        assert not fence.fenced
        done = await host.executor.run(ActionRequest(action_id="s2", action="start", service="cti"), "controller")
        assert done.ok and host.services.effective("cti").state is ServiceState.ACTIVE
    finally:
        await host.executor.aclose()
        host.stop_daemons()


async def test_a_push_that_succeeds_keeps_the_agent_from_fencing(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    clock = Clock()
    fence = SelfFence(host.services, ["cti", "ivr"], 10.0, clock=clock)
    try:
        await host.services.start("cti")
        for _ in range(5):
            clock.t += 6.0
            fence.contact()
            await fence.check()
        assert not fence.fenced and host.services.effective("cti").state is ServiceState.ACTIVE
        assert fence.refusal("start", "cti") is None and fence.refusal("start", "kcxp") is None
    finally:
        await host.executor.aclose()
        host.stop_daemons()
