"""Two real `ccfo controller --member` processes of one site on a real 3-member etcd: the elected one
answers /leader with 200 and acts, the other answers 503 and forwards operator requests to the leader;
SIGKILL of the leader hands the leadership to the other within the lease TTL + 1 s, with a higher term, and
the journal of the new leader records its election. No agents run here (the members observe unreachable
hosts); what a member does as leader or follower with agents is tested in test_engine_on_etcd.py and
tests/controller/test_leadership.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lab.etcd import EtcdCluster
from tests.ha.memberkit import leader_probe as _leader
from tests.ha.memberkit import member_config, start_member, stop_members, token
from tests.support import wait_until

TTL = 3


@pytest.mark.timeout(120)
def test_two_members_one_leader_and_a_takeover_after_kill_9(tmp_path: Path, etcd3: EtcdCluster) -> None:
    config, urls = member_config(tmp_path, etcd3, TTL)
    operator = token(config, "operator")
    procs = {m: start_member(config, m, tmp_path) for m in urls}
    try:
        for m, (_, ready) in procs.items():
            wait_until(lambda ready=ready: ready.exists(), timeout=60,  # a start under a load of 50 took > 30 s
                       describe=lambda m=m: (tmp_path / f"{m}.log").read_text()[-2000:])
            assert json.loads(ready.read_text())["api"] == urls[m]
        leaders = wait_until(lambda: [m for m, u in urls.items() if _leader(u)[0] == 200] or None, timeout=15)
        assert len(leaders) == 1
        leader = leaders[0]
        follower = next(m for m in urls if m != leader)
        code, body = _leader(urls[follower])
        assert code == 503 and body["leader"] == leader and body["me"] == follower
        term = _leader(urls[leader])[1]["term"]
        # a change sent to the follower is forwarded: the leader's answer comes back, naming the leader
        plan = httpx.post(urls[follower] + "/api/v1/failover", params={"dry_run": "true"}, headers=operator,
                          timeout=10, json={"to": "ipc-b", "reason": "sent to the follower"})
        assert plan.headers["x-ccfo-member"] == leader and plan.headers["x-ccfo-forwarded-by"] == follower, \
            (plan.status_code, plan.headers, plan.text)
        cluster = httpx.get(urls[follower] + "/api/v1/cluster", headers=operator, timeout=10).json()
        assert cluster["leader"] == leader and {m["name"] for m in cluster["members"]} == set(urls)
        # the CLI with every member in CCFO_URL, the follower first: the change goes to the leader
        env = {**os.environ, "CCFO_URL": f"{urls[follower]},{urls[leader]}",
               "CCFO_TOKEN_FILE": str(config / "secrets" / "admin.token")}
        done = subprocess.run([sys.executable, "-m", "controller", "mode", "manual", "--reason", "night work"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        modes = httpx.get(urls[leader] + "/api/v1/journal", params={"kind": "mode_changed"}, headers=operator,
                          timeout=10).json()["entries"]
        assert [e["data"]["to"] for e in modes] == ["manual"]

        t_kill = time.monotonic()
        os.kill(procs[leader][0].pid, signal.SIGKILL)
        took = wait_until(lambda: _leader(urls[follower])[0] == 200 or None, timeout=TTL + 5)
        assert took and time.monotonic() - t_kill <= TTL + 1.5, time.monotonic() - t_kill
        code, body = _leader(urls[follower])
        assert code == 200 and body["leader"] == follower and body["term"] > term
        journal = httpx.get(urls[follower] + "/api/v1/journal", params={"kind": "leader_elected"}, headers=operator,
                            timeout=10).json()["entries"]
        assert journal and journal[0]["actor"] == follower and journal[0]["data"]["term"] == body["term"]
        modes = httpx.get(urls[follower] + "/api/v1/journal", params={"kind": "mode_changed"}, headers=operator,
                          timeout=10).json()["entries"]
        assert [e["data"]["to"] for e in modes] == ["manual"], "the old leader's entry, copied through etcd"
        env["CCFO_URL"] = f"{urls[leader]},{urls[follower]}"  # the dead member first: reads go to the next
        done = subprocess.run([sys.executable, "-m", "controller", "status", "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout)["mode"] == "manual", done.stdout + done.stderr
    finally:
        stop_members(procs)
