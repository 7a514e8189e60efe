"""The lab in network namespaces (LabLayout(netns=True), lab/world.py), live: `python -m lab.netns_smoke` in a
process of its own (it moves itself into the lab's world namespace with setns(2), which the test process must
not do) brings the whole lab up with three controllers in automatic mode on a 10.79.x net of this test's own,
cuts the leader's link, heals it, cuts the primary host's link, takes the lab down and prints what it saw as
JSON; this test asserts on it: every node's process runs in its node's namespace under its own pid; one leader;
another member leads with a higher term within lease_ttl_s + 2 s of the cut; after the heal one leader again;
with an etcd member cut, one leader all along and the member healthy again after the heal;
with the primary cut, CTI/IVR never on two hosts (pid files sampled every 0.05 s), the primary fenced through
the PDU and the standby running both, the failover plan finished with its routing step (the SIP front driven
through its UNIX socket from the controllers' namespaces); the cut host's lab AMI control still answered from
world; no namespace of the lab left after `down()`, also after an `up()` that failed.

Slow (make test-slow): ~60 s. Needs root for `ip netns`; skips with the reason where namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.front import FrontError, kamailio_binary
from lab.netns import list_netns, netns_available
from tests.ha.etcdkit import need_etcd

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
NET = f"10.79.{20 + os.getpid() % 200}"  # this test's own subnet (the lab's namespaces are named after it)
TTL = 5.0


def _need_root_etcd_kamailio() -> None:
    need_etcd()
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    try:
        kamailio_binary()
    except FrontError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _need_root_etcd_kamailio()
    root = tmp_path_factory.mktemp("netns-lab")
    r = subprocess.run([sys.executable, "-m", "lab.netns_smoke", "--root", str(root), "--net", NET,
                        "--lease-ttl", str(TTL)], capture_output=True, text=True, timeout=540, cwd=REPO)
    assert r.stdout.strip(), f"no JSON (exit {r.returncode}): {r.stderr[-3000:]}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, f"{out['error']}\n{out.get('trace')}\nlogs: {root / 'lab' / 'logs'}"
    assert r.returncode == 0, r.stderr[-3000:]
    return out  # type: ignore[no-any-return]


def test_every_node_process_runs_in_its_namespace_under_its_own_pid(smoke: dict) -> None:
    members = smoke["members"]
    assert sorted(members) == sorted(["ipc-a-ami", "ipc-a-agent", "ipc-b-ami", "ipc-b-agent", "ctl-a", "ctl-b",
                                      "ctl-c", "etcd1", "etcd2", "etcd3"])
    for name, m in members.items():
        assert m["in_node"] is True, (name, m)
        assert m["program"] != "ip", (name, m)  # ip netns exec exec'd the program: the pid the lab holds is its
    assert members["etcd1"]["program"] == "etcd"


def test_one_leader_and_another_leads_within_the_lease_once_the_leader_is_cut(smoke: dict) -> None:
    assert len(smoke["leaders_at_start"]) == 1, smoke["leaders_at_start"]
    cut = smoke["leader_cut"]
    assert smoke["partitioned_after_cut"] == [cut["leader"]]
    assert len(cut["new"]) == 1, cut
    (new, term), = cut["new"].items()
    assert new != cut["leader"] and term > cut["term"], cut
    assert cut["took_s"] <= TTL + 2, cut
    assert len(cut["leaders_after_heal"]) == 1, cut  # the healed member does not lead beside the new one


def test_an_etcd_member_cut_leaves_one_leader_and_rejoins(smoke: dict) -> None:
    e = smoke["etcd_cut"]
    assert e["most_leaders_at_once"] == 1, e  # sampled every 0.1 s for lease_ttl_s + 2 s
    assert len(e["leaders_after_heal"]) == 1 and e["healthy_after_heal_s"] < 30, e
    assert smoke["inject_said"] == f"{e['member']} partitioned (its link is down)"


def test_the_primary_cut_is_fenced_and_the_standby_takes_over_never_both(smoke: dict) -> None:
    p = smoke["primary_cut"]
    assert p["before"] == [p["primary"]] and p["after"] == [p["standby"]], p
    assert p["samples"] > 20 and p["most_hosts_at_once"] == 1, p  # CTI/IVR never on two hosts
    assert p["powered"] == {p["primary"]: False, p["standby"]: True}, p  # fenced through the lab PDU (world)
    failovers = [x for x in p["plans"] if x["action"] == "failover"]
    assert failovers and failovers[0]["status"] == "finished", p["plans"]
    assert "fence" in failovers[0]["steps"] and "route_inbound" in failovers[0]["steps"], failovers[0]
    assert p["front_destinations"] == [f"sip:{NET}.2:5060"], p  # the front now sends new calls to the standby
    assert isinstance(p["ami_control_while_cut"], list), p  # the lab's console reached the cut host
    assert smoke["partitioned_at_end"] == []


def test_down_deletes_every_namespace(smoke: dict) -> None:
    assert smoke["namespaces_left"] == []
    assert not [ns for ns in list_netns() if ns.startswith(smoke["tag"] + "-")]
    assert smoke["enter_world_s"] < 5, smoke["enter_world_s"]


def test_a_failed_up_leaves_no_namespace(tmp_path: Path) -> None:
    _need_root_etcd_kamailio()
    net = f"10.78.{20 + os.getpid() % 200}"
    r = subprocess.run([sys.executable, "-m", "lab.netns_smoke", "--root", str(tmp_path), "--net", net, "--fail-up"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1 and "is not a node of the lab's namespaces" in out["error"], out
    assert out["namespaces_left"] == [] and not [ns for ns in list_netns() if ns.startswith(out["tag"] + "-")]
