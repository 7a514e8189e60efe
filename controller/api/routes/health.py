"""Health checks for load balancers, keepalived and monitoring: no token, no secret, nothing but a verdict.

* GET /healthz: 200 while the process serves HTTP (liveness).
* GET /readyz: 200 when the engine's control loop runs and the journal is writable, else 503 with the
  reasons (readiness: this controller can decide and record what it does).
"""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from controller.api.deps import EngineDep
from controller.api.responses import HealthOut, errors
from controller.engine import Engine

router = APIRouter(tags=["health"], responses=errors(400))


def not_ready(engine: Engine) -> list[str]:
    """Why this controller is not ready to serve, or an empty list."""
    reasons = [] if engine.looping else ["the engine's control loop is not running"]
    why = engine.journal.unwritable()
    return reasons + ([f"journal: {why}"] if why else [])


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", response_model=HealthOut,
            responses={503: {"model": HealthOut, "description": "not ready: the reasons say why"}})
async def readyz(engine: EngineDep) -> dict | JSONResponse:
    reasons = await asyncio.to_thread(not_ready, engine)
    if reasons:
        return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
    return {"status": "ok"}
