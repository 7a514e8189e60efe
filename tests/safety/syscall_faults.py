"""Kill a writer, or fail one of its system calls, at every system-call boundary of one operation.

How: the writer runs as a child interpreter that does its set-up (imports, opening files), says
`ready`, and blocks reading stdin. `strace -p` then attaches to it with a fault to inject on the k-th
call of one system call (`inject=fsync:signal=KILL:when=2` kills the process on entering its second
fsync, before that fsync runs; `error=EIO` makes it fail instead), and we send `go`. Only the calls
made after `go` are counted, so the interpreter's own start-up does not shift the numbering. A first
run without a fault records the operation's calls in order (the calibration); the sweep then hits each
of them. strace's counter is per system call, hence (name, k) pairs.

The child reports how the operation ended through its exit status only (`os._exit(code)`): anything it
wrote after `go` would itself be a traced `write`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# Calls that change a file, its name or its durability, plus open/close (their order matters too).
MUTATING = ("openat", "open", "creat", "write", "pwrite64", "writev", "pwritev", "fsync", "fdatasync",
            "ftruncate", "truncate", "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
            "mkdir", "mkdirat", "fchmod", "fchown", "close")
_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+)?([a-z_0-9]+)\(")
KILLED = -signal.SIGKILL


@dataclass(frozen=True, slots=True)
class Call:
    """The k-th (1-based) call of system call `name` in the operation, and its strace line."""

    name: str
    k: int
    line: str

    def __str__(self) -> str:
        return f"{self.name} #{self.k}: {self.line[:140]}"


def strace() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.skip("strace is not installed (Debian package: strace)")
    return path


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONDONTWRITEBYTECODE": "1"}


def run(source: str, args: Sequence[str], *, inject: str | None = None, log: Path | None = None,
        timeout: float = 30.0) -> int:
    """Run `source` (which prints `ready`, reads a line, then works) with `inject` applied after `go`.

    Returns the child's exit status (negative: killed by that signal).
    """
    tracer = strace()
    child = subprocess.Popen([sys.executable, "-c", source, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=child_env())
    tracer_proc: subprocess.Popen[str] | None = None
    try:
        assert child.stdout is not None and child.stdin is not None
        ready = child.stdout.readline()
        if ready.strip() != b"ready":
            child.kill()
            _, err = child.communicate(timeout=timeout)
            raise AssertionError(f"writer child did not get ready: {ready!r} {err.decode(errors='replace')[-2000:]}")
        cmd = [tracer, "-o", str(log) if log else os.devnull, "-p", str(child.pid), "-e", f"trace={','.join(MUTATING)}"]
        if inject:
            cmd += ["-e", f"inject={inject}"]
        tracer_proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
        assert tracer_proc.stderr is not None
        attached = tracer_proc.stderr.readline()
        if "attached" not in attached:
            if "not permitted" in attached.lower():  # a container without ptrace: nothing to measure with
                pytest.skip(f"strace cannot attach here: {attached.strip()}")
            raise AssertionError(f"strace did not attach: {attached!r}")
        child.stdin.write(b"go\n")
        child.stdin.flush()
        child.wait(timeout=timeout)
        tracer_proc.wait(timeout=timeout)
        return child.returncode
    finally:
        for proc in (child, tracer_proc):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (child.stdin, child.stdout, child.stderr, tracer_proc and tracer_proc.stderr):
            if stream is not None:
                stream.close()


def calibrate(source: str, args: Sequence[str]) -> tuple[int, list[Call]]:
    """One clean run: its exit status and the traced calls of the operation, in order."""
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "trace"
        code = run(source, args, log=log)
        calls: list[Call] = []
        seen: Counter[str] = Counter()
        for line in log.read_text(errors="replace").splitlines():
            m = _CALL.match(line)
            if not m or m.group(1) not in MUTATING:
                continue
            seen[m.group(1)] += 1
            calls.append(Call(m.group(1), seen[m.group(1)], line))
    return code, calls


def errno_for(name: str) -> str:
    """A realistic failure for each call: a full disk for writes, an I/O error for the rest."""
    return "ENOSPC" if name in ("write", "pwrite64", "writev", "pwritev", "ftruncate") else "EIO"


def sweep(jobs: Iterable[tuple[str, Call]], work: Callable[[str, Call], object], workers: int = 2) -> list[object]:
    """Run `work(mode, call)` for every job, `workers` at a time (each job uses its own directory)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: work(*job), list(jobs)))
