"""The HTTP edge's dependencies: the services from `app.state`, the caller's identity and role.

`create_app` puts the engine, the token store, the drill manager, the checklist runner, the report parser
and the clock on `app.state`; the routes take them through these functions (FastAPI's dependency
injection), so a router module holds routes and nothing else. Roles: `Viewer` reads, `Operator` acts,
`Admin` changes the mode, `Agent` pushes reports; an agent token is good for nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ccfo.platform.auth import Principal, Role, TokenStore
from controller.checklists.runner import ChecklistRunner
from controller.engine import Engine
from drills.manager import DrillManager

bearer = HTTPBearer(auto_error=False)
AUTH_FAILED = "missing, wrong or expired token"


def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def get_drills(request: Request) -> DrillManager:
    return request.app.state.drills  # type: ignore[no-any-return]


def get_checklists(request: Request) -> ChecklistRunner:
    return request.app.state.checklists  # type: ignore[no-any-return]


def get_report_parser(request: Request) -> Callable[[str, dict[str, Any], float], Any]:
    return request.app.state.parse_report  # type: ignore[no-any-return]


def get_clock(request: Request) -> Callable[[], float]:
    return request.app.state.clock  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
DrillsDep = Annotated[DrillManager, Depends(get_drills)]
ChecklistsDep = Annotated[ChecklistRunner, Depends(get_checklists)]
ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


def principal(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """Who calls: a valid, unexpired bearer token, or 401."""
    tokens: TokenStore = request.app.state.tokens
    who = tokens.authenticate(creds.credentials, request.app.state.clock()) if creds else None
    if who is None:
        raise HTTPException(401, AUTH_FAILED, headers={"WWW-Authenticate": "Bearer"})
    return who


def need(role: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting callers with at least `role` (agents only where `role` is AGENT), else 403."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role < role or (who.role is Role.AGENT and role is not Role.AGENT):
            raise HTTPException(403, f"{who.name} ({who.role.name.lower()}) may not do this: needs "
                                     f"{role.name.lower()}")
        return who

    return check


Caller = Annotated[Principal, Depends(principal)]
Viewer = Annotated[Principal, Depends(need(Role.VIEWER))]
Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(need(Role.ADMIN))]


def known_host(engine: Engine, name: str) -> str:
    """`name` if it is a host of the site, else 422 naming the hosts."""
    if name not in engine.site.host_ids:
        raise HTTPException(422, f"unknown host {name!r} (hosts: {', '.join(engine.site.host_ids)})")
    return name


def known_agent(engine: Engine, name: str) -> str:
    """`name` if it is a host or a managed server of the site (a machine with an agent), else 422."""
    if name not in engine.site.agent_ids:
        raise HTTPException(422, f"unknown host or server {name!r} (agents: {', '.join(engine.site.agent_ids)})")
    return name


_QUERY: dict[int, frozenset[str]] = {}


def known_query(request: Request) -> None:
    """400 for a query parameter the operation does not take (a typo is said, not silently ignored)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    allowed = _QUERY.get(id(route))
    if allowed is None:
        allowed = _QUERY[id(route)] = frozenset(_query_names(route.dependant))
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
        raise HTTPException(400, f"unknown query parameter {', '.join(map(repr, unknown))}: {takes}")


def _query_names(dependant: Any) -> set[str]:
    """The query parameters an operation takes: its own and its dependencies'."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
