"""Fencing tokens on the agent, over real HTTP (uvicorn on 127.0.0.1 port 0) with real lab daemons: an action
may carry the leader's term; the agent persists the highest term it has seen (atomically, before acting)
and refuses a lower one with 409 naming both terms, also after a restart; the controller's client turns
that 409 into TermRefused; without any term (single-controller mode) nothing changes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from agents.api import create_app
from agents.server import ApiServer
from agents.terms import StaleTerm, TermFileError, TermStore
from ccfo.clients.agent_http import AgentHttpClient, TermRefused
from tests.agents.test_api_helpers import TOKEN, Host, executions, make_host

AUTH = {"Authorization": f"Bearer {TOKEN.secret}"}


@dataclass
class Agent:
    host: Host
    server: ApiServer
    http: httpx.AsyncClient
    term_file: Path

    async def act(self, action_id: str, action: str = "start", term: int | None = None, **kw: object) -> httpx.Response:
        body: dict[str, object] = {"action_id": action_id, "action": action, **kw}
        if action in ("start", "stop") and "service" not in kw:
            body["service"] = "cti"
        if term is not None:
            body["term"] = term
        return await self.http.post("/v1/actions", json=body, headers=AUTH)


async def start_agent(root: Path) -> Agent:
    host = make_host(root)
    term_file = root / "state" / "term.json"
    host.executor.terms = TermStore(term_file)
    server = ApiServer(create_app("ipc-a", [TOKEN], host.report.build, host.executor), "127.0.0.1", 0)
    await server.start()
    return Agent(host, server, httpx.AsyncClient(base_url=server.url, timeout=15), term_file)


async def stop_agent(a: Agent) -> None:
    await a.http.aclose()
    await a.server.stop()
    await a.host.executor.aclose()


@pytest_asyncio.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    a = await start_agent(tmp_path)
    try:
        yield a
    finally:
        await stop_agent(a)
        a.host.stop_daemons()


@pytest.mark.asyncio
async def test_without_terms_nothing_changes(agent: Agent) -> None:
    r = await agent.act("s1")
    assert r.status_code == 200 and r.json()["ok"] and r.json()["term"] is None
    assert executions(agent.host.root / "run", "cti") == ["start"]
    assert not agent.term_file.exists()


@pytest.mark.asyncio
async def test_a_lower_term_is_refused_with_409_naming_both(agent: Agent) -> None:
    assert (await agent.act("a1", term=5)).status_code == 200
    assert json.loads(agent.term_file.read_text())["highest_term"] == 5
    r = await agent.act("a2", "stop", term=7)
    assert r.status_code == 200 and r.json()["term"] == 7
    assert json.loads(agent.term_file.read_text())["highest_term"] == 7

    stale = await agent.act("a3", term=6)
    assert stale.status_code == 409
    assert stale.json()["detail"] == "stale leader term 6 refused: this agent has seen term 7 (a newer leader)"
    assert stale.headers["X-Ccfo-Highest-Term"] == "7"
    assert executions(agent.host.root / "run", "cti") == ["start", "stop"]  # the stale start never ran

    assert (await agent.act("a4", term=7)).status_code == 200  # the same leader goes on
    nothing = await agent.act("a5", "stop")
    assert nothing.status_code == 409 and "without a leader term refused: this agent has seen term 7" \
        in nothing.json()["detail"]
    assert executions(agent.host.root / "run", "cti") == ["start", "stop", "start"]


@pytest.mark.asyncio
async def test_the_highest_term_survives_a_restart(tmp_path: Path) -> None:
    a = await start_agent(tmp_path)
    try:
        assert (await a.act("r1", term=12)).status_code == 200
    finally:
        await stop_agent(a)
    b = await start_agent(tmp_path)  # a new process would read the same file
    try:
        assert b.host.executor.terms.highest == 12
        r = await b.act("r2", "stop", term=11)
        assert r.status_code == 409 and "term 11" in r.json()["detail"] and "term 12" in r.json()["detail"]
        assert executions(tmp_path / "run", "cti") == ["start"]
    finally:
        await stop_agent(b)
        b.host.stop_daemons()


@pytest.mark.asyncio
async def test_a_new_leader_retrying_an_action_gets_the_first_result(agent: Agent) -> None:
    first = await agent.act("plan-9-0", term=3)
    again = await agent.act("plan-9-0", term=4)  # the next leader resumes the plan: same step, same id
    assert again.status_code == 200 and again.json()["replayed"] and again.json()["term"] == 3
    assert first.json()["started"] == again.json()["started"]
    old = await agent.act("plan-9-0", term=3)  # the deposed leader replays it: refused, not replayed
    assert old.status_code == 409 and "stale leader term 3" in old.json()["detail"]
    assert executions(agent.host.root / "run", "cti") == ["start"]


@pytest.mark.asyncio
async def test_the_controller_client_raises_term_refused(agent: Agent) -> None:
    client = AgentHttpClient({"ipc-a": agent.server.url}, TOKEN.secret, timeout_s=15)
    try:
        res = await client.action("ipc-a", "c1", "start", service="cti", term=8)
        assert res.ok
        with pytest.raises(TermRefused) as err:
            await client.action("ipc-a", "c2", "stop", service="cti", term=2)
        assert (err.value.term, err.value.highest) == (2, 8)
        assert "refused our leader term 2: the agent has seen term 8" in str(err.value)
        assert (await client.action("ipc-a", "c3", "stop", service="cti", term=9)).ok
    finally:
        await client.aclose()
    assert executions(agent.host.root / "run", "cti") == ["start", "stop"]


@pytest.mark.asyncio
async def test_malformed_terms_are_422(agent: Agent) -> None:
    for bad in (0, -1, "x", 2**63):
        r = await agent.http.post("/v1/actions", headers=AUTH,
                                  json={"action_id": "m", "action": "start", "service": "cti", "term": bad})
        assert r.status_code == 422, bad
    assert not agent.term_file.exists()


def test_store_rules_and_unreadable_file(tmp_path: Path) -> None:
    s = TermStore()
    assert s.admit(None) is False and s.highest is None
    assert s.admit(3) is True and s.admit(3) is False and s.admit(4) is True
    with pytest.raises(StaleTerm):
        s.admit(2)
    with pytest.raises(StaleTerm):
        s.admit(None)
    bad = tmp_path / "term.json"
    bad.write_text("{not json")
    with pytest.raises(TermFileError, match="cannot read the leader term file"):
        TermStore(bad)
    bad.write_text('{"version": 1, "highest_term": -4}')
    with pytest.raises(TermFileError):
        TermStore(bad)


@pytest.mark.asyncio
async def test_an_action_arriving_after_its_leaders_acting_window_is_refused(agent: Agent) -> None:
    """A leader frozen between its check and its send (SIGSTOP) must not act when it wakes, even on an
    agent its successor has not reached yet: the action carries the end of its acting window."""
    now = time.time()
    ok = await agent.act("w1", term=5, valid_until=now + 30)
    assert ok.status_code == 200 and ok.json()["ok"]
    late = await agent.act("w2", "stop", term=5, valid_until=now - 0.5)
    assert late.status_code == 409 and late.headers["X-Ccfo-Highest-Term"] == "5"
    assert "after that leader's acting window ended" in late.json()["detail"]
    assert executions(agent.host.root / "run", "cti") == ["start"]  # the late stop never ran
    again = await agent.act("w1", term=6, valid_until=now + 60)  # a successor's retry: same step, new window
    assert again.status_code == 200 and again.json()["replayed"]
    client = AgentHttpClient({"ipc-a": agent.server.url}, TOKEN.secret, timeout_s=15)
    try:
        with pytest.raises(TermRefused) as err:
            await client.action("ipc-a", "w3", "stop", service="cti", term=6, valid_until=time.time() - 1)
        assert err.value.highest == 6
    finally:
        await client.aclose()
    assert executions(agent.host.root / "run", "cti") == ["start"]
    for bad in (0, -1, "x", "nan"):
        r = await agent.http.post("/v1/actions", headers=AUTH, json={"action_id": "m", "action": "start",
                                                                      "service": "cti", "valid_until": bad})
        assert r.status_code == 422, bad
