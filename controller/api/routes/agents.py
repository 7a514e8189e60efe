"""POST /api/v1/agents/{host}/report: an agent pushes its host's health report (agent tokens only)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Response

from ccfo.platform.auth import Role
from controller.api.deps import Caller, ClockDep, EngineDep, get_report_parser, known_host

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.post("/{host}/report", status_code=204, response_class=Response, response_model=None)
async def push_report(host: Annotated[str, Path(max_length=63)], who: Caller, engine: EngineDep, clock: ClockDep,
                      body: Annotated[dict[str, Any], Body()],
                      parse: Annotated[Any, Depends(get_report_parser)]) -> None:
    if who.role is not Role.AGENT or (who.host is not None and who.host != host):
        raise HTTPException(403, f"{who.name} may not report for {host}")
    known_host(engine, host)
    try:
        engine.ingest(parse(host, body, clock()))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:  # e.g. a list where an object belongs
        raise HTTPException(422, f"malformed report: {exc}") from exc
