"""Issue 15 item 6 on the live lab: a site whose hosts carry their calls on SIP trunks instead of E1 spans
(`LabLayout(telephony="sip")`: ipc-a on carrier-1 (res_pjsip, 30) and carrier-2 (chan_sip, 30), ipc-b on
carrier-1 (30)). Real agents list the trunks over AMI from the lab Asterisk; the real controller's status
API and `ccfo capacity` show C from the trunks; a trunk injected down lowers C, and the agent's FastAGI
admission (real TCP, as Asterisk asks it) refuses a transfer that no longer fits, then admits it again
once the trunk is back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.site import LabError
from tests.integration.test_lab_failover import start_lab
from tests.integration.test_lab_snmp import agi
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]


def trunks(status: dict, host: str) -> dict[str, tuple[str, str, int]]:
    return {t["name"]: (t["driver"], t["state"], t["channels"]) for t in status["hosts"][host]["trunks"]}


async def test_capacity_and_admission_follow_the_sip_trunks(tmp_path):
    lab, api, watch = await start_lab(tmp_path, telephony="sip")
    try:
        status = await async_wait_until(
            lambda: _status_when(api, lambda s: trunks(s, "ipc-a").get("carrier-2", ("", ""))[1] == "up"
                                 and trunks(s, "ipc-b").get("carrier-1", ("", ""))[1] == "up"), timeout=20)
        assert status["state"] == "normal", status["faults"]  # no DAHDI span: no board fault either
        assert trunks(status, "ipc-a") == {"carrier-1": ("pjsip", "up", 30), "carrier-2": ("sip", "up", 30)}
        assert trunks(status, "ipc-b") == {"carrier-1": ("pjsip", "up", 30)}
        assert status["hosts"]["ipc-a"]["spans"] == [] and status["hosts"]["ipc-a"]["capacity"]["channels"] == 60
        assert status["capacity"]["channels"] == 90

        offline = subprocess.run([sys.executable, "-m", "controller", "capacity", "--config", str(lab.layout.config),
                                  "--json"], capture_output=True, text=True, timeout=60, check=False)
        assert offline.returncode == 0, offline.stderr
        planned = json.loads(offline.stdout)
        assert planned["hosts"]["ipc-a"]["channels"] == 60 and planned["channels"] == 90
        assert [t["name"] for t in planned["hosts"]["ipc-a"]["trunks"]] == ["carrier-1", "carrier-2"]

        await lab.calls("ipc-a", ivr=20, agent=5)  # X + 2Y = 30, on carrier-1's channels
        await async_wait_until(lambda: _status_when(api, lambda s: (
            s["hosts"]["ipc-a"]["capacity"]["ivr_calls"], s["hosts"]["ipc-a"]["capacity"]["agent_calls"]) == (20, 5)),
            timeout=10)
        addr, port = lab.site["hosts"]["ipc-a"]["address"], lab.layout.agi_port
        admitted = await agi(addr, port, "admit?kind=agent")
        assert admitted["CCFO_ADMIT"] == "yes" and "<= 60" in admitted["CCFO_REASON"], admitted

        assert await lab.inject("ipc-a", "trunk", "carrier-2", "down") == "ipc-a trunk carrier-2 down"
        status = await async_wait_until(lambda: _status_when(
            api, lambda s: trunks(s, "ipc-a")["carrier-2"][1] == "down"), timeout=10)
        assert status["hosts"]["ipc-a"]["capacity"]["channels"] == 30
        refused = await async_wait_until(lambda: _agi_answer(addr, port, "no"), timeout=5)
        assert "no room" in refused["CCFO_REASON"] and "exceed C = 30" in refused["CCFO_REASON"], refused

        await lab.inject("ipc-a", "trunk", "carrier-2", "up")
        again = await async_wait_until(lambda: _agi_answer(addr, port, "yes"), timeout=10)
        assert "<= 60" in again["CCFO_REASON"], again
        await async_wait_until(lambda: _status_when(
            api, lambda s: s["hosts"]["ipc-a"]["capacity"]["channels"] == 60), timeout=10)

        with pytest.raises(LabError, match="ipc-b has no trunk 'carrier-9'"):
            await lab.inject("ipc-b", "trunk", "carrier-9", "down")
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()


async def _status_when(api, predicate):  # type: ignore[no-untyped-def]
    status = await api.status()
    try:
        return status if predicate(status) else None
    except KeyError:
        return None


async def _agi_answer(addr: str, port: int, want: str) -> dict[str, str] | None:
    answer = await agi(addr, port, "admit?kind=agent")
    return answer if answer.get("CCFO_ADMIT") == want else None
