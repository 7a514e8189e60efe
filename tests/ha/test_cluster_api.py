"""The cluster routes on three members sharing a real etcd: `GET /leader` is 200 on the acting leader only
(503 elsewhere, no token needed), `GET /api/v1/cluster` (viewer) shows the same leader and term on every
member with each member's role, and a member that stops is shown unreachable. The apps are served in
process (ASGI); the router's authentication is the dependency the app passes in, as in create_app."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from ccfo.clients.etcd import EtcdClient
from ccfo.platform.auth import Principal, Role
from controller.api.cluster import cluster_router
from controller.cluster.election import Election
from controller.cluster.members import ClusterView, MemberInfo, Presence
from lab.etcd import EtcdCluster
from tests.support import async_wait_until

TOKEN = "viewer-token-for-the-cluster-test"
MEMBERS = [MemberInfo(f"ctl-{x}", f"http://127.0.0.1:80{i}0") for i, x in enumerate("abc")]


def need(role: Role) -> Callable[[Request], Principal]:
    def check(request: Request) -> Principal:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            raise HTTPException(401, "missing, wrong or expired token", headers={"WWW-Authenticate": "Bearer"})
        return Principal("viewer", Role.VIEWER)
    return check


def app_for(view: ClusterView) -> FastAPI:
    app = FastAPI()
    app.include_router(cluster_router(view, need))

    @app.get("/probe")
    async def probe(who: Annotated[Principal, Depends(need(Role.VIEWER))]) -> str:
        return who.name
    return app


@pytest.mark.asyncio
async def test_leader_and_cluster_routes(etcd3: EtcdCluster) -> None:
    clients = [EtcdClient(etcd3.endpoints) for _ in MEMBERS]
    elections = [Election(c, "api", m.name, lease_ttl_s=5) for c, m in zip(clients, MEMBERS, strict=True)]
    presences = [Presence(c, "api", m, ttl_s=5) for c, m in zip(clients, MEMBERS, strict=True)]
    views = [ClusterView(c, "api", e, MEMBERS) for c, e in zip(clients, elections, strict=True)]
    tasks = {m.name: [asyncio.create_task(e.run()), asyncio.create_task(p.run())]
             for m, e, p in zip(MEMBERS, elections, presences, strict=True)}
    https = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(v)), base_url="http://ctl") for v in views]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async def codes() -> list[int]:
            return [(await h.get("/leader")).status_code for h in https]
        await async_wait_until(lambda: _sorted(codes()), timeout=10)
        got = await codes()
        assert sorted(got) == [200, 503, 503]
        i = got.index(200)
        leader = MEMBERS[i].name
        assert (await https[i].get("/leader")).json() == {"leader": leader, "term": elections[i].term, "me": leader}
        # elected but not acting yet (the engine still takes the site state over from etcd): 503, so a load
        # balancer or the CLI sends no change there that would be refused with 409
        views[i].acting = lambda: False
        assert (await https[i].get("/leader")).status_code == 503
        assert (await https[i].get("/api/v1/cluster", headers=auth)).json()["acting"] is False
        views[i].acting = elections[i].is_acting

        async def all_see_three() -> bool:
            for h in https:
                body = (await h.get("/api/v1/cluster", headers=auth)).json()
                if sorted(m["role"] for m in body["members"]) != ["follower", "follower", "leader"]:
                    return False
            return True
        await async_wait_until(all_see_three, timeout=10)
        for h in https:
            body = (await h.get("/api/v1/cluster", headers=auth)).json()
            assert body["leader"] == leader and body["term"] == elections[i].term and body["lease_ttl_s"] == 5
            assert body["etcd_reachable"] is True
            assert {m["name"]: m["url"] for m in body["members"]} == {m.name: m.url for m in MEMBERS}
        assert (await https[0].get("/api/v1/cluster")).status_code == 401

        # a follower stops (its presence lease is revoked on the way out): the others show it unreachable
        j = next(k for k in range(3) if k != i)
        for t in tasks[MEMBERS[j].name]:
            t.cancel()
        await asyncio.gather(*tasks[MEMBERS[j].name], return_exceptions=True)

        async def shown_unreachable() -> bool:
            body = (await https[i].get("/api/v1/cluster", headers=auth)).json()
            return {m["name"]: m["role"] for m in body["members"]}[MEMBERS[j].name] == "unreachable"
        await async_wait_until(shown_unreachable, timeout=5)
        assert (await https[i].get("/leader")).status_code == 200
        assert (await https[j].get("/leader")).status_code == 503
    finally:
        for ts in tasks.values():
            for t in ts:
                t.cancel()
        await asyncio.gather(*(t for ts in tasks.values() for t in ts), return_exceptions=True)
        for h in https:
            await h.aclose()
        for c in clients:
            await c.aclose()


async def _sorted(codes: object) -> bool:
    got = await codes  # type: ignore[misc]
    return sorted(got) == [200, 503, 503]
