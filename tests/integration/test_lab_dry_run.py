"""The dry run and the CLI's confirmation on the live lab (real agents, stand-in services, the real
controller over loopback HTTP).

* `POST /api/v1/{failover,switchover,failback}?dry_run=true` answers the plan built from the live state
  and changes nothing: no plan stored, nothing journaled, every service where it was (read from the
  process table, not from the controller).
* `ccfo switchover` refuses to act without a terminal unless `--yes` (exit 2), shows the numbered steps and
  asks on a terminal (a pseudo-terminal answers): "n" runs nothing, "y" runs the plan; `ccfo failback
  --yes` runs without asking.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.labkit import Api, critical_hosts, running
from tests.integration.test_lab_failover import site  # noqa: F401  (the live lab, as a fixture)
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
ACTED = "operator_action,plan_started,plan_proposed,step_started,step_finished,mode_changed"


def ccfo_argv(lab: Any, *args: str) -> list[str]:
    return [sys.executable, "-m", "controller", *args, "--url", lab.api,
            "--token-file", str(lab.layout.config / "secrets" / "operator.token")]


async def ccfo(lab: Any, *args: str, answer: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ccfo ARGS` as a separate process: without a terminal, or on a pseudo-terminal typing `answer`."""
    argv = ccfo_argv(lab, *args)
    if answer is None:
        return await asyncio.to_thread(subprocess.run, argv, stdin=subprocess.DEVNULL, capture_output=True,
                                       text=True, timeout=120, cwd=REPO)

    def on_a_terminal() -> subprocess.CompletedProcess[str]:
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=REPO)
            os.close(slave)
            os.write(master, answer.encode())
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(master)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    return await asyncio.to_thread(on_a_terminal)


async def untouched(lab: Any, api: Api) -> None:
    """Nothing moved: CTI/IVR on ipc-a only (process table), no plan, nothing acted on in the journal."""
    assert critical_hosts(lab) == ["ipc-a"] and running(lab, "ipc-b", "kcxp")
    assert await api.plans("proposed,running,finished,failed,interrupted") == []
    assert await api.journal(kind=ACTED) == []


async def test_dry_runs_answer_the_plan_from_live_state_and_change_nothing(site) -> None:  # noqa: F811
    lab, api = site
    for path, body in (("/api/v1/failover", {"to": "ipc-b"}),
                       ("/api/v1/switchover", {"to": "ipc-b", "drain_timeout_s": 3})):
        r = await api.post(path + "?dry_run=true", body | {"reason": "what would it do"})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["dry_run"] is True and d["site"] == lab.site["site"]["name"]
        texts = [s["text"] for s in d["plan"]["steps"]]
        assert "start cti on ipc-b" in texts and any(t.startswith("stop cti on ipc-a") for t in texts), texts
    r = await api.post("/api/v1/failback?dry_run=true", {"reason": "nothing to fail back"})
    assert r.status_code == 409 and "normal state" in r.json()["detail"]
    await untouched(lab, api)


async def test_the_cli_shows_the_steps_asks_and_acts_only_on_yes(site) -> None:  # noqa: F811
    lab, api = site
    args = ("switchover", "--to", "ipc-b", "--drain-timeout", "3", "--reason", "board swap on ipc-a")
    r = await ccfo(lab, *args)
    assert r.returncode == 2 and "no terminal to confirm on" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = await ccfo(lab, *args, answer="n\n")
    assert r.returncode == 1, (r.stdout, r.stderr)
    numbers = [int(n) for n in re.findall(r"^ *(\d+)\. \S", r.stdout, re.M)]
    assert len(numbers) >= 5 and numbers == list(range(1, len(numbers) + 1)), r.stdout
    assert f"Run these {len(numbers)} steps on site {lab.site['site']['name']}? [y/N]" in r.stdout
    await untouched(lab, api)

    r = await ccfo(lab, *args, answer="y\n")
    assert r.returncode == 0, (r.stdout, r.stderr)
    (plan,) = await api.plans("finished")
    assert plan["action"] == "switchover" and plan["requested_by"] == "lab-operator"
    assert f"plan {plan['id']} finished" in r.stdout
    assert critical_hosts(lab) == ["ipc-b"]

    r = await ccfo(lab, "failback", "--drain-timeout", "3", "--reason", "ipc-a repaired", "--yes")
    assert r.returncode == 0 and "Run these" not in r.stdout, (r.stdout, r.stderr)
    await async_wait_until(lambda: critical_hosts(lab) == ["ipc-a"], timeout=30)
    assert [p["action"] for p in await api.plans("finished")] == ["failback", "switchover"]
