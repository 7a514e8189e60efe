"""The agent control API: bearer auth (401 + WWW-Authenticate), the report shape (with AMI connected and
not), actions (200/400/409/422), no secret in any response or log; over the ASGI transport and once over
a real uvicorn socket on 127.0.0.1 port 0. Token loading from a file, the environment and lab mode."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import pytest_asyncio

from agents.api import create_app
from agents.auth import Token, TokenError, authenticate, lab_token, load_token
from agents.server import ApiServer, split_host_port
from tests.agents.test_api_helpers import TOKEN, Host, make_host

AUTH = {"Authorization": f"Bearer {TOKEN.secret}"}
REPORT_KEYS = {"host", "profile", "role", "time", "seq", "started", "ami", "board", "spans", "trunks", "services",
               "calls",
               "channels", "db"}


@pytest_asyncio.fixture
async def agent(tmp_path: Path) -> AsyncIterator[tuple[Host, httpx.AsyncClient]]:
    host = make_host(tmp_path)
    app = create_app("ipc-a", [TOKEN], host.report.build, host.executor)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
        try:
            yield host, client
        finally:
            await host.executor.aclose()
            host.stop_daemons()


@pytest.mark.asyncio
async def test_health_needs_no_token_and_says_nothing(agent: tuple[Host, httpx.AsyncClient]) -> None:
    _, client = agent
    r = await client.get("/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN.secret},
                                     {"Authorization": f"Basic {TOKEN.secret}"}, {"Authorization": "Bearer "}])
async def test_missing_or_wrong_token_is_401(agent: tuple[Host, httpx.AsyncClient], headers: dict[str, str]) -> None:
    _, client = agent
    for r in (await client.get("/v1/report", headers=headers),
              await client.post("/v1/actions", headers=headers, json={"action_id": "a", "action": "line_test"}),
              await client.post("/v1/actions", headers=headers, json={"malformed": True})):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert TOKEN.secret not in r.text


@pytest.mark.asyncio
async def test_report_shape_with_ami_connected(agent: tuple[Host, httpx.AsyncClient]) -> None:
    host, client = agent
    await host.services.start("cti")
    await host.services.check_all()
    r = await client.get("/v1/report", headers=AUTH)
    assert r.status_code == 200
    rep = r.json()
    assert set(rep) == REPORT_KEYS
    assert (rep["host"], rep["role"], rep["seq"]) == ("ipc-a", "primary", 1)
    assert rep["ami"] == {"connected": True, "state": "up", "last_ok": 1000.0, "error": None}
    assert rep["board"]["driver"] == "down" and rep["board"]["service_state"] == "inactive"  # driver not started
    assert rep["spans"] == [{"span": 1, "alarm": "ok", "dchannel": "up", "channels": 30, "healthy": True},
                            {"span": 2, "alarm": "ok", "dchannel": "up", "channels": 30, "healthy": True}]
    assert rep["services"]["cti"]["state"] == "active" and rep["services"]["ivr"]["state"] == "inactive"
    assert set(rep["services"]["cti"]) == {"state", "since"}
    assert rep["calls"] == {"ivr": 0, "agent": 0, "fax": 0}
    assert rep["channels"] == {"available": 60, "free": 60}
    assert rep["trunks"] == []  # this host has no SIP trunks
    assert rep["db"] == {"site": "shenzhen", "files": {"cti-db": {"site": "shenzhen", "value": "10.30.0.10",
                                                                  "error": None}}}
    assert (await client.get("/v1/report", headers=AUTH)).json()["seq"] == 2


@pytest.mark.asyncio
async def test_report_without_ami_says_unknown_not_lines_down(agent: tuple[Host, httpx.AsyncClient]) -> None:
    host, client = agent
    host.ami.disconnect()
    await host.services.restore_board()
    rep = (await client.get("/v1/report", headers=AUTH)).json()
    assert rep["ami"]["connected"] is False and rep["ami"]["error"] == "connection refused"
    assert rep["ami"]["state"] == "lost"
    assert rep["spans"] is None and rep["trunks"] is None and rep["calls"] is None and rep["channels"] is None
    # the driver service runs, but with AMI lost nobody can tell whether the board works: unknown, not "up"
    assert rep["board"]["service_state"] == "active"
    assert rep["board"]["driver"] == "unknown" and rep["board"]["ami_driver"] is None


@pytest.mark.asyncio
async def test_actions_over_http(agent: tuple[Host, httpx.AsyncClient]) -> None:
    _, client = agent
    body = {"action_id": "plan-7-2-1", "action": "start", "service": "cti", "reason": "takeover"}
    r = await client.post("/v1/actions", headers=AUTH, json=body)
    assert r.status_code == 200
    res = r.json()
    assert (res["status"], res["ok"], res["caller"], res["replayed"]) == ("done", True, "controller-token", False)
    assert set(res) == {"action_id", "action", "status", "ok", "detail", "data", "caller", "reason", "started",
                        "ended", "duration_s", "replayed", "term"}
    again = await client.post("/v1/actions", headers=AUTH, json=body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    conflict = await client.post("/v1/actions", headers=AUTH, json={**body, "action": "stop"})
    assert conflict.status_code == 409 and "already used" in conflict.json()["detail"]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [{"action_id": "a", "action": "stop"}, {"action_id": "a", "action": "x"},
                                  {"action_id": "a", "action": "line_test", "token": "x"}, [], "stop"])
async def test_malformed_body_is_422(agent: tuple[Host, httpx.AsyncClient], body: object) -> None:
    _, client = agent
    r = await client.post("/v1/actions", headers=AUTH, json=body)
    assert r.status_code == 422


@pytest.mark.asyncio
async def test_unknown_service_is_400_with_a_clear_message(agent: tuple[Host, httpx.AsyncClient]) -> None:
    _, client = agent
    r = await client.post("/v1/actions", headers=AUTH, json={"action_id": "a", "action": "stop", "service": "kcxp"})
    assert r.status_code == 400
    assert r.json() == {"detail": "unknown service 'kcxp' on ipc-a (services: cti, ivr)"}


@pytest.mark.asyncio
async def test_oversized_body_is_refused(agent: tuple[Host, httpx.AsyncClient]) -> None:
    _, client = agent
    r = await client.post("/v1/actions", headers=AUTH, content=b"x" * 70_000)
    assert r.status_code == 413


@pytest.mark.asyncio
async def test_no_secret_in_logs(agent: tuple[Host, httpx.AsyncClient], caplog: pytest.LogCaptureFixture) -> None:
    _, client = agent
    caplog.set_level(logging.DEBUG)
    await client.get("/v1/report", headers={"Authorization": "Bearer not-the-token"})
    await client.post("/v1/actions", headers=AUTH, json={"action_id": "q", "action": "start", "service": "ivr"})
    assert "missing or wrong token" in caplog.text and "by controller-token" in caplog.text
    assert TOKEN.secret not in caplog.text and "not-the-token" not in caplog.text


@pytest.mark.asyncio
async def test_over_a_real_socket(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    server = ApiServer(create_app("ipc-a", [TOKEN], host.report.build, host.executor), "127.0.0.1", 0)
    address = await server.start()
    try:
        assert address[0] == "127.0.0.1" and address[1] > 0
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/v1/health")).json() == {"status": "ok"}
            assert (await client.get("/v1/report")).status_code == 401
            rep = (await client.get("/v1/report", headers=AUTH)).json()
            assert rep["host"] == "ipc-a" and rep["db"]["site"] == "shenzhen"
            res = await client.post("/v1/actions", headers=AUTH,
                                    json={"action_id": "sock-1", "action": "repoint_db", "to_site": "shanghai"})
            assert res.status_code == 200 and res.json()["data"]["changed"] == ["cti-db"]
            assert (await client.get("/v1/report", headers=AUTH)).json()["db"]["site"] == "shanghai"
    finally:
        await server.stop()
        await host.executor.aclose()
        host.stop_daemons()


# --- tokens ------------------------------------------------------------------------------------------------

def endpoint(token_file: str | None = None, token_env: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(token_file=token_file, token_env=token_env)


def test_token_from_file_env_or_refusal(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "agent-token").write_text("file-token-0123456789abcdef\n")
    token = load_token(endpoint("secrets/agent-token"), lambda p: tmp_path / p)
    assert token == Token("agent-token", "file-token-0123456789abcdef")
    assert "file-token" not in repr(token)
    env_token = load_token(endpoint(token_env="CCFO_AGENT_TOKEN"), lambda p: tmp_path / p,
                           env={"CCFO_AGENT_TOKEN": "env-token-0123456789abcdef"})
    assert env_token.name == "CCFO_AGENT_TOKEN"
    with pytest.raises(TokenError, match="CCFO_AGENT_TOKEN"):
        load_token(endpoint(token_env="CCFO_AGENT_TOKEN"), lambda p: tmp_path / p, env={})
    with pytest.raises(TokenError, match="no agent token configured"):
        load_token(endpoint(), lambda p: tmp_path / p)
    with pytest.raises(TokenError, match="cannot read"):
        load_token(endpoint("secrets/missing"), lambda p: tmp_path / p)
    (tmp_path / "secrets" / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        load_token(endpoint("secrets/empty"), lambda p: tmp_path / p)


def test_lab_token_is_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "agent-token"
    first = lab_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first.secret) >= 32
    assert lab_token(path) == first


def test_authenticate() -> None:
    tokens = [Token("a", "alpha-secret"), Token("b", "beta-secret")]
    assert authenticate("Bearer beta-secret", tokens) == "b"
    assert authenticate("bearer  alpha-secret ", tokens) == "a"
    assert authenticate("Bearer gamma", tokens) is None and authenticate(None, tokens) is None


@pytest.mark.parametrize(("text", "expected"), [("127.0.0.1:9101", ("127.0.0.1", 9101)), ("0.0.0.0", ("0.0.0.0", 0)),
                                                ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0))])
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected
