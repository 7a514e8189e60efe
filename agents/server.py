"""Serve an ASGI app with uvicorn on a socket we bind ourselves, inside the caller's event loop.

Binding first means port 0 works (the bound address is known before serving, and reported), and a bind
error surfaces as our own exception at start-up. uvicorn's signal handling is switched off: the agent's
runtime owns SIGTERM/SIGINT and stops the server as one step of its orderly shutdown. `agent_bind` says
where an agent (IPC host or managed server) binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any
from urllib.parse import urlsplit

import uvicorn


class ServerError(Exception):
    """The API server could not bind or start."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the runtime handles signals


def split_host_port(text: str, default_port: int = 0) -> tuple[str, int]:
    """"HOST:PORT", "[v6]:PORT" or "HOST" -> (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text, default_port
    return host, int(port)


def agent_bind(listen: str | None, agent: Any) -> tuple[str, int]:
    """Where an agent binds: `listen` (the command line's), else agent.listen, else the host and port of
    agent.url (`agent`: a site.yaml agent endpoint, ccfo.config.models.AgentEndpointModel)."""
    if listen or agent.listen:
        return split_host_port(listen or agent.listen or "")
    parts = urlsplit(agent.url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


class ApiServer:
    """One uvicorn server on (host, port); `start()` returns the bound address."""

    def __init__(self, app: Any, host: str, port: int, *, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None, log_level: str = "warning") -> None:
        self.host, self.port = host, port
        self._config = uvicorn.Config(app, lifespan="off", log_level=log_level, access_log=False,
                                      ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, server_header=False)
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None
        self.scheme = "https" if ssl_certfile else "http"

    @property
    def url(self) -> str:
        if self.address is None:
            raise ServerError("not started")
        host = f"[{self.address[0]}]" if ":" in self.address[0] else self.address[0]
        return f"{self.scheme}://{host}:{self.address[1]}"

    async def start(self, timeout_s: float = 10.0) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ServerError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        self.address = sock.getsockname()[:2]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="agent-api")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._server.started:
            if self._task.done():
                exc = self._task.exception() if not self._task.cancelled() else None
                raise ServerError(f"the API server stopped during start-up: {exc}") from exc
            if loop.time() > deadline:
                raise ServerError(f"the API server did not start within {timeout_s:g} s")
            await asyncio.sleep(0.01)
        return self.address

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            self._task = None
