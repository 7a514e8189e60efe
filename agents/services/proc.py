"""Run one command (argv, never a shell) with a timeout and collect its exit code and output tail.

Output goes to an unlinked temporary file, not a pipe: a start command that leaves a daemon behind
would keep a pipe open and make us wait for the daemon's end. The command runs in its own session, so
a Ctrl-C or SIGTERM to the agent never reaches the services it started; on timeout (or cancellation)
its whole process group is killed and reaped, so nothing it spawned is left running half-done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTPUT_TAIL = 2000  # characters of output kept for messages and logs


class CommandError(Exception):
    """The command could not be run at all (no such file, not executable)."""


class CommandTimeout(Exception):
    """The command did not exit within its timeout; it and its process group were killed."""


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str  # the tail of stdout+stderr, stripped


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the pgid is the child's pid
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


async def run_command(argv: Sequence[str], timeout_s: float, *, cwd: str | None = None,
                      env: Mapping[str, str] | None = None) -> Completed:
    """Run `argv` and wait at most `timeout_s` for it to exit."""
    args = tuple(argv)
    if not args:
        raise CommandError("empty command")
    with tempfile.TemporaryFile() as out:
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True)
        except OSError as exc:
            raise CommandError(f"cannot run {args[0]}: {exc.strerror or exc}") from exc
        try:
            returncode = await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise CommandTimeout(f"{args[0]} did not finish within {timeout_s:g} s") from None
        except asyncio.CancelledError:
            _kill_group(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - 4 * OUTPUT_TAIL))
        text = out.read().decode("utf-8", "replace")
    return Completed(args, returncode, text[-OUTPUT_TAIL:].strip())
