"""Issue 19 on the live lab: 20 operator requests sent at the same instant over real HTTP to the real
controller (real agents, lab AMI servers, stand-in daemons) start exactly one piece of work.

Supervised mode, the primary's CTI crashed, the controller's failover proposal waiting: then approve,
switchover, failover, failback and drill-start requests all at once. Exactly one is admitted; every
refused start is a 409, naming the plan that won where the refusal is the claim's (a failback is refused
earlier because the site state is still normal, a drill by its guard because a plan waits or runs). The
journal shows exactly one `plan_started` for the burst, also after the winner has finished, and the
independent process watcher never sees CTI/IVR on both hosts.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.labkit import Api
from tests.integration.test_lab_failover import finished, start_lab
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]


def burst(api: Api, proposed: str) -> list[tuple[str, str, dict]]:
    reason = {"reason": "one of twenty operators at once"}
    return ([("approve", f"/api/v1/plans/{proposed}/approve", reason)] * 4
            + [("switchover", "/api/v1/switchover", {"to": "ipc-b", "drain_timeout_s": 0, **reason})] * 4
            + [("failover", "/api/v1/failover", {"to": "ipc-b", **reason})] * 4
            + [("failback", "/api/v1/failback", {"drain_timeout_s": 0, **reason})] * 4
            + [("drill", "/api/v1/drills/runs", {"drill": "primary-cti-crash"})] * 4)


async def test_twenty_simultaneous_requests_start_exactly_one_piece_of_work(tmp_path):
    lab, api, watch = await start_lab(tmp_path)
    try:
        await lab.inject("ipc-a", "service", "cti", "crash")
        proposed = (await async_wait_until(lambda: api.plans("proposed"), timeout=30))[0]["id"]
        before = max((e["id"] for e in await api.journal()), default=0)
        requests = burst(api, proposed)
        answers = await asyncio.gather(*(api.post(path, body) for _, path, body in requests))
        kinds = [k for k, _, _ in requests]
        ok = [(k, r.json()) for k, r in zip(kinds, answers, strict=True) if r.is_success]
        assert len(ok) == 1, [(k, r.status_code, r.text) for k, r in zip(kinds, answers, strict=True)]
        winner = ok[0][1]["id"]
        for kind, r in zip(kinds, answers, strict=True):
            if r.is_success:
                continue
            detail = r.json()["detail"]
            assert r.status_code == 409, (kind, r.status_code, detail)
            if kind in ("approve", "switchover", "failover"):
                assert f"plan {winner}" in detail, (kind, detail)
            elif kind == "failback":
                assert f"plan {winner}" in detail or "already in its normal state" in detail, detail
            else:
                assert detail.startswith("drill primary-cti-crash not started: "), detail
        await finished(api, winner, timeout=90)
        entries = await api.journal(after_id=before)
        starts = [e for e in entries if e["kind"] in ("plan_started", "drill_started")]
        assert [(e["kind"], e["plan_id"]) for e in starts] == [("plan_started", winner)]
        skipped = [e for e in entries if e["kind"] == "drill_skipped"]
        assert len(skipped) == kinds.count("drill"), "every refused drill is journaled as skipped"
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()
