"""CORS between controller cluster members (controller.api.cors), for the dashboard that moves to another
member when its own dies: exactly the members' origins, with the Authorization header, no credentials; the
page's Content-Security-Policy lets it connect to them. A single controller answers no CORS at all.
(ASGI in-process; tests/browser/test_dashboard_cluster.py runs it across real member processes.)"""

from __future__ import annotations

import httpx
import pytest

from ccfo.platform.auth import TokenStore
from controller.api.cors import allow_members, origin
from controller.service import build_app
from tests.controller.harness import Harness

MEMBERS = ["http://127.0.0.1:8080", "http://127.0.0.2:8081/", "https://ctl-c.example:443/api"]
PREFLIGHT = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}


def test_origin_is_what_a_browser_sends() -> None:
    assert [origin(u) for u in MEMBERS] == ["http://127.0.0.1:8080", "http://127.0.0.2:8081", "https://ctl-c.example"]
    assert origin("http://[::1]:8080/x") == "http://[::1]:8080"


@pytest.mark.asyncio
async def test_a_single_controller_answers_no_cors_and_its_page_connects_only_to_itself(tmp_path) -> None:
    app = build_app(Harness(tmp_path).engine, TokenStore([]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo") as c:
        r = await c.options("/api/v1/status", headers={"Origin": "http://127.0.0.2:8081", **PREFLIGHT})
        assert "access-control-allow-origin" not in r.headers and r.status_code == 405
        r = await c.get("/healthz", headers={"Origin": "http://127.0.0.2:8081"})
        assert "access-control-allow-origin" not in r.headers
        page = await c.get("/")
        assert "connect-src 'self';" in page.headers["content-security-policy"]


@pytest.mark.asyncio
async def test_a_member_allows_exactly_the_members_origins_with_the_authorization_header(tmp_path) -> None:
    app = build_app(Harness(tmp_path).engine, TokenStore([]))
    allow_members(app, MEMBERS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ccfo") as c:
        for member in ("http://127.0.0.2:8081", "https://ctl-c.example"):
            r = await c.options("/api/v1/events", headers={"Origin": member, **PREFLIGHT})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == member, r.headers
            assert "authorization" in r.headers["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in r.headers
        post = await c.options("/api/v1/failover", headers={
            "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})
        assert post.status_code == 200, post.text
        for stranger in ("http://127.0.0.2:8082", "http://evil.example", "https://127.0.0.1:8080"):
            r = await c.options("/api/v1/status", headers={"Origin": stranger, **PREFLIGHT})
            assert r.status_code == 400 and "access-control-allow-origin" not in r.headers, stranger
        r = await c.get("/healthz", headers={"Origin": "http://127.0.0.2:8081"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://127.0.0.2:8081"
        unauth = await c.get("/api/v1/status", headers={"Origin": "http://127.0.0.2:8081"})
        assert unauth.status_code == 401, "CORS opens nothing: the token is still required"
        csp = (await c.get("/")).headers["content-security-policy"]
        assert ("connect-src 'self' http://127.0.0.1:8080 http://127.0.0.2:8081 https://ctl-c.example;" in csp), csp
