"""The agent's control API (FastAPI): the host report and the actions, behind a bearer token.

    GET  /v1/health   unauthenticated liveness: {"status": "ok"}, nothing else (kept for older checks)
    GET  /healthz     unauthenticated: 200 {"status": "ok"} while the process serves
    GET  /readyz      unauthenticated: 200 {"status": "ready", "ami": "connected" | "not configured"}, else
                      503 {"status": "not ready", "ami": "disconnected" | "no secret"}; fixed words, no secrets
    GET  /metrics     unauthenticated Prometheus metrics (agents/metrics.py): counts and capacity, no secrets;
                      the agent's token would also allow actions, so a scraper must not need it
    GET  /v1/report   the host report (agents/report.py)
    GET  /v1/jobs     a managed server's scheduled jobs: name, backend, state, next run (404 on an IPC host)
    POST /v1/actions  run an action (agents/actions.py): 200 with the result (status done or failed),
                      400 refused (unknown service/site/host), 409 action_id reused for another request
                      or a stale leader term (agents/terms.py; header X-Ccfo-Highest-Term),
                      422 malformed body
    GET  /v1/openapi.json  the OpenAPI document (agents/openapi.py), with this host's names; token needed
A missing or wrong token gets 401 with `WWW-Authenticate: Bearer`; a method a path does not have gets 405
with the path's methods in `Allow`. No interactive docs are served (the agent is not an operator surface),
and its document only to a token holder. No route returns or logs the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from agents import openapi
from agents.actions import ActionConflict, ActionExecutor, ActionRefused, ActionRequest, ActionResult
from agents.auth import Token, authenticate
from agents.metrics import CONTENT_TYPE, AgentMetrics
from agents.terms import StaleTerm
from ccfo.platform import allow
from ccfo.platform.headers import TERM_HEADER
from ccfo.platform.limits import BodyLimit

log = logging.getLogger("ccfo.agent.api")
MAX_BODY = 64 * 1024


def caller(request: Request) -> str:
    """The calling token's name; 401 unless the request carries one of the app's tokens."""
    name = authenticate(request.headers.get("authorization"), request.app.state.tokens)
    if name is None:
        log.warning("rejected %s %s from %s: missing or wrong token", request.method, request.url.path,
                    request.client.host if request.client else "?")
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return name


Caller = Annotated[str, Depends(caller)]


def create_app(host: str, tokens: Sequence[Token], report: Callable[[], Awaitable[dict[str, Any]]],
               executor: ActionExecutor, metrics: AgentMetrics | None = None,
               readiness: Callable[[], tuple[bool, str]] | None = None,
               jobs: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None) -> FastAPI:
    """`readiness` returns (ready, the AMI word for /readyz); without it the agent counts as ready. `jobs`
    (a managed server's) lists the scheduled jobs at GET /v1/jobs."""
    if not tokens:
        raise ValueError("the agent API needs at least one token")
    app = FastAPI(title=f"ccfo agent {host}", version="1", docs_url=None, redoc_url=None, openapi_url=None)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)  # announced or chunked: a body over 64 kB gets 413

    app.state.tokens = tuple(tokens)

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    registry = metrics or AgentMetrics(host)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: AMI disconnected or its secret unreadable"}})
    async def readyz() -> JSONResponse:
        ready, ami = readiness() if readiness is not None else (True, "not configured")
        body = {"status": "ready" if ready else "not ready", "ami": ami}
        return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def get_metrics() -> Response:
        return Response(registry.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/report")
    async def get_report(who: Caller) -> dict[str, Any]:
        return await report()

    if jobs is not None:
        @app.get("/v1/jobs")
        async def get_jobs(who: Caller) -> dict[str, Any]:
            return {"host": host, "jobs": await jobs()}

    @app.post("/v1/actions")
    async def post_action(body: ActionRequest, who: Caller) -> ActionResult:
        try:
            return await executor.run(body, who)
        except ActionRefused as exc:
            log.warning("action %s %s by %s refused: %s", body.action_id, body.action.value, who, exc)
            raise HTTPException(400, str(exc)) from exc
        except StaleTerm as exc:
            log.warning("action %s %s by %s refused: %s", body.action_id, body.action.value, who, exc)
            raise HTTPException(409, str(exc), headers={TERM_HEADER: str(exc.highest)}) from exc
        except ActionConflict as exc:
            log.warning("action %s by %s: %s", body.action_id, who, exc)
            raise HTTPException(409, str(exc)) from exc

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def get_openapi(who: Caller) -> dict[str, Any]:
        return app.openapi()

    openapi.install(app, actions=executor.kinds(), services=executor.services.names(),
                    sites=list(executor.files.sites), hosts=executor.hosts,
                    jobs=list(executor.jobs.specs) if executor.jobs is not None else [],
                    files={f: list(v) for f, v in executor.switch_files.values.items()}
                    if executor.switch_files is not None else None,
                    authenticated=("/v1/report", "/v1/actions", "/v1/jobs"))
    allow.install(app)
    return app
