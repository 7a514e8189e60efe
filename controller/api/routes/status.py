"""GET /api/v1/status (the site as the dashboard and `ccfo status` show it) and GET /metrics (Prometheus)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from controller.api.deps import EngineDep, Viewer
from controller.api.responses import AUTH, StatusOut
from controller.metrics import CONTENT_TYPE, ControllerMetrics
from controller.status import status

router = APIRouter(tags=["status"], responses=AUTH)


def exporter(request: Request) -> ControllerMetrics:
    """This app's own exporter and registry (controller/metrics.py), made with the app (create_app)."""
    return request.app.state.metrics  # type: ignore[no-any-return]


@router.get("/api/v1/status", response_model=StatusOut)
async def get_status(who: Viewer, engine: EngineDep) -> dict:
    return status(engine) | {"you": {"name": who.name, "role": who.role.name.lower()}}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}})
async def metrics(_: Viewer, metrics: Annotated[ControllerMetrics, Depends(exporter)]) -> Response:
    return Response(await metrics.render(), media_type=CONTENT_TYPE)
