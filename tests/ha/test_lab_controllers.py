"""`ccfo lab up --controllers 3` as a user runs it (the CLI, the background supervisor), on this test's own
loopback network: a 3-member etcd and three controller members under the lab; `lab status --json` lists
them with their pids; `GET /api/v1/cluster` on every member shows the three and exactly one leader; kill -9
of the leader's pid gives a new leader with a higher term within lease_ttl_s + 1 s, measured from the kill;
the killed member started again (`ccfo lab inject controller NAME start`) comes back as a follower; the CLI
in the lab's directory finds the leader by itself; `ccfo lab down` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ha.etcdkit import need_etcd
from tests.integration.labkit import layout
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
TTL = 5.0  # the lab's cluster.lease_ttl_s

# Slow (`make test-slow`, run by CI): a lab with three controllers and etcd through the real CLI, ~30 s;
# make test is kept under its 15-minute budget
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def ccfo(*args: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("CCFO_")}, **env})


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


def leader_answer(url: str) -> tuple[int, dict[str, Any]]:
    try:
        r = httpx.get(url + "/leader", timeout=1)
        return r.status_code, r.json()
    except (httpx.HTTPError, ValueError):
        return 0, {}


def roles(url: str, token: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(url + "/api/v1/cluster", headers={"Authorization": f"Bearer {token}"}, timeout=3)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def one_view(urls: list[str], token: str, live: int) -> dict[str, Any] | None:
    """The cluster as every member shows it, once they all agree on one leader and `live` members answer."""
    views = [roles(u, token) for u in urls]
    if any(v is None for v in views):
        return None
    if len({(v["leader"], v["term"]) for v in views}) != 1:  # type: ignore[index]
        return None
    view = views[0]
    assert view is not None
    if view["leader"] is None or sum(m["role"] != "unreachable" for m in view["members"]) != live:
        return None
    return view


def test_lab_up_with_three_controllers_one_leader_takeover_and_down(tmp_path: Path) -> None:
    need_etcd()
    lay = layout(tmp_path)
    net, listen = lay.net, lay.controller_listen
    lab_dir = tmp_path / ".lab"  # where the CLI run in tmp_path finds a running lab by itself
    up = ccfo("lab", "up", "--dir", str(lab_dir), "--net", net, "--controller-listen", listen,
              "--controllers", "3", "--timeout", "280", cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "ctl-a" in up.stdout and "etcd1" in up.stdout and "CCFO_URL" in up.stdout, up.stdout
        st = json.loads(ccfo("lab", "status", "--json", "--dir", str(lab_dir), cwd=tmp_path).stdout)
        host, _, port = listen.rpartition(":")
        urls = {f"ctl-{c}": f"http://{host}:{int(port) + i}" for i, c in enumerate("abc")}
        assert [(c["name"], c["url"]) for c in st["controllers"]] == list(urls.items())
        assert [e["name"] for e in st["etcd"]] == ["etcd1", "etcd2", "etcd3"]
        assert [e["client_url"] for e in st["etcd"]] == [f"http://{net}.{231 + i}:2379" for i in range(3)]
        pids = {c["name"]: c["pid"] for c in st["controllers"]}
        for pid in [*pids.values(), *(e["pid"] for e in st["etcd"])]:
            os.kill(pid, 0)  # alive
            assert str(lab_dir) in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        assert (lab_dir / "etcd" / "etcd1.etcd" / "member").is_dir(), "etcd's data under the lab folder"

        token = (lab_dir / "config" / "secrets" / "viewer.token").read_text().strip()
        view = wait_until(lambda: one_view(list(urls.values()), token, 3), timeout=30)
        assert sorted(m["role"] for m in view["members"]) == ["follower", "follower", "leader"], view
        leader, term = view["leader"], view["term"]
        assert {m["name"]: m["url"] for m in view["members"]} == urls
        assert next(m for m in view["members"] if m["role"] == "leader")["name"] == leader
        assert leader_answer(urls[leader])[0] == 200
        assert all(leader_answer(u)[0] == 503 for n, u in urls.items() if n != leader)

        # the CLI in the lab's directory: no --url (a mode change needs the admin token); it goes to the leader
        admin = str(lab_dir / "config" / "secrets" / "admin.token")
        done = ccfo("mode", "manual", "--reason", "lab cluster test", cwd=tmp_path, timeout=60, CCFO_TOKEN_FILE=admin)
        assert done.returncode == 0, done.stdout + done.stderr
        modes = httpx.get(urls[leader] + "/api/v1/journal", params={"kind": "mode_changed"}, timeout=10,
                          headers={"Authorization": f"Bearer {token}"}).json()["entries"]
        assert [e["data"]["to"] for e in modes] == ["manual"]

        t_kill = time.monotonic()
        os.kill(pids[leader], signal.SIGKILL)
        rest = [n for n in urls if n != leader]

        def new_leader() -> tuple[str, int] | None:
            for n in rest:
                code, body = leader_answer(urls[n])
                if code == 200 and body.get("term", 0) > term:
                    return n, body["term"]
            return None

        took = wait_until(new_leader, timeout=TTL + 10, interval=0.02)
        elapsed = time.monotonic() - t_kill
        assert took is not None
        assert elapsed <= TTL + 1, f"takeover took {elapsed:.2f} s (bound lease_ttl_s + 1 = {TTL + 1:g} s)"
        successor, new_term = took
        print(f"kill -9 of {leader} (term {term}) -> {successor} leads with term {new_term} in {elapsed:.2f} s")
        view = wait_until(lambda: one_view([urls[n] for n in rest], token, 2), timeout=30)
        assert view["leader"] == successor and view["term"] == new_term
        assert {m["name"]: m["role"] for m in view["members"]}[leader] == "unreachable"

        def status_without_killed() -> dict[str, Any] | None:
            s = json.loads(ccfo("lab", "status", "--json", "--dir", str(lab_dir), cwd=tmp_path).stdout)
            return s if next(c for c in s["controllers"] if c["name"] == leader)["pid"] is None else None

        st = wait_until(status_without_killed, timeout=20)
        assert all(c["pid"] for c in st["controllers"] if c["name"] != leader)

        # the killed member back: a follower of the new leader
        back = ccfo("lab", "inject", "--dir", str(lab_dir), "controller", leader, "start", cwd=tmp_path)
        assert back.returncode == 0 and f"controller {leader} started" in back.stdout, back.stdout + back.stderr
        view = wait_until(lambda: one_view(list(urls.values()), token, 3), timeout=30)
        assert view["leader"] == successor and view["term"] == new_term
        assert {m["name"]: m["role"] for m in view["members"]}[leader] == "follower"
        done = ccfo("status", "--json", cwd=tmp_path, timeout=60)
        assert done.returncode == 0 and json.loads(done.stdout)["mode"] == "manual", done.stdout + done.stderr
    finally:
        down = ccfo("lab", "down", "--dir", str(lab_dir), cwd=tmp_path, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    # `lab down` returns once the supervisor is gone; its children are gone before it (no orphans)
    assert not lab_processes(str(lab_dir)), f"lab processes left after `ccfo lab down`: {lab_processes(str(lab_dir))}"
