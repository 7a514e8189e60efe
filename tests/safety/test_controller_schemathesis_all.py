"""Schemathesis with every check (`--checks all`) against the controller's API over real HTTP: 0 failures.

The controller of tests/controller (engine, executor and journal over the FakeWorld) serves on a loopback
port (tests/controller/apiserver.py), so the checks that send requests of their own (no token, an
undeclared method, a missing header) reach it as any client would. What runs and what is checked:
tests/safety/schemakit.py. The same against the live lab's controller and agent:
test_live_lab_schemathesis.py (slow). The event stream never ends: test_api_schemathesis.py checks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.controller.apiserver import Server
from tests.safety.schemakit import run_all, schema_for

pytestmark = pytest.mark.timeout(600)
EXAMPLES = 5
ENDLESS = ("GET", "/api/v1/events")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(Path(tmp_path_factory.mktemp("controller-http")))
    yield server
    server.close()


def test_every_operation_passes_every_check(live: Server) -> None:
    server = live
    doc = httpx.get(server.url + "/openapi.json", timeout=60).json()  # the served document (slow on a busy box)
    schemas = {role: schema_for(doc, server.url, server.auth(role)) for role in ("admin", "agent")}
    found = run_all(schemas, examples=EXAMPLES, skip=lambda m, p: (m, p) == ENDLESS,
                    schema_of=lambda m, p: "agent" if p.endswith("/report") else "admin")
    assert len(found.calls) >= 38 and ("POST", "/api/v1/failover") in found.operations()
    assert sum(found.calls.values()) >= 20 * len(found.calls), found.calls  # coverage alone sends dozens each
    assert not found.failures, found.report()
