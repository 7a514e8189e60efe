"""The operator API over HTTP (ASGI in-process; the live-lab tests use a real socket): auth, roles,
validation, the approve flow, journal, metrics."""

from __future__ import annotations

import os
import stat

import httpx
import pytest
import pytest_asyncio

from ccfo.platform.auth import TokenFileError, TokenStore, add_token
from controller.service import build_app, stop_services
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
    app = build_app(h.engine, TokenStore.load(tokens_file))
    await h.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")
    client.toks = toks  # type: ignore[attr-defined]
    client.h = h  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await stop_services(app)
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
    assert r.headers["X-Ccfo-Acting"] == "yes", "a controller alone acts: its answer is contact for self-fencing"


@pytest.mark.asyncio
async def test_a_follower_takes_a_report_and_says_it_does_not_act(api):
    """An agent counts only the acting leader's answer as contact (self-fencing, agents/reporter.py)."""
    from tests.controller.test_leadership import Lead

    api.h.engine.set_leadership(Lead(acting=False))
    body = {"host": "ipc-a", "ami": {"connected": True}, "board": {"driver": "up"}, "spans": [],
            "services": {}, "calls": {"ivr": 3, "agent": 0, "fax": 0}, "db": {"site": "shenzhen"}}
    r = await api.post("/api/v1/agents/ipc-a/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 204 and r.headers["X-Ccfo-Acting"] == "no"


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
    assert r.status_code == 200 and 'ccfo_host_channels{host="ipc-a"}' in r.text
    assert "ccfo_engine_cycles_total" in r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert (await api.get("/metrics")).status_code == 401


def test_world_readable_token_file_is_refused(tmp_path):
    f = tmp_path / "tokens.yaml"
    add_token(f, "x", "viewer")
    os.chmod(f, 0o644)
    with pytest.raises(TokenFileError, match="readable or writable by others"):
        TokenStore.load(f)
    os.chmod(f, 0o600)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and TokenStore.load(f)


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "body"), [("/api/v1/failover", {"to": "ipc-b"}),
                                            ("/api/v1/switchover", {"to": "ipc-b", "drain_timeout_s": 5})])
async def test_a_dry_run_answers_the_plan_from_live_state_and_runs_nothing(api, path, body):
    await async_wait_until(lambda: api.h.engine.snap is not None, timeout=5)
    before = api.h.journal.query(limit=None)
    r = await api.post(path, params={"dry_run": "true"}, json=body | {"reason": "what would it do"},
                       headers=auth(api, "operator"))
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["dry_run"] is True and d["site"] == api.h.cfg.site.name
    texts = [s["text"] for s in d["plan"]["steps"]]
    assert len(texts) >= 5 and any("ipc-b" in t for t in texts), texts
    assert d["plan"]["action"] == path.rsplit("/", 1)[1]
    assert api.h.store.plans(None, 50) == [], "a dry run stores no plan"
    assert [e.kind for e in api.h.journal.query(limit=None)] == [e.kind for e in before], "and journals nothing"
    assert api.h.engine.running is None and api.h.engine.state.active_host == "ipc-a"


@pytest.mark.asyncio
async def test_a_dry_run_is_refused_as_the_action_would_be(api):
    for dry in ("true", "false"):  # the site is normal: there is nothing to fail back
        r = await api.post("/api/v1/failback", params={"dry_run": dry}, json={"reason": "dry or not"},
                           headers=auth(api, "operator"))
        assert r.status_code == 409 and "normal state" in r.json()["detail"], r.text
    r = await api.post("/api/v1/failover", params={"dry_run": "true"}, json={"to": "ipc-b", "reason": "abc"},
                       headers=auth(api, "viewer"))
    assert r.status_code == 403, "a dry run needs an operator too"


