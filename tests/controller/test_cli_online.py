"""The online CLI (`ccfo status`, `journal`, `failover`, ...) as a user runs it: a real `ccfo` process against a
real controller HTTP server (uvicorn on a loopback port, the engine over the unit tests' FakeWorld).

Covers the confirmation before an operator action (the numbered steps of the dry run, the question, `--yes`
required without a terminal; a pseudo-terminal answers "y" or "n"), `--dry-run`, `journal --json` printing
the journal, and a closed pipe (`ccfo status | head -1`) ending quietly.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccfo.domain.state import Mode
from controller.store import PlanStatus
from tests.controller.apiserver import Server

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    yield server
    server.close()


def argv(ctl: Server, *args: str) -> list[str]:
    return [sys.executable, "-m", "controller", *args, "--url", ctl.url, "--token-file", str(ctl.token_file)]


def ccfo(ctl: Server, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(ctl, *args), stdin=stdin, capture_output=True, text=True, timeout=60, cwd=REPO)


def on_a_terminal(ctl: Server, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `ccfo` with a pseudo-terminal as its stdin (so it asks) and type `answer` at it."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv(ctl, *args), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)
        os.close(slave)
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_journal_json_prints_the_journal(ctl: Server) -> None:
    for mode in (Mode.MANUAL, Mode.SUPERVISED):  # two entries, each with data of its own
        ctl.bg.run(ctl.h.engine.set_mode(mode, "olga", "something for the journal"))
    r = ccfo(ctl, "journal", "--json", "--kind", "mode_changed", "--limit", "5")  # a busy box may add faults
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict) and set(doc) == {"entries"}, f"the journal, not one entry's data: {r.stdout[:300]}"
    assert [e["kind"] for e in doc["entries"]] == ["mode_changed", "mode_changed"]
    assert doc["entries"][0]["data"] == {"from": "manual", "to": "supervised"}


def test_a_closed_pipe_ends_the_cli_quietly(ctl: Server) -> None:
    r = subprocess.run(["sh", "-c", " ".join(argv(ctl, "status")) + " | head -1"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.stdout.startswith("site ") and r.stdout.count("\n") == 1, r.stdout
    assert r.stderr == ""
    read, write = os.pipe()  # a reader that is already gone: the first write fails with EPIPE, every time
    os.close(read)
    try:
        proc = subprocess.run(argv(ctl, "journal", "--limit", "50"), stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60, cwd=REPO)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr == "" and proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a tool SIGPIPE ended


def test_an_operator_action_without_a_terminal_needs_yes(ctl: Server) -> None:
    r = ccfo(ctl, "failover", "--to", "ipc-b", "--reason", "no one to ask")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("ccfo failover: no terminal to confirm on") and "--yes" in r.stderr, r.stderr
    assert ctl.plans() == [], "nothing ran"


def test_the_dry_run_shows_the_numbered_steps_and_runs_nothing(ctl: Server) -> None:
    r = ccfo(ctl, "switchover", "--to", "ipc-b", "--drain-timeout", "5", "--reason", "look first", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "planned switchover from ipc-a to ipc-b:", lines
    assert lines[1].startswith("   1. ") and lines[-1] == "(dry run: nothing was run)", lines
    r = ccfo(ctl, "switchover", "--to", "ipc-b", "--reason", "look first", "--dry-run", "--json")
    assert json.loads(r.stdout)["plan"]["action"] == "switchover"
    assert ctl.plans() == []


def test_answering_no_runs_nothing_and_yes_runs_the_plan(ctl: Server) -> None:
    r = on_a_terminal(ctl, "n\n", "failover", "--to", "ipc-b", "--reason", "asked and declined")
    assert r.returncode == 1, (r.stdout, r.stderr)
    steps = [int(m.group(1)) for m in re.finditer(r"^ *(\d+)\. \S", r.stdout, re.M)]
    assert len(steps) >= 5 and steps == list(range(1, len(steps) + 1)), r.stdout
    assert f"Run these {len(steps)} steps on site " in r.stdout and "? [y/N]" in r.stdout
    assert "not run" in r.stderr and ctl.plans() == []

    r = on_a_terminal(ctl, "y\n", "failover", "--to", "ipc-b", "--reason", "asked and agreed")
    assert r.returncode == 0, (r.stdout, r.stderr)
    (plan,) = ctl.plans()
    assert plan.status is PlanStatus.FINISHED and plan.requested_by == "olga" and plan.reason == "asked and agreed"
    assert f"plan {plan.id} finished" in r.stdout


def test_yes_runs_without_asking(ctl: Server) -> None:
    r = ccfo(ctl, "failover", "--to", "ipc-b", "--reason", "scripted", "--yes", "--no-wait", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "running" and "Run these" not in r.stdout + r.stderr
    assert [p.reason for p in ctl.plans()] == ["scripted"]


def test_ccfo_switches_lists_and_ccfo_switch_dry_runs_runs_and_inverts_a_named_switch(ctl: Server) -> None:
    r = ccfo(ctl, "switches")
    assert r.returncode == 0, r.stderr
    assert "app-shanghai-restart: Restart the Shanghai application server environment (2 steps;" in r.stdout
    r = ccfo(ctl, "switch", "app-shanghai-restart", "--reason", "look first", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "start appserver on app-sh" in r.stdout and r.stdout.splitlines()[-1] == "(dry run: nothing was run)"
    assert ctl.plans() == []
    r = ccfo(ctl, "switch", "app-shanghai-restart", "--reason", "Shenzhen app server down", "--yes")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = ccfo(ctl, "switch", "app-shanghai-restart", "--inverse", "--reason", "Shenzhen repaired", "--yes")
    assert r.returncode == 0, (r.stdout, r.stderr)
    plans = sorted(ctl.plans(), key=lambda p: p.created)
    assert [(p.plan.meta["inverse"], p.status) for p in plans] == [(False, PlanStatus.FINISHED),
                                                                   (True, PlanStatus.FINISHED)]
    r = ccfo(ctl, "switch", "no-such", "--reason", "try it", "--yes")
    assert r.returncode != 0 and "unknown switch 'no-such'" in r.stderr
