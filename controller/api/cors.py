"""Cross-origin access between the members of a controller cluster, for the dashboard.

The dashboard page is served by one member; when that member dies the page goes on with another member of the
last members list it read (GET /api/v1/cluster), whose API is another origin (another host or port). Each
member therefore answers CORS for exactly the cluster members' origins (scheme, host and port of each
`cluster.members[].url`), with the headers the page sends (Authorization, Content-Type, Idempotency-Key,
Accept) and no cookies (the token is a bearer header, never a credential the browser adds by itself); the
page's Content-Security-Policy lets it connect to the same origins. A single controller adds nothing: its
page talks only to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Accept"]
METHODS = ["GET", "POST", "PUT"]


def origin(url: str) -> str:
    """A URL's origin as a browser writes it (the default port left out)."""
    u = urlsplit(url)
    default = {"http": 80, "https": 443}.get(u.scheme)
    host = u.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{u.scheme}://{host}" + (f":{u.port}" if u.port and u.port != default else "")


def allow_members(app: FastAPI, urls: Iterable[str]) -> tuple[str, ...]:
    """Answer CORS for the members' origins (and keep them on app.state for the dashboard page's CSP)."""
    origins = tuple(dict.fromkeys(origin(u) for u in urls))
    app.state.member_origins = origins
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=METHODS, allow_headers=HEADERS,
                       allow_credentials=False, max_age=600)
    return origins
