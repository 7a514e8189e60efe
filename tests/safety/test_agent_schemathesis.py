"""Schemathesis with every check (`--checks all`) against the agent's API over real HTTP: 0 failures.

The agent's API (agents/api.py) serves on a loopback port, on an event loop of its own thread, with the
agent tests' host: real lab daemons as its services and a real database config file to repoint; the AMI
side is the tests' fake (this test checks the HTTP contract, not Asterisk: the live lab's agent, with its
real AMI, is checked the same way in test_live_lab_schemathesis.py). The document is the agent's own,
fetched with its token from /v1/openapi.json. What runs and what is checked: tests/safety/schemakit.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agents.api import create_app
from agents.server import ApiServer
from tests.agents.test_api_helpers import TOKEN, make_host
from tests.safety.apikit import BackgroundLoop
from tests.safety.schemakit import run_all, schema_for

pytestmark = pytest.mark.timeout(300)
AUTH = {"Authorization": f"Bearer {TOKEN.secret}"}


def test_the_agent_document_is_its_own_and_every_operation_passes_every_check(tmp_path: Path) -> None:
    bg = BackgroundLoop()
    host = make_host(tmp_path)
    server = ApiServer(create_app("ipc-a", [TOKEN], host.report.build, host.executor), "127.0.0.1", 0)
    bg.run(server.start())
    try:
        assert httpx.get(server.url + "/v1/openapi.json", timeout=30).status_code == 401
        doc = httpx.get(server.url + "/v1/openapi.json", headers=AUTH, timeout=30).json()
        request = doc["components"]["schemas"]["ActionRequest"]
        service = next(s for s in request["properties"]["service"]["anyOf"] if s.get("type") == "string")
        assert service["enum"] == host.executor.services.names() and len(request["oneOf"]) == 4
        found = run_all({"agent": schema_for(doc, server.url, AUTH)}, examples=10, schema_of=lambda m, p: "agent")
        assert found.operations() >= {("GET", "/v1/report"), ("POST", "/v1/actions"), ("GET", "/readyz")}
        assert found.calls["POST /v1/actions"] >= 20, found.calls
        assert not found.failures, found.report()
    finally:
        bg.run(server.stop())
        bg.run(host.executor.aclose())
        host.stop_daemons()
        bg.close()
