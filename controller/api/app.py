"""The controller's HTTP API under /api/v1, the SSE stream, /metrics, and the dashboard's static page.

Every route authenticates with a bearer token; roles gate what it may do (viewer reads, operator acts,
admin changes the mode); every change records who and why. Agents push reports with agent tokens.
No `from __future__ import annotations` here: FastAPI resolves the dependency annotations, which name
functions local to create_app, when the routes are declared.
"""


import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from ccfo.domain.plan import PlanRefused, build_failback, build_failover, build_switchover
from ccfo.platform.auth import Principal, Role, TokenStore
from ccfo.platform.limits import BodyLimit
from controller.api import schema
from controller.api.checklists import checklist_router
from controller.api.drills import router as drills_router
from controller.api.idempotency import Idempotency
from controller.api.models import (
    ConfirmOffRequest,
    DecisionRequest,
    FailbackRequest,
    FailoverRequest,
    ModeRequest,
    SwitchoverRequest,
)
from controller.api.views import status
from controller.engine import Engine, Refused
from controller.metrics import render_metrics
from controller.store import PlanStatus

log = logging.getLogger("ccfo.api")
MAX_BODY = 64 * 1024
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is a 422, not an OverflowError (a 500)
STATIC = Path(__file__).resolve().parent.parent / "web"
# The page loads only its own script and style sheet and talks only to this API.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                           "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                           "frame-ancestors 'none'",
                "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def create_app(engine: Engine, tokens: TokenStore, parse_report: Callable[[str, dict[str, Any], float], Any],
               clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(title="ccfo controller", version="1", description="Call-center telephony failover controller")
    bearer = HTTPBearer(auto_error=False)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)  # announced or chunked: a body over 64 kB gets 413
    app.add_middleware(Idempotency)  # a repeated request with the same Idempotency-Key gets the first answer

    def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        who = tokens.authenticate(creds.credentials, clock()) if creds else None
        if who is None:
            raise HTTPException(401, "missing, wrong or expired token", headers={"WWW-Authenticate": "Bearer"})
        return who

    def need(role: Role) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if who.role < role or (who.role is Role.AGENT and role is not Role.AGENT):
                raise HTTPException(403, f"{who.name} ({who.role.name.lower()}) may not do this: needs "
                                         f"{role.name.lower()}")
            return who
        return check

    Viewer = Annotated[Principal, Depends(need(Role.VIEWER))]
    Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]
    Admin = Annotated[Principal, Depends(need(Role.ADMIN))]
    app.include_router(checklist_router(engine, need))
    app.include_router(drills_router(engine, need))

    def refused(exc: Exception) -> HTTPException:
        return HTTPException(409, str(exc))

    def known_host(name: str) -> str:
        if name not in engine.site.host_ids:
            raise HTTPException(422, f"unknown host {name!r} (hosts: {', '.join(engine.site.host_ids)})")
        return name

    @app.get("/api/v1/status")
    async def get_status(who: Viewer) -> dict[str, Any]:
        return status(engine) | {"you": {"name": who.name, "role": who.role.name.lower()}}

    @app.post("/api/v1/agents/{host}/report", status_code=204)
    async def push_report(host: str, who: Annotated[Principal, Depends(principal)],
                          body: Annotated[dict[str, Any], Body()]) -> None:
        if who.role is not Role.AGENT or (who.host is not None and who.host != host):
            raise HTTPException(403, f"{who.name} may not report for {host}")
        known_host(host)
        try:
            engine.ingest(parse_report(host, body, clock()))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:  # e.g. a list where an object belongs
            raise HTTPException(422, f"malformed report: {exc}") from exc

    @app.get("/api/v1/plans")
    async def list_plans(_: Viewer, status_: Annotated[str | None, Query(alias="status", max_length=64)] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        try:
            wanted = {PlanStatus(s) for s in status_.split(",")} if status_ else None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        plans = await asyncio.to_thread(engine.store.plans, wanted, limit)
        return {"plans": [p.to_dict() for p in plans]}

    @app.get("/api/v1/plans/{plan_id}")
    async def get_plan(plan_id: str, _: Viewer) -> dict[str, Any]:
        rec = engine.store.get_plan(plan_id)
        if rec is None:
            raise HTTPException(404, f"no plan {plan_id}")
        return rec.to_dict()

    async def plan_op(op: Callable[..., Any], plan_id: str, who: Principal, reason: str) -> dict[str, Any]:
        try:
            rec = await op(plan_id, who.name, reason)
        except KeyError:
            raise HTTPException(404, f"no plan {plan_id}") from None
        except Refused as exc:
            raise refused(exc) from exc
        return rec.to_dict()

    @app.post("/api/v1/plans/{plan_id}/approve")
    async def approve(plan_id: str, body: DecisionRequest, who: Operator) -> dict[str, Any]:
        return await plan_op(engine.approve, plan_id, who, body.reason)

    @app.post("/api/v1/plans/{plan_id}/reject")
    async def reject(plan_id: str, body: DecisionRequest, who: Operator) -> dict[str, Any]:
        return await plan_op(engine.reject, plan_id, who, body.reason)

    @app.post("/api/v1/plans/{plan_id}/resume")
    async def resume(plan_id: str, body: DecisionRequest, who: Operator) -> dict[str, Any]:
        return await plan_op(engine.resume, plan_id, who, body.reason)

    @app.post("/api/v1/plans/{plan_id}/abort")
    async def abort(plan_id: str, body: DecisionRequest, who: Operator) -> dict[str, Any]:
        return await plan_op(engine.abort, plan_id, who, body.reason)

    @app.post("/api/v1/plans/{plan_id}/confirm-off")
    async def confirm_off(plan_id: str, body: ConfirmOffRequest, who: Operator) -> dict[str, str]:
        try:
            await engine.confirm_off(plan_id, known_host(body.host), who.name, body.reason)
        except Refused as exc:
            raise refused(exc) from exc
        return {"confirmed": body.host}

    async def submit(build: Callable[[], Any], who: Principal, reason: str) -> dict[str, Any]:
        try:
            plan = build()
            rec = await engine.submit(plan, who.name, reason)
        except (PlanRefused, Refused) as exc:
            raise refused(exc) from exc
        return rec.to_dict()

    @app.post("/api/v1/failover", status_code=202)
    async def failover(body: FailoverRequest, who: Operator) -> dict[str, Any]:
        to = known_host(body.to)
        return await submit(lambda: build_failover(engine.site, engine.state, to, f"operator {who.name}: "
                                                   f"{body.reason}", source_reachable=_reachable(engine)),
                            who, body.reason)

    @app.post("/api/v1/switchover", status_code=202)
    async def switchover(body: SwitchoverRequest, who: Operator) -> dict[str, Any]:
        to = known_host(body.to)
        return await submit(lambda: build_switchover(engine.site, engine.state, to, body.drain_timeout_s,
                                                     f"operator {who.name}: {body.reason}"), who, body.reason)

    @app.post("/api/v1/failback", status_code=202)
    async def failback(body: FailbackRequest, who: Operator) -> dict[str, Any]:
        return await submit(lambda: build_failback(engine.site, engine.state, body.drain_timeout_s,
                                                   f"operator {who.name}: {body.reason}"), who, body.reason)

    @app.put("/api/v1/mode")
    async def set_mode(body: ModeRequest, who: Admin) -> dict[str, Any]:
        state = await engine.set_mode(body.mode, who.name, body.reason)
        return {"mode": state.mode.value}

    @app.get("/api/v1/journal")
    async def journal(_: Viewer, kind: Annotated[str | None, Query(max_length=200)] = None,
                      host: Annotated[str | None, Query(max_length=63)] = None,
                      plan_id: Annotated[str | None, Query(max_length=64)] = None,
                      before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                      after_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        kinds = kind.split(",") if kind else None
        entries = await asyncio.to_thread(engine.journal.query, kinds=kinds, host=host, plan_id=plan_id,
                                          before_id=before_id, after_id=after_id, limit=limit,
                                          newest_first=after_id is None)
        return {"entries": [_entry(e) for e in entries]}

    @app.get("/api/v1/events")
    async def events(_: Viewer, request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b": ccfo events\n\n"
            async for event in engine.events.subscribe():
                if await request.is_disconnected():
                    break
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n".encode()
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(_: Viewer) -> str:
        return render_metrics(engine)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = STATIC / "index.html"
        if not page.exists():
            return HTMLResponse("<h1>ccfo</h1><p>API at /docs</p>")
        return HTMLResponse(page.read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    # The dashboard's script and style sheet (no build step); the page holds no secret, the API does.
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    schema.install(app)  # 422 answers also carry a sentence: the document says so
    return app


def _reachable(engine: Engine) -> bool:
    active = engine.state.active_host
    snap = engine.snap
    return bool(active and snap and snap.hosts[active].reachable)


def _entry(e: Any) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "kind": e.kind, "host": e.host, "plan_id": e.plan_id, "step": e.step,
            "actor": e.actor, "reason": e.reason, "status": e.status, "duration_s": e.duration_s, "data": e.data}
