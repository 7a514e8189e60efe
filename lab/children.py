"""The lab's child processes: `Proc` (a process with its log file, stopped with SIGTERM then SIGKILL),
`wait_file` (a ready file written by a child), and `die_with_parent`, run in every child before exec: it
asks Linux to send the child SIGTERM when the process that started it dies (prctl PR_SET_PDEATHSIG), so a
killed test run or lab supervisor never leaves agents, AMI servers, controllers or etcd members behind.

The death signal follows the *thread* that forked the child: start lab processes from the event loop's
thread, never from a worker thread that may end before the lab does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


class LabError(Exception):
    pass


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=out, stderr=out, cwd=REPO,
                                                             env={**os.environ, **(self.env or {})},
                                                             start_new_session=True, preexec_fn=die_with_parent)
        finally:
            out.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.alive else None

    def signal(self, sig: int) -> None:
        if self.alive and self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    async def stop(self, grace: float = 5.0) -> None:
        if not self.alive or self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await self.proc.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.proc.wait()


async def wait_file(path: Path, proc: Proc, timeout: float) -> dict[str, Any]:
    """The JSON a child writes to `path` once it is ready; LabError when it exits first or is late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.suppress(ValueError):
                return json.loads(path.read_text())  # type: ignore[no-any-return]
        if not proc.alive:
            raise LabError(f"{proc.name} exited during start-up; see {proc.log_path}")
        await asyncio.sleep(0.05)
    raise LabError(f"{proc.name} not ready within {timeout:g} s; see {proc.log_path}")
