"""POST /api/v1/agents/{host}/report: an agent pushes its host's (or managed server's) health report (agent
tokens only). A server's report is kept for the status view; a host's goes to the engine's decisions. The
answer says whether this controller is the acting leader (`X-Ccfo-Acting`), for the agent's self-fencing."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from ccfo.platform.auth import Role
from ccfo.platform.headers import ACTING_HEADER
from controller.api.deps import Caller, ClockDep, EngineDep, get_report_parser, known_agent
from controller.api.models import AgentReport
from controller.api.responses import AUTH, errors

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=AUTH | errors(409, 413))


HostPath = Annotated[str, Path(max_length=63)]


def reporter(host: HostPath, who: Caller, engine: EngineDep) -> str:
    """The host an agent token may report for (checked before the body is read: 403, then 422 for a host
    the site does not have)."""
    if who.role is not Role.AGENT or (who.host is not None and who.host != host):
        raise HTTPException(403, f"{who.name} may not report for {host}")
    return known_agent(engine, host)


@router.post("/{host}/report", status_code=204, response_class=Response, response_model=None)
async def push_report(host: Annotated[str, Depends(reporter)], body: AgentReport, engine: EngineDep, clock: ClockDep,
                      parse: Annotated[Any, Depends(get_report_parser)], response: Response) -> None:
    # whether this controller acts now: the agent counts only the acting leader's answer as contact for
    # self-fencing (agents/reporter.py); a follower takes the report too, it observes the site
    response.headers[ACTING_HEADER] = "yes" if engine.leadership.is_acting() else "no"
    if body.host != host:
        raise HTTPException(409, f"the report is for {body.host!r}, not {host!r}")
    try:
        health = parse(host, body.model_dump(), clock())
        if host in engine.site.host_ids:
            engine.ingest(health)
        else:
            engine.ingest_server(health, [j.model_dump(include={"name", "backend", "state", "next_run"})
                                          for j in body.jobs or ()])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:  # e.g. a list where an object belongs
        raise HTTPException(422, f"malformed report: {exc}") from exc
