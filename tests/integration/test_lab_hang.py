"""A hung service is a failed service, on the live lab: SIGSTOP of the primary's CTI (or IVR) stand-in, whose
process stays alive and "active" to its status command, is seen through its liveness probe as `hung`
within 3 s; the controller proposes rule 2; after approval the standby serves, and the stop of the hung
service on the old primary needed SIGKILL, which the journal says."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest
import pytest_asyncio

from ccfo.snmp import layout as L
from tests.integration.labkit import Api, critical_hosts, running
from tests.integration.test_lab_failover import finished, start_lab
from tests.integration.test_lab_snmp import LAY, snmpwalk
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


@pytest_asyncio.fixture
async def site(tmp_path):
    lab, api, watch = await start_lab(tmp_path)
    yield lab, api
    for host in lab.site["hosts"]:  # never leave a stopped process behind
        for pidfile in lab.layout.run_dir(host).glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(pidfile.read_text().strip()), signal.SIGCONT)
    await watch.stop()
    await api.aclose()
    await lab.down()


async def fault_listed(api: Api, fault: str) -> dict | None:
    s = await api.status()
    return next((f for f in s["faults"] if f["fault"] == fault), None)


async def hang_and_fail_over(lab, api: Api, service: str) -> tuple[float, dict]:
    t0 = time.monotonic()
    said = await lab.inject("ipc-a", "service", service, "hang")
    assert said == f"ipc-a {service} hung (SIGSTOP)"
    fault = await async_wait_until(lambda: fault_listed(api, f"ipc-a:service:{service}=hung"), timeout=5,
                                   interval=0.05)
    seen_s = time.monotonic() - t0
    assert running(lab, "ipc-a", service), "a hung process is alive: only the probe can tell"
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=10, interval=0.05)
    assert proposed[0]["source"] == "primary-cti-ivr-fault"
    assert f"ipc-a:service:{service}=hung" in proposed[0]["reason"]
    assert critical_hosts(lab) == ["ipc-a"], "nothing moves before approval"
    r = await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "hung, approved"})
    assert r.status_code == 200, r.text
    await finished(api, proposed[0]["id"])
    assert critical_hosts(lab) == ["ipc-b"]
    assert not running(lab, "ipc-a", service)
    return seen_s, {"fault": fault, "plan": proposed[0]}


async def test_sigstop_of_the_primary_cti_is_hung_within_3_s_and_rule_2_moves_it(site):
    lab, api = site
    seen_s, got = await hang_and_fail_over(lab, api, "cti")
    assert seen_s < 3.0, f"ipc-a:service:cti=hung listed after {seen_s:.2f} s"
    status = await api.status()
    assert status["active_host"] == "ipc-b"
    journal = await api.journal(plan_id=got["plan"]["id"], kind="step_finished")
    stop = next(e for e in journal if e["data"]["text"].startswith("stop cti on ipc-a"))
    assert "escalated to SIGKILL" in stop["data"]["output"], stop


async def test_a_hung_ivr_is_stopped_by_escalation_and_the_journal_says_so(site):
    lab, api = site
    seen_s, got = await hang_and_fail_over(lab, api, "ivr")
    assert seen_s < 3.0, seen_s
    journal = await api.journal(plan_id=got["plan"]["id"])
    stop = next(e for e in journal if e["kind"] in ("step_finished", "step_failed")
                and e["data"]["text"].startswith("stop ivr on ipc-a"))
    assert stop["kind"] == "step_finished", stop
    output = stop["data"]["output"]
    assert f"ivr did not stop (the stop command did not finish within {lab.layout.stop_timeout_s:g} s" in output, output
    assert "escalated to SIGKILL (kill command" in output and output.endswith("ivr is inactive"), output
    # the healthy services on the old primary stopped with their stop command alone
    kcxp = next(e for e in journal if e["kind"] == "step_finished" and e["data"]["text"].startswith("stop kcxp on"))
    assert "stopped by its stop command (SIGTERM)" in kcxp["data"]["output"], kcxp


async def test_snmp_and_the_api_tell_a_hung_service_and_a_hung_asterisk_apart(site, tmp_path):
    """kcxp hung on the primary: CCFO-MIB says hung(7), its idle kcxp-replica inactive(2). Asterisk frozen:
    the API lists ipc-a:ami=hung (not ami=lost), the controller proposes rule 2 (the host cannot take
    calls), and ccfoAmiLink says hung(4)."""
    lab, api = site
    await lab.inject("ipc-a", "service", "kcxp", "hang")
    await async_wait_until(lambda: fault_listed(api, "ipc-a:service:kcxp=hung"), timeout=5, interval=0.05)
    walk = await snmpwalk(lab, "ipc-a", tmp_path)
    states = {name: walk.get(f"ccfoServiceState.{i}", LAY.service(L.SVC_STATE_COL, i))
              for i, name in enumerate(lab.site["hosts"]["ipc-a"]["services"], start=1)}
    assert states["kcxp"] == L.SERVICE_STATE["hung"] == 7, states
    assert states["kcxp-replica"] == L.SERVICE_STATE["inactive"] and states["cti"] == L.SERVICE_STATE["active"]
    await lab.inject("ipc-a", "service", "kcxp", "resume")

    t0 = time.monotonic()
    await lab.inject("ipc-a", "asterisk", "hang")
    try:
        await async_wait_until(lambda: fault_listed(api, "ipc-a:ami=hung"), timeout=10, interval=0.05)
        seen_s = time.monotonic() - t0
        status = await api.status()
        assert status["hosts"]["ipc-a"]["ami_state"] == "hung" and not await fault_listed(api, "ipc-a:ami=lost")
        proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=10, interval=0.05)
        assert proposed[0]["source"] == "primary-cti-ivr-fault" and "ipc-a:ami=hung" in proposed[0]["reason"]
        walk = await snmpwalk(lab, "ipc-a", tmp_path)
        assert walk.get("ccfoAmiLink.0", LAY.ami_link) == 4
        assert seen_s < 1.0 + 1.0 + 2.0, f"ping interval 1 s + ping timeout 1 s + a report: {seen_s:.2f} s"
    finally:
        await lab.inject("ipc-a", "asterisk", "resume")
    r = await api.post(f"/api/v1/plans/{proposed[0]['id']}/reject", {"reason": "Asterisk answers again"})
    assert r.status_code == 200, r.text
    await async_wait_until(lambda: _clear(api), timeout=30)
    assert critical_hosts(lab) == ["ipc-a"]


async def _clear(api: Api) -> bool:
    s = await api.status()
    return s["state"] == "normal" and not s["faults"] and s["hosts"]["ipc-a"]["ami_state"] == "up"
