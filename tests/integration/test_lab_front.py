"""The SIP front on the live lab: the controller routes new calls through the lab's Kamailio
(routing.method: kamailio); stopping Kamailio in the middle of a plan fails its route step with the
reason, visibly in the plan and the journal, and a restarted Kamailio takes the route from its list file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.clients.kamailio import KamailioRouter, KamailioRpc
from ccfo.config.loader import load_config
from drills.model import DrillsConfigModel
from drills.sipp import Sip, sip_plan
from tests.integration.labkit import Api
from tests.integration.test_lab_failover import start_lab
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


async def _step_running(api: Api, plan_id: str, kind: str) -> bool:
    p = await api.plan(plan_id)
    return p["status"] == "running" and p["steps"][p["next_step"]]["kind"] == kind


async def _ended(api: Api, plan_id: str) -> dict | None:
    p = await api.plan(plan_id)
    return p if p["status"] in ("finished", "failed", "aborted") else None


async def test_stopping_the_front_mid_plan_fails_the_route_step_with_the_reason(tmp_path: Path) -> None:
    lab, api, watch = await start_lab(tmp_path)
    try:
        site = lab.site
        k = site["routing"]["kamailio"]
        router = KamailioRouter(KamailioRpc(k["rpc_socket"]), k["list_file"], k["destinations"])
        assert [d.uri for d in await router.current()] == [k["destinations"]["ipc-a"], k["destinations"]["ipc-b"]]
        await lab.calls("ipc-a", 3, 1)  # the switchover waits for them: a window to stop the front
        r = await api.post("/api/v1/switchover", {"to": "ipc-b", "reason": "planned", "drain_timeout_s": 60})
        assert r.status_code == 202, r.text
        plan_id = r.json()["id"]
        await async_wait_until(lambda: _step_running(api, plan_id, "wait_drained"), timeout=20)
        assert "stopped" in await lab.inject("front", "down")
        await lab.calls("ipc-a", 0, 0)
        plan = await async_wait_until(lambda: _ended(api, plan_id), timeout=90)
        assert plan["status"] == "failed", plan
        failed = [e for e in await api.journal(plan_id=plan_id, kind="step_failed")]
        assert len(failed) == 1 and failed[0]["data"]["text"] == "route inbound calls to ipc-b,ipc-a"
        reason = failed[0]["data"]["output"]
        assert reason.startswith("the SIP front was not set: Kamailio is not reachable at ") and "rpc.sock" in reason
        assert "route inbound calls to ipc-b,ipc-a" in plan["error"] and "Kamailio is not reachable" in plan["error"]
        # the list file holds the route the controller asked for: a restarted Kamailio takes it
        assert "started" in await lab.inject("front", "up")
        assert [d.uri for d in await router.current()] == [k["destinations"]["ipc-b"], k["destinations"]["ipc-a"]]
        cfg = load_config(lab.layout.config)
        plan_sip = sip_plan(cfg, DrillsConfigModel())
        assert plan_sip is not None and plan_sip.front == (lab.layout.front_host, lab.layout.sip_port)
        sip = Sip(plan_sip, tmp_path / "sipp")
        try:
            out = await sip.inbound_one("ipc-b")
        finally:
            await sip.close()
        assert out.stats.succeeded == 1, "ipc-b's IVR (verified before the route step) answers through the front"
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()
