"""Atomic admission of work (issue 19) over real HTTP: the controller's app on a uvicorn socket (127.0.0.1,
port 0), its engine loop running over the in-memory world (agents and PDU are the test double of
tests/controller/fakeworld.py; the live-lab version with real agents is tests/integration/
test_lab_admission.py).

For every pair of mutating operations (submit, approve, resume, abort, reject, mode, drill start, and the
confirmation of a checklist step that starts a switchover), N requests of each are sent at the same instant:
at most one piece of work is admitted, the journal shows at most one `plan_started`, every refusal is a 409
naming the work that won (or the state the winner left the plan in), and nothing answers 5xx. (A resumed
plan is journaled `plan_resumed`, which counts as a start here.) Then: the same request repeated with one
Idempotency-Key gets the first answer and starts nothing new, and an approve of a running plan is a 409
naming its state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from ccfo.domain.plan import build_switchover
from ccfo.domain.state import SiteState
from ccfo.platform.auth import TokenStore, add_token
from controller.checklists.loader import load_checklist
from controller.service import build_app, stop_services
from controller.store import PlanStatus
from tests.controller.harness import Harness
from tests.support import async_wait_until

N = 5
OPS = ("submit", "approve", "resume", "abort", "reject", "mode", "drill", "confirm")
STARTS = {"submit", "approve", "resume", "drill"}
STARTED = ("plan_started", "plan_resumed")  # a resumed plan starts again from its step


@dataclass
class Live:
    h: Harness
    client: httpx.AsyncClient
    toks: dict[str, str]
    proposed: str
    interrupted: str
    app: Any = None  # the FastAPI app: its checklist runner

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.toks[role]}"}

    def request(self, op: str) -> tuple[str, str, dict[str, Any], str]:
        return {
            "submit": ("POST", "/api/v1/switchover", {"to": "ipc-b", "reason": "burst", "drain_timeout_s": 0},
                       "operator"),
            "approve": ("POST", f"/api/v1/plans/{self.proposed}/approve", {"reason": "burst"}, "operator"),
            "resume": ("POST", f"/api/v1/plans/{self.interrupted}/resume", {"reason": "burst"}, "operator"),
            "abort": ("POST", f"/api/v1/plans/{self.interrupted}/abort", {"reason": "burst"}, "operator"),
            "reject": ("POST", f"/api/v1/plans/{self.proposed}/reject", {"reason": "burst"}, "operator"),
            "mode": ("PUT", "/api/v1/mode", {"mode": "supervised", "reason": "burst"}, "admin"),
            "drill": ("POST", "/api/v1/drills/runs", {"drill": "primary-cti-crash"}, "operator"),
            # a checklist action step awaiting confirmation: confirming it runs a switchover (in the background)
            "confirm": ("POST", "/api/v1/checklist-runs/current/steps/move/confirm", {"note": "burst"}, "operator"),
        }[op]

    def step_state(self) -> str:
        view = self.app.state.checklists.status("latest")
        return str(view["phases"][0]["steps"][0]["state"])

    async def send(self, op: str, key: str | None = None) -> httpx.Response:
        method, path, body, role = self.request(op)
        headers = self.auth(role) | ({"Idempotency-Key": key} if key else {})
        return await self.client.request(method, path, json=body, headers=headers)


async def serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await async_wait_until(lambda: server.started or task.done(), timeout=10)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    h = Harness(tmp_path)
    # a switchover that was running when the controller stopped: the engine finds it interrupted
    plan = build_switchover(h.cfg.site, SiteState.normal(h.cfg.site), "ipc-b", 0, "before the restart")
    stopped = h.store.add_plan(plan, status=PlanStatus.RUNNING, source="operator", requested_by="bob", reason="earlier",
                               now=1.0)
    tokens = tmp_path / "tokens.yaml"
    toks = {role: add_token(tokens, f"{role}-user", role) for role in ("viewer", "operator", "admin")}
    app = build_app(h.engine, TokenStore.load(tokens))
    (tmp_path / "burst.yaml").write_text(CHECKLIST)
    app.state.checklists.library = lambda: ({"burst": load_checklist(tmp_path / "burst.yaml")}, [])
    await h.start()
    server, task, url = await serve(app)
    client = httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=100))
    try:
        h.crash("ipc-a", "cti")  # the controller proposes a failover (supervised mode)
        proposed = await async_wait_until(lambda: h.plans(PlanStatus.PROPOSED), timeout=10)
        run = await client.post("/api/v1/checklists/burst/runs", json={"reason": "burst test"},
                                headers={"Authorization": f"Bearer {toks['operator']}"})
        assert run.status_code == 201, run.text
        live = Live(h, client, toks, proposed[0].id, stopped.id, app)
        await async_wait_until(lambda: live.step_state() == "awaiting_confirmation", timeout=10)
        yield live
    finally:
        await stop_services(app)
        await client.aclose()
        server.should_exit = True
        await task
        await h.engine.wait_idle(30)
        await h.stop()


CHECKLIST = """\
name: burst
title: A checklist whose one step starts a plan
phases:
  - id: move
    title: Move
    steps:
      - {id: move, title: Switch over to ipc-b, owner: operator, kind: action, planned: 1m,
         action: {plan: switchover, to: ipc-b, drain_timeout: 0s}}
