"""The controller's HTTP edge: `create_app` assembles the routers (controller.api.routes), the
dependencies' services on `app.state` (controller.api.deps), the refusal handlers (controller.api.errors),
the body limit and the dashboard's static files.

Every route but the health checks authenticates with a bearer token; roles gate what it may do (viewer
reads, operator acts, admin changes the mode); every change records who and why. Agents push reports with
agent tokens. The services are built by the composition root (controller.service) and passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from ccfo.platform.auth import TokenStore
from ccfo.platform.limits import BodyLimit
from controller.api import errors, schema
from controller.api.deps import known_query
from controller.api.idempotency import Idempotency
from controller.api.routes import (
    agents,
    checklists,
    dashboard,
    drills,
    events,
    health,
    journal,
    operator,
    plans,
    status,
)
from controller.checklists.runner import ChecklistRunner
from controller.engine import Engine
from controller.metrics import ControllerMetrics
from drills.manager import DrillManager

MAX_BODY = 64 * 1024
ROUTERS = (health, status, plans, operator, agents, journal, events, drills, checklists, dashboard)


def create_app(engine: Engine, tokens: TokenStore, *, drills: DrillManager, checklists: ChecklistRunner,
               parse_report: Callable[[str, dict[str, Any], float], Any],
               clock: Callable[[], float] = time.time) -> FastAPI:
    app = FastAPI(title="ccfo controller", version="1", description="Call-center telephony failover controller",
                  dependencies=[Depends(known_query)])  # an unknown query parameter is a 400, not ignored
    app.state.engine, app.state.tokens, app.state.clock = engine, tokens, clock
    app.state.drills, app.state.checklists, app.state.parse_report = drills, checklists, parse_report
    app.state.metrics = ControllerMetrics(engine)  # folds the journal from now on: made with the app
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)  # announced or chunked: a body over 64 kB gets 413
    app.add_middleware(Idempotency)  # a repeated request with the same Idempotency-Key gets the first answer
    for module in ROUTERS:
        app.include_router(module.router)
    errors.install(app)
    # The dashboard's script and style sheet (no build step); the page holds no secret, the API does.
    app.mount("/static", StaticFiles(directory=dashboard.STATIC, check_dir=False), name="static")
    schema.install(app)  # every answer each operation can give, in the OpenAPI document
    return app
