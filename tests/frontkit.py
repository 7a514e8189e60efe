"""A real Kamailio SIP front for tests (config/kamailio/kamailio.cfg, started as the lab starts it), on the
test's own loopback address, with its list file, RPC socket and log under the test's directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from ccfo.clients.kamailio import KamailioRouter, KamailioRpc
from lab.front import kamailio_argv, kamailio_binary, wait_ready
from lab.labconfig import LabLayout


class Front:
    def __init__(self, root: Path, listen: tuple[str, int], destinations: dict[str, str], *, hold_s: float = 8.0,
                 hold_retry_s: float = 0.5) -> None:
        self.root, self.listen = root, listen
        root.mkdir(parents=True, exist_ok=True)
        self.socket = LabLayout(root).front_socket
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.router = KamailioRouter(KamailioRpc(self.socket, 1.0), root / "dispatcher.list", destinations)
        self.log = root / "front.log"
        self.hold_s, self.hold_retry_s = hold_s, hold_retry_s
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, hosts: list[str] | None = None) -> None:
        if hosts is not None:
            self.router.write(hosts)
        self.socket.unlink(missing_ok=True)
        argv = kamailio_argv(kamailio_binary(), f"{self.listen[0]}:{self.listen[1]}", self.router.list_file,
                             self.socket, self.root, hold_s=self.hold_s, hold_retry_s=self.hold_retry_s)
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out, start_new_session=True)
        finally:
            out.close()
        await wait_ready(self.router.rpc, self, self.log, 20.0)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