"""
PAIRS = list(itertools.combinations_with_replacement(OPS, 2))


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
async def test_concurrent_mutations_admit_one_piece_of_work(live: Live, a: str, b: str) -> None:
    ops = [a] * N + [b] * N
    answers = await asyncio.gather(*(live.send(op) for op in ops))
    if "confirm" in ops:  # the confirmed step starts its plan (or is refused) in the background
        await async_wait_until(lambda: live.step_state() in ("done", "failed"), timeout=20,
                               describe=live.step_state)
    await live.h.engine.wait_idle(20)
    started = live.h.journal.query(kinds=STARTED, limit=None)
    drills = live.h.journal.query(kinds="drill_started", limit=None)
    assert len(started) + len(drills) <= 1, [(e.plan_id, e.actor) for e in started]
    assert all(r.status_code < 500 for r in answers), [r.text for r in answers if r.status_code >= 500]
    winners = [(op, r) for op, r in zip(ops, answers, strict=True) if op in STARTS and r.is_success]
    assert len(winners) <= 1, [(op, r.text) for op, r in winners]
    if started and winners:
        assert winners[0][1].json()["id"] == started[0].plan_id
    elif started:  # no request started it: the confirmed checklist step did
        assert "confirm" in ops and started[0].actor == "operator-user", started[0]
    plan_id = started[0].plan_id if started else None
    for op, r in zip(ops, answers, strict=True):
        if op in STARTS and not r.is_success:
            assert r.status_code == 409, (op, r.status_code, r.text)
            detail = r.json()["detail"]
            named = (plan_id is not None and f"plan {plan_id}" in detail) or "drill " in detail \
                or any(f" is {s.value}" in detail for s in PlanStatus)
            assert named, (op, detail)
    if a in STARTS or b in STARTS:
        # a starting operation ran unless a non-starting one (reject, abort) took its plan first, or the drill
        # was refused by its guard (the controller's proposal waits for an approval)
        assert started or {a, b} & {"reject", "abort", "drill"}, (a, b, [r.text for r in answers])
    if "confirm" in ops:
        confirmed = [r for op, r in zip(ops, answers, strict=True) if op == "confirm" and r.is_success]
        assert len(confirmed) == 1, "a step is confirmed once"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_twenty_simultaneous_requests_start_exactly_one_plan(live: Live) -> None:
    ops = ["submit"] * 6 + ["approve"] * 6 + ["resume"] * 4 + ["drill"] * 4
    answers = await asyncio.gather(*(live.send(op) for op in ops))
    await live.h.engine.wait_idle(20)
    started = live.h.journal.query(kinds="plan_started", limit=None)
    assert len(started) == 1
    ok = [r for r in answers if r.is_success]
    assert len(ok) == 1 and ok[0].json()["id"] == started[0].plan_id
    refused = [r.json()["detail"] for r in answers if not r.is_success]
    assert all(r.status_code == 409 for r in answers if not r.is_success)
    drills = [d for op, d in zip(ops, refused, strict=False) if op == "drill"]
    # a request that arrives after the winner ended (a loaded machine) reads the state it left: the proposal
    # superseded, or refused because its footing changed (the switchover ran)
    assert all(f"plan {started[0].plan_id}" in d or any(f" is {s.value};" in d for s in PlanStatus)
               or "the site changed since this plan was proposed" in d for d in refused if d not in drills), refused
    assert all("not started" in d for d in drills), drills  # their guard: a plan waits or runs


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_repeated_request_with_one_idempotency_key_gets_the_first_answer(live: Live) -> None:
    answers = await asyncio.gather(*(live.send("submit", key="k-1") for _ in range(10)))
    await live.h.engine.wait_idle(20)
    assert {r.status_code for r in answers} == {202}
    assert len({r.text for r in answers}) == 1, "every repetition gets the first answer"
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 9
    assert live.h.journal.count(kinds="plan_started") == 1
    again = await live.send("submit", key="k-1")  # later, after the plan finished: still the first answer
    assert again.text == answers[0].text and live.h.journal.count(kinds="plan_started") == 1
    other = await live.client.post("/api/v1/switchover", json={"to": "ipc-a", "reason": "x"},
                                   headers=live.auth("admin") | {"Idempotency-Key": "k-1"})
    assert other.headers.get("idempotent-replayed") is None, "another token's key is its own"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_an_approve_of_a_plan_already_approved_is_refused_naming_its_state(live: Live) -> None:
    live.h.world.hosts["ipc-a"].calls = 0
    first = await live.send("approve")
    assert first.status_code == 200
    second = await live.send("approve")
    assert second.status_code == 409
    assert f"plan {live.proposed}" in second.json()["detail"]
    assert "running" in second.json()["detail"] or "finished" in second.json()["detail"]
    await live.h.engine.wait_idle(20)
    third = await live.send("approve")
    assert third.status_code == 409 and f"plan {live.proposed} is finished" in third.json()["detail"]