@pytest.mark.asyncio
async def test_health_endpoints_need_no_token_and_readiness_follows_the_engine(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    r = await api.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    await api.h.engine.stop()  # the control loop ends: the controller cannot act any more
    r = await api.get("/readyz")
    assert r.status_code == 503 and r.json()["reasons"] == ["the engine's control loop is not running"]
    assert (await api.get("/healthz")).status_code == 200, "the process still serves"
    api.h.journal.close()
    r = await api.get("/readyz")
    assert r.status_code == 503 and "journal: the journal is closed" in r.json()["reasons"]


def test_create_app_is_short_and_every_route_declares_its_answer(tmp_path):
    import inspect

    from controller.api import app as app_module
    from controller.service import build_app
    from tests.safety.apikit import routes

    assert len(inspect.getsource(app_module.create_app).splitlines()) < 40
    h = Harness(tmp_path)
    try:
        app = build_app(h.engine, TokenStore([]))
        declared = [(m, p) for m, p, r in routes(app) if r.include_in_schema]
        assert len(declared) >= 35
        doc = app.openapi()
        for method, path in declared:
            answers = doc["paths"][path][method.lower()]["responses"]
            ok = [code for code in answers if code.startswith("2")]
            assert ok, (method, path)
            for code in ok:
                content = answers[code].get("content")
                assert code == "204" or content, (method, path, code)
                schema = next(iter(content.values()))["schema"] if content else {}
                assert code == "204" or schema not in ({}, {"type": "object"}), (method, path, schema)
    finally:
        h.journal.close()
        h.store.close()



@pytest.mark.asyncio
async def test_a_database_site_fault_is_listed_with_its_site_not_as_a_host(tmp_path):
    """Regression (found by the deploy test after the merge of typed faults and response models): a
    db_down fault has no host, and the status route answered 500 when its model required one."""
    import httpx

    from ccfo.domain.faults import Fault, FaultKind, FaultTracker
    from ccfo.platform.auth import TokenStore, add_token
    from controller.service import build_app
    from tests.controller.harness import Harness

    h = Harness(tmp_path)
    tokens = tmp_path / "tokens.yaml"
    tok = add_token(tokens, "v", "viewer")
    h.engine.tracker = FaultTracker.empty().observe([Fault(FaultKind.DB_DOWN, "shanghai")], 0.0)
    app = build_app(h.engine, TokenStore.load(tokens))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo") as client:
        r = await client.get("/api/v1/status", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200, r.text
    assert r.json()["faults"][0] | {"since": 0} == {"fault": "db:shanghai=down", "kind": "db_down", "host": None,
                                                  "db_site": "shanghai", "since": 0, "active": True}


@pytest.mark.asyncio
async def test_a_managed_servers_heartbeat_shows_in_the_status_per_data_center(api, tmp_path):
    server_token = add_token(tmp_path / "tokens.yaml", "agent-app-sz", "agent", host="app-sz")
    api._transport.app.state.tokens = TokenStore.load(tmp_path / "tokens.yaml")  # type: ignore[attr-defined]
    body = {"host": "app-sz", "profile": "server", "role": "active",
            "ami": {"connected": False, "state": "none"}, "board": None, "spans": None, "calls": None,
            "services": {"appserver": {"state": "active"}}, "db": {"site": "shenzhen", "files": {}},
            "jobs": [{"name": "ta-import", "backend": "cron", "state": "enabled", "next_run": 1796520600.0}]}
    r = await api.post("/api/v1/agents/app-sz/report", json=body, headers=auth(api, "agent"))
    assert r.status_code == 403, "ipc-a's agent token cannot report for a server"
    before = (await api.get("/api/v1/status", headers=auth(api, "viewer"))).json()
    assert before["datacenters"] == ["shanghai", "shenzhen"]
    assert before["servers"]["app-sz"]["reachable"] is False and before["servers"]["app-sz"]["report_age_s"] is None
    r = await api.post("/api/v1/agents/app-sz/report", json=body,
                       headers={"Authorization": f"Bearer {server_token}"})
    assert r.status_code == 204, r.text
    status = (await api.get("/api/v1/status", headers=auth(api, "viewer"))).json()
    app = status["servers"]["app-sz"]
    assert (app["datacenter"], app["kind"], app["role"], app["reachable"]) == ("shenzhen", "application", "active",
                                                                              True)
    assert app["services"] == {"appserver": "active"} and app["db_site"] == "shenzhen"
    assert app["jobs"] == [{"name": "ta-import", "backend": "cron", "state": "enabled", "next_run": 1796520600.0}]
    assert status["servers"]["app-sh"]["role"] == "backup" and status["servers"]["app-sh"]["reachable"] is False
    assert set(status["hosts"]) == {"ipc-a", "ipc-b"}, "a server is not a host of the failover pair"
    r = await api.post("/api/v1/agents/app-sz/report", json=body | {"jobs": [{"state": "enabled"}]},
                       headers={"Authorization": f"Bearer {server_token}"})
    assert r.status_code == 422, "a job without name or backend is refused"
    r = await api.post("/api/v1/agents/nope/report", json=body | {"host": "nope"},
                       headers={"Authorization": f"Bearer {server_token}"})
    assert r.status_code == 403


@pytest.mark.asyncio
async def test_status_answers_while_a_span_state_is_unknown(api) -> None:
    # Found by the 200-run campaign: a span whose D-channel is unknown (AMI lost) made GET /api/v1/status a
    # 500 (its response model said bool), so the dashboard, the CLI and the drills lost the controller.
    world = api.h.world.hosts["ipc-b"]
    world.span_alarm, world.dchannel = "unknown", None

    async def unknown_span() -> dict | None:
        r = await api.get("/api/v1/status", headers=auth(api, "viewer"))
        assert r.status_code == 200, r.text
        spans = r.json()["hosts"]["ipc-b"]["spans"]
        return spans if spans and spans[0]["dchannel_up"] is None else None

    spans = await async_wait_until(unknown_span, timeout=10)
    assert spans[0]["alarm"] == "unknown"
