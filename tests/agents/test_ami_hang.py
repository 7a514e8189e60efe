"""A frozen Asterisk is `ami=hung`, a refused or closed one `ami=lost`: the AMI link against the lab server,
whose Ping and Login we stall (received, never answered: what a SIGSTOPped Asterisk does), or which we close."""

from __future__ import annotations

import pytest

from agents.report import ami_state
from tests.lab.harness import monitored_lab
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio
QUICK = {"ping_interval_s": 0.2, "ping_timeout_s": 0.3, "connect_timeout_s": 0.5}


async def test_an_unanswered_ping_then_login_is_hung_and_an_answer_clears_it() -> None:
    async with monitored_lab(QUICK) as (lab, mon):
        assert ami_state(mon.snapshot()) == "up" and not mon.snapshot().hung
        lab.stall_actions(["Ping", "Login"])
        snap = await async_wait_until(lambda: (s := mon.snapshot()) and not s.connected and s.hung and s, timeout=5)
        assert ami_state(snap) == "hung"
        assert "Ping not answered" in (snap.error or ""), snap.error
        # reconnecting: TCP connects, the Login goes unanswered: still hung, not lost
        await async_wait_until(lambda: "Login not answered" in (mon.snapshot().error or ""), timeout=5)
        assert mon.snapshot().hung
        lab.stall_actions([])
        await async_wait_until(lambda: mon.snapshot().connected, timeout=5)
        assert not mon.snapshot().hung and ami_state(mon.snapshot()) == "up"


async def test_a_closed_asterisk_is_lost_not_hung() -> None:
    async with monitored_lab(QUICK) as (lab, mon):
        await lab.close()
        snap = await async_wait_until(lambda: (s := mon.snapshot()) and not s.connected and s, timeout=5)
        assert not snap.hung and ami_state(snap) == "lost"
        await async_wait_until(lambda: "cannot connect" in (mon.snapshot().error or ""), timeout=5)
        assert not mon.snapshot().hung
