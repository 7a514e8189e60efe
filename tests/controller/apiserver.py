"""A controller API on a real loopback socket for tests that need real HTTP (the CLI as a subprocess,
schemathesis re-sending requests): uvicorn on 127.0.0.1:<free port>, the engine over the unit tests'
FakeWorld cycling on an event loop of its own thread (tests/safety/apikit.BackgroundLoop). A tokens file
holds one token per role (and an agent token for ipc-a); `token_file` is the operator's, for `ccfo`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn

from ccfo.platform.auth import TokenStore, add_token
from controller.service import build_app, start_services, stop_services
from tests.controller.harness import Harness
from tests.safety.apikit import BackgroundLoop
from tests.support import async_wait_until

ROLES = ("viewer", "operator", "admin")


class Server:
    """A controller API on 127.0.0.1:<free port>, its engine cycling on a loop of its own thread."""

    def __init__(self, tmp: Path) -> None:
        self.bg = BackgroundLoop()
        tokens = tmp / "tokens.yaml"
        self.tokens = {role: add_token(tokens, "olga" if role == "operator" else f"{role}-user", role)
                       for role in ROLES}
        self.tokens["agent"] = add_token(tokens, "agent-ipc-a", "agent", host="ipc-a")
        self.token_file = tmp / "operator.token"
        self.token_file.write_text(self.tokens["operator"] + "\n")
        self.token_file.chmod(0o600)

        async def start() -> int:
            self.h = Harness(tmp)
            self.app = build_app(self.h.engine, TokenStore.load(tokens))
            await self.h.start()
            await start_services(self.app)
            await async_wait_until(lambda: self.h.engine.snap is not None and self.h.engine.cycles > 2, timeout=10)
            self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="off",
                                                        log_level="warning"))
            self.task = asyncio.create_task(self.server.serve())
            await async_wait_until(lambda: self.server.started, timeout=10)
            return int(self.server.servers[0].sockets[0].getsockname()[1])

        self.url = f"http://127.0.0.1:{self.bg.run(start())}"

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def plans(self) -> list[Any]:
        return self.h.store.plans(None, 50)

    def close(self) -> None:
        async def stop() -> None:
            self.server.should_exit = True
            await self.task
            await stop_services(self.app)
            await self.h.stop()

        self.bg.run(stop())
        self.bg.close()
