"""GET /api/v1/status (the site as the dashboard and `ccfo status` show it) and GET /metrics."""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from controller.api.deps import EngineDep, Viewer
from controller.api.responses import AUTH, StatusOut
from controller.metrics import render_metrics
from controller.status import status

router = APIRouter(tags=["status"], responses=AUTH)


@router.get("/api/v1/status", response_model=StatusOut)
async def get_status(who: Viewer, engine: EngineDep) -> dict:
    return status(engine) | {"you": {"name": who.name, "role": who.role.name.lower()}}


@router.get("/metrics", response_model=str, response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(_: Viewer, engine: EngineDep) -> str:
    return render_metrics(engine)
