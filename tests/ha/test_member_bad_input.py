"""Bad input for a controller cluster (issue 14), end to end through the real commands:

* a member started while etcd cannot be reached says so in one clear log line naming every endpoint,
  serves read-only status meanwhile (health, status, the cluster view; `/leader` 503; a change 503 with
  Retry-After, since no member leads), keeps retrying, and leads once etcd is there;
* `ccfo check-config` on a `cluster:` section with one member, duplicate names or a TTL below etcd's minimum
  prints file:line: field for each (exit 2, no traceback); `ccfo controller` refuses a member the section
  does not name, or `--member` without a section, in one line (exit 2).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from lab.labconfig import build
from tests.ha.etcdkit import cluster
from tests.ha.memberkit import REPO, leader_probe, member_config, start_member, stop_members, token
from tests.integration.labkit import layout
from tests.support import wait_until

TTL = 3


@pytest.mark.slow  # `make test-slow` (CI): a member waiting on an absent etcd, then etcd started: ~30 s
@pytest.mark.timeout(120)
def test_a_member_started_without_etcd_serves_read_only_status_and_leads_once_etcd_is_there(tmp_path: Path) -> None:
    etcd = cluster(tmp_path, 3)  # its addresses; not started yet
    config, urls = member_config(tmp_path, etcd, TTL)
    viewer, admin = token(config, "viewer"), token(config, "admin")
    url = urls["ctl-a"]
    procs = {"ctl-a": start_member(config, "ctl-a", tmp_path)}  # ctl-b is never started
    log = tmp_path / "ctl-a.log"
    try:
        ready = procs["ctl-a"][1]
        wait_until(lambda: ready.exists() or procs["ctl-a"][0].poll() is not None, timeout=60,
                   describe=lambda: log.read_text()[-2000:])
        assert procs["ctl-a"][0].poll() is None, log.read_text()[-3000:]
        # one clear line naming every endpoint it tried, then it serves
        said = [ln for ln in log.read_text().splitlines() if "serving read-only status and retrying" in ln]
        assert len(said) == 1 and " ERROR " in said[0], log.read_text()[-3000:]
        assert all(e in said[0] for e in etcd.endpoints), said[0]
        assert "Traceback" not in log.read_text()
        # read-only status meanwhile
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        status = httpx.get(url + "/api/v1/status", headers=viewer, timeout=10)
        assert status.status_code == 200 and status.json()["site"], status.text
        view = httpx.get(url + "/api/v1/cluster", headers=viewer, timeout=10).json()
        assert view["etcd_reachable"] is False and view["leader"] is None and view["acting"] is False, view
        code, body = leader_probe(url)
        assert code == 503 and body["leader"] is None
        change = httpx.put(url + "/api/v1/mode", json={"mode": "manual", "reason": "while etcd is down"},
                           headers=admin, timeout=15)
        assert change.status_code == 503 and change.headers["retry-after"] == str(TTL), change.text
        assert "no controller member leads now" in change.json()["detail"] and "ctl-b: unreachable" in \
            change.json()["detail"], change.text

        etcd.start()  # it keeps retrying: once etcd answers, it campaigns and leads
        wait_until(lambda: leader_probe(url)[0] == 200 or None, timeout=30,
                   describe=lambda: log.read_text()[-2000:])
        done = httpx.put(url + "/api/v1/mode", json={"mode": "manual", "reason": "etcd is back"}, headers=admin,
                         timeout=15)
        assert done.status_code == 200 and done.headers["x-ccfo-member"] == "ctl-a", done.text
    finally:
        stop_members(procs)
        etcd.stop(grace_s=0)


def _check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", "check-config", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _site_with_cluster(tmp: Path, section: str) -> tuple[Path, int]:
    """The example config with `section` appended; the line number of its `cluster:` line."""
    d = tmp / "config"
    shutil.copytree(REPO / "config", d)
    site = d / "site.yaml"
    before = site.read_text().rstrip("\n") + "\n"
    site.write_text(before + section)
    return d, before.count("\n") + 2


def test_check_config_names_file_and_line_for_a_bad_cluster_section(tmp_path: Path) -> None:
    config, line = _site_with_cluster(tmp_path, """
cluster:
  members:
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
  etcd_endpoints: ["https://10.20.1.21:2379"]
  lease_ttl_s: 1
""")
    done = _check_config(config)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert f"site.yaml:{line + 1}: cluster.members: a cluster needs at least two members, got 1" in out, out
    assert f"site.yaml:{line + 4}: cluster.lease_ttl_s: below etcd's minimum lease TTL of 2 s" in out, out

    dup, line = _site_with_cluster(tmp_path / "dup", """
cluster:
  members:
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
    - {name: ctl-a, url: "https://10.20.1.22:8080"}
  etcd_endpoints: ["https://10.20.1.21:2379", "https://10.20.1.22:2379", "https://10.20.2.21:2379"]
""")
    done = _check_config(dup)
    out = done.stdout + done.stderr
    assert done.returncode == 2 and f"site.yaml:{line + 3}: cluster.members[1].name: duplicate member name " \
        "'ctl-a'" in out, out


@pytest.mark.parametrize(("member", "with_cluster", "said"), [
    ("ctl-z", True, "member 'ctl-z' is not in cluster.members (ctl-a, ctl-b)"),
    (None, True, "site.yaml has a cluster: section: pass --member NAME (one of ctl-a, ctl-b)"),
    ("ctl-a", False, "--member ctl-a: site.yaml has no cluster: section (single-controller mode)"),
])
def test_the_controller_refuses_a_member_the_config_does_not_name(tmp_path: Path, member: str | None,
                                                                   with_cluster: bool, said: str) -> None:
    lay = layout(tmp_path)  # the lab's config: its secrets exist, so only the member can be wrong
    build(REPO / "config", lay)
    config = lay.config
    if with_cluster:
        site = yaml.safe_load((config / "site.yaml").read_text())
        site["cluster"] = {"members": [{"name": "ctl-a", "url": "http://127.0.0.1:18081"},
                                       {"name": "ctl-b", "url": "http://127.0.0.1:18082"}],
                           "etcd_endpoints": ["http://127.0.0.1:2379"]}
        (config / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    argv = [sys.executable, "-m", "controller", "controller", "--config", str(config)]
    proc = subprocess.Popen([*argv, *(["--member", member] if member else [])], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert proc.returncode == 2, out + err
    assert said in err and "Traceback" not in err, err
