"""Election contenders as real processes (lab/contender.py) for the HA tests and benchmarks: start one
(optionally inside a network namespace), read its JSON state lines from a reader thread, find the leader,
kill -9 it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Contender:
    name: str
    proc: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                with contextlib.suppress(ValueError), self._lock:
                    self.lines.append(json.loads(raw))
        finally:  # EOF: the process ended; its pipe is ours to close (never left to the garbage collector)
            self.proc.stdout.close()

    @property
    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return self.lines[-1] if self.lines else None

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    def state(self) -> dict[str, Any] | None:
        """The last state line (log lines aside)."""
        with self._lock:
            return next((ln for ln in reversed(self.lines) if ln["event"] != "log"), None)

    def warnings_after(self, t: float) -> list[str]:
        with self._lock:
            return [ln["msg"] for ln in self.lines if ln["event"] == "log" and ln["t"] >= t]

    def is_leader(self) -> bool:
        last = self.state()
        return bool(last and last["role"] == "leader" and last["acting"] and self.alive())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Signal the process; returns the monotonic time just before the signal."""
        t = time.monotonic()
        self.proc.send_signal(sig)
        return t

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.reader is not None:
            self.reader.join(timeout=5)  # it closes the pipe at EOF


def start(name: str, endpoints: Sequence[str], site: str, *, ttl: float = 5.0, tag: str = "",
          netns: str | None = None, timeout: float = 1.0) -> Contender:
    argv = [sys.executable, "-m", "lab.contender", "--endpoints", ",".join(endpoints), "--site", site,
            "--name", name, "--ttl", str(ttl), "--timeout", str(timeout), "--tag", tag]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    c = Contender(name, proc)
    c.reader = threading.Thread(target=c._read, name=f"read-{name}", daemon=True)
    c.reader.start()
    return c


def leaders(cs: Sequence[Contender]) -> list[Contender]:
    return [c for c in cs if c.is_leader()]


def first_line(c: Contender, pred: Any, after: float = 0.0) -> dict[str, Any] | None:
    """The first state line after monotonic time `after` for which pred(line) holds."""
    return next((ln for ln in c.history() if ln["t"] >= after and ln["event"] != "log" and pred(ln)), None)
