"""The controller's OpenAPI document, corrected where FastAPI's generated one does not describe the app.

FastAPI documents every 422 answer as a list of request-validation errors. The app also answers 422 for
requests that validate but cannot apply (an unknown host, a malformed agent report, an invalid schedule or
checklist), with `detail` a sentence or a {message, problems} object, as clients (CLI, dashboard) read it.
The document says so, so that a client generated from it, or schemathesis, is not misled.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

MESSAGE = {"type": "string", "title": "Message", "description": "why the request cannot apply"}
PROBLEMS = {"type": "object", "title": "Problems", "properties": {"message": {"type": "string"},
                                                                 "problems": {"type": "array",
                                                                              "items": {"type": "string"}}}}


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the corrected document (built once, like FastAPI's own)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = FastAPI.openapi(app)  # FastAPI's own document, with every option the app was given
            detail = doc.get("components", {}).get("schemas", {}).get("HTTPValidationError", {}) \
                .get("properties", {}).get("detail")
            if detail is not None and "anyOf" not in detail:
                detail.pop("type", None)
                items = detail.pop("items", None)
                detail["anyOf"] = [{"type": "array", "items": items}, MESSAGE, PROBLEMS]
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
