"""Schemathesis with every check (`--checks all`) against the controller's API over real HTTP: 0 failures.

The controller of tests/controller (engine, executor and journal over the FakeWorld) serves on a loopback
port (tests/controller/apiserver.py), so the checks that send requests of their own (no token, an
undeclared method, a missing header) reach it as any client would. The schema is the app's own document.
Per operation, schemathesis's own phases as its runner builds them (examples, coverage, fuzzing; its
pytest plugin does not run on this pytest), positive and negative data, bounded examples, derandomized.
Every check: a status code the document does not list, a body that does not match its model, a content
type, a schema-valid request refused or a schema-invalid one accepted, a token not enforced, a method not
refused with 405 and the right `Allow`. The event stream never ends: test_api_schemathesis.py checks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test

from tests.controller.apiserver import Server

pytestmark = pytest.mark.timeout(600)
EXAMPLES = 5
ENDLESS = ("GET", "/api/v1/events")
SETTINGS = hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                               suppress_health_check=list(hypothesis.HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(Path(tmp_path_factory.mktemp("controller-http")))
    yield server
    server.close()


def schema_as(server: Server, role: str) -> schemathesis.BaseSchema:
    """The document, with this role's token as schemathesis's own header (so its negative cases that drop
    the token really go without one)."""
    doc = httpx.get(server.url + "/openapi.json", timeout=60).json()  # the served document (slow on a busy box)
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=server.url, headers=server.auth(role))
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return schema


def checker(label: str, calls: dict[str, int], failures: dict[str, str]) -> Any:
    """The test body schemathesis runs for each case of one operation: send it, run every check."""

    def check(case: schemathesis.Case) -> None:
        calls[label] = calls.get(label, 0) + 1
        try:
            case.call_and_validate()
        except BaseException as exc:  # schemathesis reports its findings as an exception group
            failures.setdefault(label, str(exc)[:1500])

    return check


def test_every_operation_passes_every_check(live: Server) -> None:
    server = live
    failures: dict[str, str] = {}
    calls: dict[str, int] = {}
    schemas = {role: schema_as(server, role) for role in ("admin", "agent")}
    for result in schemas["admin"].get_all_operations():
        label = f"{result.ok().method.upper()} {result.ok().path}"
        if tuple(label.split(" ", 1)) == ENDLESS:
            continue
        schema = schemas["agent" if label.endswith("/report") else "admin"]
        op = schema[result.ok().path][result.ok().method.upper()]
        check = checker(label, calls, failures)
        config = HypothesisTestConfig(project=schema.config, modes=list(HypothesisTestMode), settings=SETTINGS)
        SETTINGS(create_test(operation=op, test_func=check, config=config))()
    assert len(calls) >= 38 and ("POST", "/api/v1/failover") in {tuple(k.split(" ", 1)) for k in calls}
    assert sum(calls.values()) >= 20 * len(calls), calls  # the coverage phase alone sends dozens per operation
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
