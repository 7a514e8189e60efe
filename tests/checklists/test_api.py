"""The checklist API in-process (ASGI) on create_app: roles, who and why, errors, reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from ccfo.platform.auth import TokenStore, add_token
from controller.checklists.loader import load_checklists
from controller.service import build_app, start_services, stop_services
from tests.checklists.doubles import CallsTestDouble, DrillsTestDouble
from tests.controller.harness import Harness
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio
REPO = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def api(tmp_path):
    h = Harness(tmp_path)
    tokens_file = tmp_path / "tokens.yaml"
    toks = {role: add_token(tokens_file, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    toks["agent"] = add_token(tokens_file, "agent-ipc-a", "agent", host="ipc-a")
    app = build_app(h.engine, TokenStore.load(tokens_file))
    runner = app.state.checklists
    runner.drills, runner.calls = DrillsTestDouble(), CallsTestDouble()
    await h.start()
    await start_services(app)  # as controller.service does once the engine runs
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo")
    client.toks, client.h, client.runner = toks, h, runner  # type: ignore[attr-defined]
    yield client
    await client.aclose()
    await stop_services(app)
    await h.stop()


def auth(api, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.toks[role]}"}


async def start(api, name: str = "weekend-upgrade", **body) -> httpx.Response:
    return await api.post(f"/api/v1/checklists/{name}/runs", json={"reason": "the upgrade weekend", **body},
                          headers=auth(api, "operator"))


async def test_roles_viewers_read_operators_act(api):
    r = await api.get("/api/v1/checklists")
    assert r.status_code == 401
    r = await api.get("/api/v1/checklists", headers=auth(api, "viewer"))
    assert r.status_code == 200 and {c["name"] for c in r.json()["checklists"]} == {"weekend-upgrade",
                                                                                     "datacenter-migration"}
    for role, code in (("viewer", 403), ("agent", 403)):
        r = await api.post("/api/v1/checklists/weekend-upgrade/runs", json={"reason": "abc"}, headers=auth(api, role))
        assert r.status_code == code
    r = await start(api)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["id"] == "weekend-upgrade-1" and run["started_by"] == "operator-user" and run["status"] == "active"
    r = await api.post("/api/v1/checklist-runs/current/steps/plan-approved/done", json={"note": "signed"},
                       headers=auth(api, "viewer"))
    assert r.status_code == 403


async def test_ticking_steps_records_who_and_the_note(api):
    await start(api)
    r = await api.post("/api/v1/checklist-runs/current/steps/plan-approved/done", json={"note": "signed by IT"},
                       headers=auth(api, "operator"))
    assert r.status_code == 200, r.text
    step = r.json()["phases"][0]["steps"][0]
    assert (step["state"], step["ended_by"], step["note"]) == ("done", "operator-user", "signed by IT")
    entry = api.h.journal.query(kinds="checklist_event", newest_first=True, limit=20)
    done = next(e for e in entry if e.status == "step_finished")
    assert (done.actor, done.reason, done.data["step"]) == ("operator-user", "signed by IT", "plan-approved")
    r = await api.get("/api/v1/checklist-runs/weekend-upgrade-1", headers=auth(api, "viewer"))
    s = r.json()
    assert s["critical_path"] and s["projected_finish"] >= s["planned_finish"] - 1
    assert {p["id"]: p["state"] for p in s["phases"]}["friday"] == "active"
    r = await api.get("/api/v1/checklist-runs", headers=auth(api, "viewer"))
    assert [x["id"] for x in r.json()["runs"]] == ["weekend-upgrade-1"]


@pytest.mark.parametrize(("path", "body", "code", "detail"), [
    ("/steps/copy-software/done", {"note": ""}, 409, "waiting"),
    ("/steps/nowhere/done", {"note": ""}, 404, "no step or phase"),
    ("/steps/plan-approved/fail", {}, 422, None),
    ("/steps/plan-approved/skip", {"reason": ""}, 422, None),
    ("/steps/plan-approved/done", {"note": "x", "extra": 1}, 422, None),
    ("/phases/friday/rollback", {"reason": "give up"}, 409, "no completed step"),
])
async def test_requests_that_do_not_apply_get_clear_errors(api, path, body, code, detail):
    await start(api)
    r = await api.post(f"/api/v1/checklist-runs/current{path}", json=body, headers=auth(api, "operator"))
    assert r.status_code == code, r.text
    if detail:
        assert detail in r.json()["detail"]


async def test_second_run_unknown_run_and_invalid_checklists(api, tmp_path):
    await start(api)
    r = await start(api, "datacenter-migration")
    assert r.status_code == 409 and "weekend-upgrade-1" in r.json()["detail"]
    r = await api.get("/api/v1/checklist-runs/nope", headers=auth(api, "viewer"))
    assert r.status_code == 404
    r = await start(api, "nope")
    assert r.status_code == 404
    d = tmp_path / "checklists"
    shutil.copytree(REPO / "config" / "checklists", d)
    (d / "broken.yaml").write_text("name: broken\ntitle: Broken list\nphases:\n  - id: x\n    title: Phase x\n"
                                   "    steps:\n      - {id: a, title: Step a, owner: op, kind: manual, planned: 5}\n")
    api.runner.library = lambda: load_checklists(d, api.h.engine.site)
    r = await api.get("/api/v1/checklists", headers=auth(api, "viewer"))
    assert any("broken.yaml:7: phases[0].steps[0].planned: a duration like" in p for p in r.json()["problems"])
    r = await api.post("/api/v1/checklist-runs/current/abort", json={"reason": "start over"},
                       headers=auth(api, "operator"))
    assert r.status_code == 200 and r.json()["status"] == "aborted"
    r = await start(api, "broken")
    assert r.status_code == 422
    assert r.json()["detail"]["problems"][0].endswith("broken.yaml:7: phases[0].steps[0].planned: "
                                                      "a duration like 90s, 15m, 2h or 1h30m, got 5")


async def test_reports_in_three_formats_escape_what_operators_typed(api):
    await start(api)
    await api.post("/api/v1/checklist-runs/current/steps/plan-approved/done", json={"note": "<script>x</script>"},
                   headers=auth(api, "operator"))
    await api.post("/api/v1/checklist-runs/current/steps/upgrade-announced/skip",
                   json={"reason": "announced last week | done"}, headers=auth(api, "operator"))
    r = await api.get("/api/v1/checklist-runs/current/report", params={"format": "html"}, headers=auth(api, "viewer"))
    assert r.headers["content-type"].startswith("text/html")
    assert "<script>x</script>" not in r.text and "&lt;script&gt;" in r.text
    r = await api.get("/api/v1/checklist-runs/weekend-upgrade-1/report", headers=auth(api, "viewer"))
    assert r.headers["content-type"].startswith("text/markdown")
    assert "announced last week \\| done" in r.text and "## Failed and skipped steps" in r.text
    r = await api.get("/api/v1/checklist-runs/current/report", params={"format": "json"}, headers=auth(api, "viewer"))
    data = json.loads(r.text)
    assert data["id"] == "weekend-upgrade-1" and [e["event"] for e in data["timeline"]][:2] == ["run_started",
                                                                                               "step_started"]
    r = await api.get("/api/v1/checklist-runs/current/report", params={"format": "md", "envelope": "true"},
                      headers=auth(api, "viewer"))
    assert r.json()["content"].startswith("# Checklist report: IPC hot-standby upgrade weekend")
    r = await api.get("/api/v1/checklist-runs/current/report", params={"format": "pdf"}, headers=auth(api, "viewer"))
    assert r.status_code == 422


async def test_the_definition_of_a_checklist(api):
    r = await api.get("/api/v1/checklists/weekend-upgrade", headers=auth(api, "viewer"))
    d = r.json()
    sat = next(p for p in d["phases"] if p["id"] == "saturday-morning")
    assert sat["maintenance"] and sat["start"] == "sat 08:00" and sat["start_offset_s"] == 14 * 3600
    stop = sat["steps"][0]
    assert stop["confirm"] and stop["rollback"]["what"] == "start the services as planned"
    r = await api.get("/api/v1/checklists/none-such", headers=auth(api, "viewer"))
    assert r.status_code == 404


async def test_the_runner_starts_with_the_app_and_replays_the_journal(api):
    await async_wait_until(lambda: api.runner._started, timeout=5)
    assert api.runner.runs == {}
