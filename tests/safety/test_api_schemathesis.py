"""Schemathesis against the controller's and the agent's OpenAPI, in process over ASGI (tests/safety/apikit.py).

Every operation of each app's own schema (taken from the app, so a new route is covered without editing this
file) gets generated requests with a valid token (the agent token for the report push, admin otherwise, so
the handlers run rather than stop at authentication: authentication has its own tests). Checks: no 5xx, the
body of every documented response matches its schema, the content type matches. The controller's document
lists every status code too: test_controller_schemathesis_all.py runs every check against it over HTTP.
The agent app serves no schema on purpose (`openapi_url=None`); its schema is still `app.openapi()`.

The event stream (GET /api/v1/events) never ends, so it is checked on its own below, not generated.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.safety.apikit import AgentApi, ControllerApi

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 8
ENDLESS = {("GET", "/api/v1/events")}


def controller_schema() -> dict:
    from ccfo.platform.auth import TokenStore
    from controller.service import build_app
    from tests.controller.harness import Harness

    with tempfile.TemporaryDirectory() as d:
        h = Harness(Path(d))
        try:
            return build_app(h.engine, TokenStore([])).openapi()
        finally:
            h.journal.close()
            h.store.close()


def agent_schema() -> dict:
    from agents.api import create_app
    from tests.agents.test_api_helpers import TOKEN, make_host

    with tempfile.TemporaryDirectory() as d:
        host = make_host(Path(d))
        return create_app("ipc-a", [TOKEN], host.report.build, host.executor).openapi()


CONTROLLER = schemathesis.openapi.from_dict(controller_schema())
AGENT = schemathesis.openapi.from_dict(agent_schema())


def operations(schema: schemathesis.BaseSchema) -> list[tuple[str, str]]:
    ops = [(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())]
    return [op for op in ops if op not in ENDLESS]


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


@pytest.mark.parametrize(("method", "path"), operations(CONTROLLER), ids=lambda v: v)
@SETTINGS
@given(data=st.data())
def test_controller_api_conforms_to_its_schema(controller: ControllerApi, method: str, path: str,
                                               data: st.DataObject) -> None:
    case = data.draw(CONTROLLER[path][method].as_strategy())
    role = "agent" if path.endswith("/report") else "admin"
    kwargs = case.as_transport_kwargs(base_url=controller.base_url, headers=controller.auth(role))
    case.validate_response(controller.send(kwargs), checks=CHECKS)


@pytest.mark.parametrize(("method", "path"), operations(AGENT), ids=lambda v: v)
@SETTINGS
@given(data=st.data())
def test_agent_api_conforms_to_its_schema(agent: AgentApi, method: str, path: str, data: st.DataObject) -> None:
    case = data.draw(AGENT[path][method].as_strategy())
    kwargs = case.as_transport_kwargs(base_url=agent.base_url, headers=agent.auth())
    case.validate_response(agent.send(kwargs), checks=CHECKS)


def test_schemas_cover_the_apps() -> None:
    assert len(operations(CONTROLLER)) >= 30 and ("POST", "/api/v1/failover") in operations(CONTROLLER)
    assert {("GET", "/v1/health"), ("GET", "/v1/report"), ("POST", "/v1/actions")} <= set(operations(AGENT))


def test_event_stream_needs_a_token_and_starts_with_a_comment(controller: ControllerApi) -> None:
    """Driven at the ASGI level: httpx's ASGI transport waits for the end of a body, and this one has none."""

    async def first_chunk(headers: dict[str, str]) -> tuple[int, str, bytes]:
        messages: list[dict] = []
        got, gone = asyncio.Event(), asyncio.Event()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/api/v1/events", "raw_path": b"/api/v1/events", "query_string": b"", "root_path": "",
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                 "client": ("127.0.0.1", 40000), "server": ("api", 80)}
        asked = False

        async def receive() -> dict:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and (message.get("body") or not message.get("more_body")):
                got.set()

        task = asyncio.create_task(controller.app(scope, receive, send))
        try:
            async with asyncio.timeout(10):
                await got.wait()
        finally:
            gone.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        start = next(m for m in messages if m["type"] == "http.response.start")
        ctype = dict(start["headers"]).get(b"content-type", b"").decode()
        return start["status"], ctype, next(m.get("body", b"") for m in messages if m["type"] == "http.response.body")

    assert controller.bg.run(first_chunk({}))[0] == 401
    status, ctype, chunk = controller.bg.run(first_chunk(controller.auth("viewer")))
    assert status == 200 and ctype.startswith("text/event-stream") and chunk.startswith(b": ccfo events")
