"""Both /metrics endpoints on the live lab, checked by Prometheus' own `promtool check metrics` and read back
against what happened: a span alarm (AMI events, an SNMP notification each side), a FastAGI admission, and
a standby fault whose plan an operator approves (fault -> decision -> plan finished, step durations).
The shipped scrape config and alert rules are checked in tests/deploy/test_prometheus_config.py."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.labkit import Api
from tests.integration.test_lab_failover import finished, start_lab
from tests.integration.test_lab_snmp import agi
from tests.support import ConditionTimeout, async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]
PROMTOOL = shutil.which("promtool")


async def promtool_check(text: str) -> tuple[int, str]:
    assert PROMTOOL is not None
    proc = await asyncio.create_subprocess_exec(PROMTOOL, "check", "metrics", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    return proc.returncode or 0, out.decode()


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def get(got: dict, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


async def scrape(api: Api, url: str, token: bool) -> str:
    headers = api._h("viewer") if token else {}
    r = await api.c.get(url, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return r.text


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus; `make test` "
                                             "installs it when run as root)")
async def test_promtool_accepts_both_endpoints_and_the_values_match_the_lab(tmp_path):
    lab, api, watch = await start_lab(tmp_path)
    try:
        agent_a = lab.site["hosts"]["ipc-a"]["agent"]["url"]
        await lab.inject("ipc-b", "service", "kcxp", "crash")
        proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=20)
        assert proposed[0]["action"] == "isolate_standby", proposed
        await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "metrics test"})
        plan = await finished(api, proposed[0]["id"])
        await lab.inject("ipc-a", "span", "2", "red")
        admitted = await agi(lab.site["hosts"]["ipc-a"]["address"], lab.layout.agi_port, "admit?kind=agent")
        assert admitted["CCFO_ADMIT"] == "yes", admitted

        async def both() -> tuple[dict, dict, str, str] | None:
            ctl, agent = await scrape(api, "/metrics", True), await scrape(api, f"{agent_a}/metrics", False)
            c, a = parse(ctl), parse(agent)
            done = (get(c, "ccfo_decision_to_plan_finished_seconds_count", outcome="finished") == 1
                    and get(c, "ccfo_snmp_notifications_total", notification="span_alarm_raised") >= 1
                    and get(c, "ccfo_faults_present", kind="span_alarm") == 1
                    and get(a, "ccfo_agent_report_push_seconds_count", result="ok") > 0)
            return (c, a, ctl, agent) if done else None

        async def seen() -> str:  # what the wait saw last, when it times out
            c, a = parse(await scrape(api, "/metrics", True)), parse(await scrape(api, f"{agent_a}/metrics", False))
            return str({"finished": get(c, "ccfo_decision_to_plan_finished_seconds_count", outcome="finished"),
                        "span_alarm_raised": get(c, "ccfo_snmp_notifications_total", notification="span_alarm_raised"),
                        "span_alarm_faults": get(c, "ccfo_faults_present", kind="span_alarm"),
                        "pushes": get(a, "ccfo_agent_report_push_seconds_count", result="ok")})

        try:
            c, a, ctl_text, agent_text = await async_wait_until(both, timeout=15)
        except ConditionTimeout as exc:
            raise AssertionError(f"{exc}: {await seen()}") from exc
        for name, text in (("controller", ctl_text), ("agent", agent_text)):
            rc, out = await promtool_check(text)
            assert rc == 0 and out.strip() == "", f"promtool check metrics on the {name}'s /metrics:\n{out}"

        # the controller: what the journal and the status say
        status: dict[str, Any] = await api.status()
        for host, view in status["hosts"].items():
            cap = view["capacity"]
            assert get(c, "ccfo_host_channels", host=host) == cap["channels"], (host, cap)
            assert get(c, "ccfo_host_free_channels", host=host) == cap["free"], (host, cap)
            assert get(c, "ccfo_host_reachable", host=host) == 1
        assert get(c, "ccfo_mode", mode="supervised") == 1
        assert get(c, "ccfo_plans", status="finished") == 1
        assert get(c, "ccfo_fault_to_decision_seconds_count", disposition="propose") >= 1
        steps = sum(v for (n, labels), v in c.items() if n == "ccfo_plan_step_duration_seconds_count")
        assert steps == len(plan["steps"]), (steps, plan["steps"])
        entries = await api.journal(kind="plan_finished")
        assert get(c, "ccfo_journal_entries_total", kind="plan_finished") == len(entries) == 1
        # the agent of ipc-a: its AMI session, the alarm, the admission, its own capacity
        assert get(a, "ccfo_agent_ami_connected", host="ipc-a") == 1
        assert get(a, "ccfo_agent_ami_reconnects_total") == 0
        assert get(a, "ccfo_agent_span_healthy", host="ipc-a", span="2") == 0
        assert get(a, "ccfo_agent_span_healthy", host="ipc-a", span="1") == 1
        assert get(a, "ccfo_agent_channels", host="ipc-a") == 30
        assert sum(v for (n, _), v in a.items() if n == "ccfo_agent_ami_events_total") > 0
        assert get(a, "ccfo_agent_admissions_total", result="admitted", reason="capacity") == 1
        assert get(a, "ccfo_agent_snmp_notifications_total", notification="span_alarm_raised") == 1
        assert get(a, "ccfo_agent_service_active", host="ipc-a", service="cti") == 1
        # the controller's /metrics needs a viewer token; the agent's needs none and serves nothing else
        assert (await api.c.get("/metrics")).status_code == 401
        async with httpx.AsyncClient(timeout=5) as plain:
            assert (await plain.get(f"{agent_a}/v1/report")).status_code == 401
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()
