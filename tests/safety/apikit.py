"""The controller's and the agent's FastAPI apps, each running in-process (ASGI, no socket) on an event loop of
its own thread, so synchronous hypothesis/schemathesis tests can drive them while the engine behind the
controller's app keeps cycling on that same loop.

`ControllerApi` is the controller of tests/controller (engine, executor and journal over the in-memory
FakeWorld) with a tokens file holding one token per role, an expired one and an agent token bound to
ipc-a. `AgentApi` is the agent app of tests/agents (real lab daemons as its services, a real config file,
a fake AMI side). Both record every response, so a test can search them all for secrets afterwards.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

T = TypeVar("T")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="api-under-test", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class _Api:
    base_url = "http://api"

    def __init__(self) -> None:
        self.bg = BackgroundLoop()
        self.app: FastAPI
        self.client: httpx.AsyncClient
        self.responses: list[httpx.Response] = []

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.bg.run(self.client.request(method, url, **kwargs))
        self.responses.append(response)
        return response

    def send(self, kwargs: dict[str, Any]) -> httpx.Response:
        """Send schemathesis' `case.as_transport_kwargs()` (requests-style keyword arguments)."""
        kw = dict(kwargs)
        method, url = kw.pop("method"), kw.pop("url")
        data = kw.pop("data", None)
        kw.pop("cookies", None)
        if data is not None:
            kw["content"] = data
        return self.request(method, url, **{k: v for k, v in kw.items() if k in ("headers", "params", "json",
                                                                              "content", "files")})


class ControllerApi(_Api):
    ROLES = ("viewer", "operator", "admin")

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        from ccfo.platform.auth import TokenStore, add_token
        from controller.service import build_app
        from tests.controller.harness import Harness

        self.root = root or Path(tempfile.mkdtemp(prefix="ccfo-api-"))
        tokens_file = self.root / "tokens.yaml"
        self.tokens = {role: add_token(tokens_file, f"{role}-user", role) for role in self.ROLES}
        self.tokens["agent"] = add_token(tokens_file, "agent-ipc-a", "agent", host="ipc-a")
        self.tokens["expired"] = add_token(tokens_file, "old-admin", "admin", expires="2001-01-01T00:00:00")

        async def start() -> None:
            self.harness = Harness(self.root)
            self.app = build_app(self.harness.engine, TokenStore.load(tokens_file))
            await self.harness.start()
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base_url)

        self.bg.run(start())

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def close(self) -> None:
        async def stop() -> None:
            await self.client.aclose()
            from controller.service import stop_services
            await stop_services(self.app)
            await self.harness.stop()

        self.bg.run(stop())
        self.bg.close()


class AgentApi(_Api):
    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        from agents.api import create_app
        from tests.agents.test_api_helpers import TOKEN, make_host

        self.root = root or Path(tempfile.mkdtemp(prefix="ccfo-agent-api-"))
        self.token = TOKEN

        async def start() -> None:
            self.host = make_host(self.root, verify_timeout_s=2.0)
            self.app = create_app("ipc-a", [TOKEN], self.host.report.build, self.host.executor)
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=self.base_url)

        self.bg.run(start())

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.secret}"}

    def close(self) -> None:
        async def stop() -> None:
            await self.client.aclose()
            await self.host.executor.aclose()

        self.bg.run(stop())
        self.host.stop_daemons()
        self.bg.close()


def routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every API route of the app, as declared (nothing hard-coded), including those
    of included routers (FastAPI 0.165 keeps those behind an `_IncludedRouter` entry; older ones copy them)."""
    found: list[tuple[str, str, APIRoute]] = []

    def walk(entries: list[Any], prefix: str) -> None:
        for r in entries:
            if isinstance(r, APIRoute):
                found.extend((m, prefix + r.path, r) for m in r.methods)
            elif hasattr(r, "original_router"):
                walk(r.original_router.routes, prefix + getattr(r.include_context, "prefix", ""))

    walk(app.routes, "")
    assert {p for _, p, _ in found} >= set(app.openapi()["paths"]), "a documented route was not found"
    unique = {(m, p): (m, p, r) for m, p, r in found}
    return [unique[k] for k in sorted(unique, key=lambda k: (k[1], k[0]))]


def concrete(path: str, value: str = "x") -> str:
    """A path template with every parameter filled in."""
    import re

    return re.sub(r"\{[^}]+\}", value, path)
