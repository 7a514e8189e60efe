"""The controller's OpenAPI document, corrected where FastAPI's generated one does not describe the app.

* FastAPI documents every 422 answer as a list of request-validation errors. The app also answers 422 for
  requests that validate but cannot apply (a malformed agent report, a cron line that names no time, an
  invalid checklist file), with `detail` a sentence or a {message, problems} object, as clients (CLI,
  dashboard) read it. The document says so.
* Host names are the site's: every field and path parameter that names a host lists them (`enum`), so a
  client generated from the document, or schemathesis, knows an unknown host is refused.
Everything else (every status code of every operation, with its body) is declared on the routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

MESSAGE = {"type": "string", "title": "Message", "description": "why the request cannot apply"}
PROBLEMS = {"type": "object", "title": "Problems", "properties": {"message": {"type": "string"},
                                                                 "problems": {"type": "array",
                                                                              "items": {"type": "string"}}}}
HOST_FIELDS = {"FailoverRequest": "to", "SwitchoverRequest": "to", "ConfirmOffRequest": "host", "AgentReport": "host"}
HOST_PARAMS = {"/api/v1/agents/{host}/report": "host"}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the corrected document (built once, like FastAPI's own)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)  # FastAPI's own document, with every option the app was given
            schemas = doc.get("components", {}).get("schemas", {})
            detail = schemas.get("HTTPValidationError", {}).get("properties", {}).get("detail")
            if detail is not None and "anyOf" not in detail:
                detail.pop("type", None)
                items = detail.pop("items", None)
                detail["anyOf"] = [{"type": "array", "items": items}, MESSAGE, PROBLEMS]
            _list_hosts(doc, list(app.state.engine.site.host_ids))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _list_hosts(doc: dict[str, Any], hosts: list[str]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    for model, field in HOST_FIELDS.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["enum"] = hosts
    for path, name in HOST_PARAMS.items():
        for op in doc.get("paths", {}).get(path, {}).values():
            for param in op.get("parameters", []):
                if param.get("name") == name and param.get("in") == "path":
                    param["schema"]["enum"] = hosts
