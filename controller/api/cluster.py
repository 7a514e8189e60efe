"""The cluster routes (controller HA), one router the app includes when site.yaml has `cluster:`.

    GET /api/v1/cluster   (viewer) {"leader": NAME|null, "term": INT|null, "lease_ttl_s": F,
                          "members": [{"name", "url", "role": "leader"|"follower"|"unreachable"}], ...}
    GET /leader           unauthenticated: 200 only on the member that is leader and acting now, 503
                          elsewhere (what keepalived or a load balancer checks, like Patroni's /primary);
                          the body says which member leads, nothing secret.
No `from __future__ import annotations` here, like controller/api/app.py: FastAPI resolves the route
annotations (the local `Viewer` alias) at definition time.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ccfo.platform.auth import Principal, Role
from controller.cluster.members import ClusterView


class MemberOut(BaseModel):
    name: str
    url: str
    role: str


class ClusterOut(BaseModel):
    leader: str | None
    term: int | None
    lease_ttl_s: float
    me: str
    acting: bool
    etcd_reachable: bool
    members: list[MemberOut]


class LeaderOut(BaseModel):
    leader: str | None
    term: int | None
    me: str


def cluster_router(view: ClusterView, need: Callable[[Role], Callable[..., Principal]]) -> APIRouter:
    router = APIRouter(tags=["cluster"])
    Viewer = Annotated[Principal, Depends(need(Role.VIEWER))]

    @router.get("/api/v1/cluster", response_model=ClusterOut)
    async def get_cluster(_: Viewer) -> dict[str, Any]:
        return await view.read()

    @router.get("/leader", response_model=LeaderOut, responses={503: {"model": LeaderOut}})
    async def get_leader() -> JSONResponse:
        snap = view.election.snapshot()
        body = {"leader": snap.leader, "term": snap.term, "me": view.election.name}
        return JSONResponse(body, status_code=200 if view.is_leader() else 503)

    return router
