"""Schemathesis with every check (`--checks all`) against the live lab: its controller (a real `ccfo
controller` process over real agents, Asterisk stand-ins, SIPp and the Kamailio front) and an agent (the
standby's, with its real AMI connection), over real HTTP: 0 failures.

The documents are the servers' own (`/openapi.json` of the controller, `/v1/openapi.json` of the agent with
its token). Requests are real: a schema-valid failover or drill run really starts one, and the requests
after it meet a busy controller (409, which the document lists). The lab is this test's own and is thrown
away after it. What runs and what is checked: tests/safety/schemakit.py; the same over the fake world in
make test: test_controller_schemathesis_all.py and test_agent_schemathesis.py. Slow: `pytest -m slow`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.integration.test_lab_failover import start_lab
from tests.safety.schemakit import Findings, run_all, schema_for

pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(900)]
EXAMPLES = 5
ENDLESS = ("GET", "/api/v1/events")


async def test_the_live_lab_controller_and_agent_pass_every_check(tmp_path: Path) -> None:
    lab, api, watch = await start_lab(tmp_path)
    try:
        agent_url = lab.site["hosts"]["ipc-b"]["agent"]["url"]
        agent_auth = {"Authorization": "Bearer " + (lab.layout.config / "secrets" / "agent-token-ipc-b")
                      .read_text().strip()}
        async with httpx.AsyncClient(timeout=60) as c:
            controller_doc = (await c.get(lab.api + "/openapi.json")).json()
            agent_doc = (await c.get(agent_url + "/v1/openapi.json", headers=agent_auth)).json()
        controller = {role: schema_for(controller_doc, lab.api, api._h(role)) for role in ("admin", "viewer")}
        controller["agent"] = schema_for(controller_doc, lab.api, {
            "Authorization": "Bearer " + (lab.layout.config / "secrets" / "agent-token-ipc-a").read_text().strip()})
        # schemathesis's runner is synchronous and sends real requests: off the loop that runs the lab.
        ctl = await asyncio.to_thread(run_all, controller, examples=EXAMPLES, skip=lambda m, p: (m, p) == ENDLESS,
                                      schema_of=lambda m, p: "agent" if p.endswith("/report") else "admin")
        split_brain = list(watch.both)  # what the controller did under the onslaught (the agent's own
        # requests below start services directly, as the agent's token allows: not the controller's doing)
        agent = await asyncio.to_thread(run_all, {"agent": schema_for(agent_doc, agent_url, agent_auth)},
                                        examples=EXAMPLES, schema_of=lambda m, p: "agent")
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()
    assert len(ctl.calls) >= 38 and ("POST", "/api/v1/failover") in ctl.operations(), ctl.calls
    assert sum(ctl.calls.values()) >= 20 * len(ctl.calls), ctl.calls
    assert agent.operations() >= {("GET", "/v1/report"), ("POST", "/v1/actions")}
    assert agent.calls["POST /v1/actions"] >= 20, agent.calls
    assert watch.samples > 100 and split_brain == [], split_brain[:5]
    assert not ctl.failures and not agent.failures, _report(ctl, agent)


def _report(ctl: Findings, agent: Findings) -> str:
    return f"controller:\n{ctl.report()}\n\nagent:\n{agent.report()}"
