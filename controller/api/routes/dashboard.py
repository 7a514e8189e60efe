"""The dashboard: its page at / (its scripts and style sheet are mounted at /static by create_app). The
page holds no secret (the API does) and loads only its own files, as its Content-Security-Policy says; it
connects only to this API, and in a controller cluster also to the other members' APIs (the origins
controller.api.cors allows), so that it can go on with another member when this one dies."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).resolve().parents[2] / "web"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src {connect}; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# The page loads only its own scripts and style sheet and talks only to this API (and its cluster's members).
PAGE_HEADERS = {"Content-Security-Policy": CSP.format(connect="'self'"),
                "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
router = APIRouter()


def page_headers(member_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """The page's headers: connect-src 'self', plus the cluster members' origins when there are some."""
    return {**PAGE_HEADERS, "Content-Security-Policy": CSP.format(connect=" ".join(("'self'", *member_origins)))}


@router.get("/", response_class=HTMLResponse, response_model=None, include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    page = STATIC / "index.html"
    if not page.exists():
        return HTMLResponse("<h1>ccfo</h1><p>API at /docs</p>")
    return HTMLResponse(page.read_text(encoding="utf-8"),
                        headers=page_headers(getattr(request.app.state, "member_origins", ())))
