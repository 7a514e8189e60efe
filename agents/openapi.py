"""The agent's OpenAPI document, corrected where FastAPI's generated one does not describe the agent.

The agent is not an operator surface, but the controller and any client generated from this document
must be able to trust it (schemathesis checks it with every check against the live lab):

* Authentication: the bearer token is read by a dependency of our own, so FastAPI declares no security.
  The document declares the bearer scheme on every route that needs it, and its 401 answer.
* The cross-field rule of `POST /v1/actions` (start/stop/restart name a `service`, repoint_db a `to_site`,
  route_inbound `hosts`, job_enable/job_disable a `job`, set_file a `file` and a `value`, the other actions
  none of them) is a `oneOf` by
  action, and the names a request may use are this host's own (`enum`: its actions — a managed server has
  no board actions —, services, database sites, the site's hosts and its scheduled jobs), so a request the
  document allows is one the agent runs.
* Every answer each route can give, with its body: 400 refused, 409 (action id reused, stale leader term),
  413 body over the limit, 422 malformed body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from agents.actions import FIELDS, NEEDS, ActionKind

BEARER = {"type": "http", "scheme": "bearer", "description": "the agent token (agent.token_file)"}
DETAIL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
CLIENT_ERRORS = {
    "400": "refused: an unknown service, database site or host (nothing ran)",
    "401": "missing or wrong bearer token",
    "409": "the action_id was used for another request, or the leader term is stale "
           "(header X-Ccfo-Highest-Term names the highest term seen)",
    "413": "request body over 64 kB",
}


def install(app: FastAPI, *, actions: Sequence[ActionKind], services: Sequence[str], sites: Sequence[str],
            hosts: Sequence[str], jobs: Sequence[str], authenticated: Sequence[str],
            files: dict[str, list[str]] | None = None) -> None:
    """Make `app.openapi()` return the corrected document (built once, like FastAPI's own)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)
            doc.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = BEARER
            for path, item in doc.get("paths", {}).items():
                for method, op in item.items():
                    _answers(op, path, method, authenticated)
            request = doc["components"].get("schemas", {}).get("ActionRequest")
            if request is not None:
                _actions(request, list(actions), {"service": list(services), "to_site": list(sites),
                                                  "hosts": list(hosts), "job": list(jobs),
                                                  "file": list(files or {}),
                                                  "value": sorted({v for vs in (files or {}).values() for v in vs})})
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _answers(op: dict[str, Any], path: str, method: str, authenticated: Sequence[str]) -> None:
    responses = op.setdefault("responses", {})
    codes: list[str] = []
    if path in authenticated:
        op["security"] = [{"bearer": []}]
        codes.append("401")
    if method == "post":
        codes += ["400", "409", "413"]
    for code in codes:
        responses[code] = {"description": CLIENT_ERRORS[code],
                           "content": {"application/json": {"schema": DETAIL}}}


def _actions(schema: dict[str, Any], actions: list[ActionKind], names: dict[str, list[str]]) -> None:
    props = schema["properties"]
    props["action"] = {"type": "string", "enum": [a.value for a in actions], "title": "Action"}
    for field, values in names.items():
        string = next(s for s in props[field]["anyOf"] if s.get("type") != "null")
        target = string["items"] if string.get("type") == "array" else string
        if values:
            target["enum"] = values
    branches = []
    by_need: dict[tuple[str, ...], list[str]] = {}
    for kind in actions:
        by_need.setdefault(NEEDS.get(kind, ()), []).append(kind.value)
    for need, kinds in by_need.items():
        branch: dict[str, Any] = {"properties": {"action": {"enum": kinds}}}
        for field in FIELDS:
            branch["properties"][field] = {"type": "null"} if field not in need else {
                "type": "array" if field == "hosts" else "string"}
        if need:
            branch["required"] = list(need)
        branches.append(branch)
    schema["oneOf"] = branches
