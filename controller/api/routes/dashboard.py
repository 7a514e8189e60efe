"""The dashboard: its page at / (its script and style sheet are mounted at /static by create_app). The
page holds no secret (the API does) and loads only its own files, as its Content-Security-Policy says."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).resolve().parents[2] / "web"
# The page loads only its own script and style sheet and talks only to this API.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                           "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                                           "frame-ancestors 'none'",
                "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
router = APIRouter()


@router.get("/", response_class=HTMLResponse, response_model=None, include_in_schema=False)
async def index() -> HTMLResponse:
    page = STATIC / "index.html"
    if not page.exists():
        return HTMLResponse("<h1>ccfo</h1><p>API at /docs</p>")
    return HTMLResponse(page.read_text(encoding="utf-8"), headers=PAGE_HEADERS)
