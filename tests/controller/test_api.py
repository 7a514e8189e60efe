"""The operator API over HTTP (ASGI in-process; the live-lab tests use a real socket): auth, roles,
validation, the approve flow, journal, metrics."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
import pytest_asyncio

from ccfo.clients.agent_http import parse_report
from ccfo.platform.auth import TokenFileError, TokenStore, add_token
from controller.api.app import create_app
from controller.store import PlanStatus
from tests.controller.harness import Harness
from tests.support import async_wait_until


@pytest_asyncio.fixture
async def api(tmp_path):
    h = Harness(tmp_path)
    tokens_file = tmp_path / "tokens.yaml"
    toks = {role: add_token(tokens_file, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    toks["agent"] = add_token(tokens_file, "agent-ipc-a", "agent", host="ipc-a")
    toks["expired"] = add_token(tokens_file, "old", "operator", expires="2001-01-01T00:00:00")
    app = create_app(h.engine, TokenStore.load(tokens_file), parse_report)
    await h.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")
    client.toks = toks  # type: ignore[attr-defined]
    client.h = h  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await h.stop()


def auth(api, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.toks[role]}"}


MUTATIONS = [("POST", "/api/v1/failover", {"to": "ipc-b", "reason": "test run"}),
             ("POST", "/api/v1/switchover", {"to": "ipc-b", "reason": "test run"}),
             ("POST", "/api/v1/failback", {"reason": "test run"}),
             ("PUT", "/api/v1/mode", {"mode": "manual", "reason": "test run"}),
             ("POST", "/api/v1/plans/x/approve", {"reason": "test run"})]


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
async def test_mutations_refuse_missing_wrong_expired_and_viewer_tokens(api, method, path, body):
    r = await api.request(method, path, json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await api.request(method, path, json=body, headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    r = await api.request(method, path, json=body, headers=auth(api, "expired"))
    assert r.status_code == 401
    r = await api.request(method, path, json=body, headers=auth(api, "viewer"))
    assert r.status_code == 403
    r = await api.request(method, path, json=body, headers=auth(api, "agent"))
    assert r.status_code == 403


@pytest.mark.asyncio
async def test_failover_without_a_reason_is_refused(api):
    r = await api.post("/api/v1/failover", json={"to": "ipc-b"}, headers=auth(api, "operator"))
    assert r.status_code == 422
    r = await api.post("/api/v1/failover", json={"to": "ipc-b", "reason": ""}, headers=auth(api, "operator"))
    assert r.status_code == 422
    r = await api.post("/api/v1/failover", json={"to": "ipc-z", "reason": "abc"}, headers=auth(api, "operator"))
    assert r.status_code == 422 and "unknown host" in r.json()["detail"]


@pytest.mark.asyncio
async def test_operator_failover_runs_and_records_who_and_why(api):
    r = await api.post("/api/v1/failover", json={"to": "ipc-b", "reason": "board swap"}, headers=auth(api, "operator"))
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    await async_wait_until(lambda: api.h.store.get_plan(plan_id).status is PlanStatus.FINISHED, timeout=10)
    r = await api.get("/api/v1/journal", params={"kind": "operator_action"}, headers=auth(api, "viewer"))
    e = r.json()["entries"][0]
    assert (e["actor"], e["reason"], e["plan_id"]) == ("operator-user", "board swap", plan_id)
    s = (await api.get("/api/v1/status", headers=auth(api, "viewer"))).json()
    assert s["active_host"] == "ipc-b" and s["state"] == "failed over"
    r = await api.post("/api/v1/failover", json={"to": "ipc-b", "reason": "again"}, headers=auth(api, "operator"))
    assert r.status_code == 409 and "already the active host" in r.json()["detail"]


@pytest.mark.asyncio
async def test_proposal_approve_through_the_api(api):
    api.h.crash("ipc-a", "cti")
    plans = await async_wait_until(lambda: api.h.store.plans({PlanStatus.PROPOSED}), timeout=5)
    r = await api.get("/api/v1/plans", params={"status": "proposed"}, headers=auth(api, "viewer"))
    assert [p["id"] for p in r.json()["plans"]] == [plans[0].id]
    r = await api.post(f"/api/v1/plans/{plans[0].id}/approve", json={"reason": "looks right"},
                       headers=auth(api, "operator"))
    assert r.status_code == 200
    await async_wait_until(lambda: api.h.store.get_plan(plans[0].id).status is PlanStatus.FINISHED, timeout=10)


@pytest.mark.asyncio
async def test_status_shows_capacity_and_hosts(api):
    await async_wait_until(lambda: api.h.engine.snap and all(v.reachable for v in api.h.engine.snap.hosts.values()),
                           timeout=5)
    s = (await api.get("/api/v1/status", headers=auth(api, "viewer"))).json()
    assert s["state"] == "normal" and s["hosts"]["ipc-a"]["capacity"]["channels"] == 60
    assert s["capacity"]["channels"] == 90 and s["capacity"]["line"] == "with 0 agent call(s), 90 more IVR call(s) fit"
    assert s["you"] == {"name": "viewer-user", "role": "viewer"}


@pytest.mark.asyncio
async def test_mode_needs_admin(api):
    r = await api.put("/api/v1/mode", json={"mode": "maintenance", "reason": "weekend"}, headers=auth(api, "operator"))
    assert r.status_code == 403
    r = await api.put("/api/v1/mode", json={"mode": "maintenance", "reason": "weekend"}, headers=auth(api, "admin"))
    assert r.status_code == 200 and r.json() == {"mode": "maintenance"}


@pytest.mark.asyncio
async def test_agent_report_push_is_bound_to_its_host(api):
    body = {"host": "ipc-b", "ami": {"connected": True}, "board": {"driver": "up"}, "spans": [],
            "services": {}, "calls": {"ivr": 0, "agent": 0, "fax": 0}, "db": {"site": "shenzhen"}}
    r = await api.post("/api/v1/agents/ipc-b/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 403, "an agent token bound to ipc-a cannot report for ipc-b"
    body["host"] = "ipc-a"
    r = await api.post("/api/v1/agents/ipc-a/report", json={"host": "ipc-a"}, headers=auth(api, "agent"))
    assert r.status_code == 422
    r = await api.post("/api/v1/agents/ipc-a/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 204


@pytest.mark.asyncio
async def test_bodies_and_queries_are_bounded(api):
    r = await api.post("/api/v1/failover", content=b"{" + b" " * 70000 + b"}", headers={
        **auth(api, "operator"), "content-type": "application/json"})
    assert r.status_code == 413
    r = await api.get("/api/v1/journal", params={"limit": 100000}, headers=auth(api, "viewer"))
    assert r.status_code == 422


@pytest.mark.asyncio
async def test_metrics(api):
    r = await api.get("/metrics", headers=auth(api, "viewer"))
    assert r.status_code == 200 and 'ccfo_host_channels{host="ipc-a"}' in r.text and "ccfo_cycles_total" in r.text


def test_world_readable_token_file_is_refused(tmp_path):
    f = tmp_path / "tokens.yaml"
    add_token(f, "x", "viewer")
    os.chmod(f, 0o644)
    with pytest.raises(TokenFileError, match="readable or writable by others"):
        TokenStore.load(f)
    os.chmod(f, 0o600)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and TokenStore.load(f)
