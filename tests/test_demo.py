"""The README's `make demo` path, tested: `ccfo demo` as a real process, on this test's own loopback network,
runs its whole code path (lab up, status, the drill's dry run, the primary CTI crash drill with SIPp calls,
the approved failover, the way back by failback, the journal and history) and, with `--down`, lab down.
Also: with a lab running in ./.lab, lab-facing commands find it without --config / --url / a token, and
without one they say in one line what to pass."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.labkit import layout

REPO = Path(__file__).resolve().parents[1]


def lab_processes(marker: str) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                out.append(cmd)
    return out


@pytest.mark.timeout(600)
def test_ccfo_demo_runs_the_drill_fails_back_and_stops_the_lab(tmp_path: Path) -> None:
    lay = layout(tmp_path)  # only for a free loopback network and controller address
    lab_dir = tmp_path / "demo-lab"
    done = subprocess.run([sys.executable, "-m", "controller", "demo", "--dir", str(lab_dir), "--net", lay.net,
                           "--controller-listen", lay.controller_listen, "--down"],
                          cwd=REPO, capture_output=True, text=True, timeout=560)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    sections = re.findall(r"^=== (.*) ===$", out, re.M)
    assert [s.split(":")[0].split(" ")[0] for s in sections] == [
        "Start", "The", "Disaster", "Run", "The", "The", "Drill", "Stop"], sections
    assert re.search(r"^drill primary-cti-crash PASSED: detect [\d.]+ s, decide [\d.]+ s, recover [\d.]+ s", out,
                     re.M), out[-3000:]
    after = out.split("=== The site after the drill and its way back ===")[1].split("===")[0]
    assert "active host ipc-a" in after and "NORMAL" in after, after  # failed back to the home primary
    journal = out.split("=== The journal of the drill's failover ===")[1].split("===")[0]
    assert "stop" in journal and "start" in journal, journal
    stop = out.split("=== Stop the lab ===")[1]
    # the line `lab down` itself (the command echo also names it): the demo's own child supervisor, reaped
    # (it once waited 60 s on its zombie and said "did not stop")
    assert re.search(r"^lab down$", stop, re.M) and "did not stop" not in stop + done.stderr, stop
    reports = list((lab_dir / "reports").rglob("*.json"))
    assert reports and json.loads(reports[0].read_text())["status"] == "passed"
    assert not lab_processes(str(lab_dir)), "lab processes left after `ccfo demo --down`"


def fake_lab(cwd: Path) -> Path:
    """A lab directory as `ccfo lab up` leaves it, with this test process standing in for the supervisor."""
    lab = cwd / ".lab"
    shutil.copytree(REPO / "config", lab / "config")
    (lab / "config" / "secrets").mkdir(exist_ok=True)
    (lab / "config" / "secrets" / "operator.token").write_text("lab-operator-token\n")
    (lab / "config" / "secrets" / "operator.token").chmod(0o600)
    (lab / "lab.json").write_text(json.dumps({"pid": os.getpid(), "api": "http://127.0.0.1:9/api/v1"}))
    return lab


def ccfo(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CCFO_CONFIG", "CCFO_URL", "CCFO_TOKEN", "CCFO_TOKEN_FILE")}
    return subprocess.run([sys.executable, "-m", "controller", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**env, "PYTHONPATH": str(REPO)})


def test_lab_facing_commands_find_a_running_lab_without_flags(tmp_path: Path) -> None:
    lab = fake_lab(tmp_path)
    dry = ccfo(tmp_path, "drill", "run", "primary-cti-crash", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stderr.strip() == (f"ccfo drill: using the running lab's config {Path('.lab') / 'config'} "
                                  "(pass --config to choose another)")
    assert "primary-cti-crash" in dry.stdout
    # the online commands use the lab's API and operator token (the fake lab's API does not answer)
    status = ccfo(tmp_path, "status")
    assert status.returncode == 1 and "cannot reach the controller at http://127.0.0.1:9" in status.stderr, status
    # a stale lab.json (its supervisor gone) is ignored
    (lab / "lab.json").write_text(json.dumps({"pid": 2**22 + 12345, "api": "http://127.0.0.1:9/api/v1"}))
    shutil.rmtree(lab / "config")
    missing = ccfo(tmp_path, "drill", "run", "primary-cti-crash", "--dry-run")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0, "one line"
    assert "pass --config DIR" in missing.stderr and "ccfo lab up" in missing.stderr, missing.stderr


def test_lab_before_migration_needs_the_servers(tmp_path: Path) -> None:
    done = ccfo(tmp_path, "lab", "up", "--before-migration", "--dir", str(tmp_path / "lab"))
    assert done.returncode == 1 and "--before-migration needs --servers" in done.stderr, done.stderr
    assert not (tmp_path / "lab" / "lab.json").exists(), "no lab was started"
