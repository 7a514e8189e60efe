"""Suite-wide fixtures: no lab process (agent, AMI server, controller, stand-in service) outlives the test
session, whatever happened in it: every process whose command line names this session's temp dir is
killed at the end."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _reap_lab_processes(tmp_path_factory: pytest.TempPathFactory):
    base = str(tmp_path_factory.getbasetemp())
    yield
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if base in cmdline:
                os.kill(int(proc.name), signal.SIGKILL)
