"""lab/etcd.py against the real etcd binary: a 3-member cluster starts healthy, survives one member killed
(the other two keep a quorum and serve writes), takes the member back on its data dir, and stops clean."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import httpx
import pytest

from lab.etcd import EtcdCluster, EtcdLabError, min_lease_ttl_s
from tests.ha.etcdkit import cluster
from tests.support import wait_until


def _put(url: str, key: str, value: str) -> int:
    """One put; 0 when it did not succeed within 2 s (a proposal forwarded to a dead raft leader is
    dropped and would otherwise wait for etcd's 7 s request timeout)."""
    try:
        r = httpx.post(url + "/v3/kv/put", json={"key": base64.b64encode(key.encode()).decode(),
                                                 "value": base64.b64encode(value.encode()).decode()}, timeout=2)
    except httpx.TimeoutException:
        return 0
    return int(r.json()["header"]["revision"]) if r.status_code == 200 else 0


def test_three_members_healthy_kill_one_restart(etcd3: EtcdCluster) -> None:
    assert [m["name"] for m in etcd3.summary()] == ["etcd1", "etcd2", "etcd3"]
    pids = [m.pid for m in etcd3.members]
    assert all(pids) and len(set(pids)) == 3
    assert all(etcd3.healthy(m) for m in etcd3.members)
    assert (etcd3.base / "etcd1.etcd" / "member").is_dir()

    pid = etcd3.kill_member("etcd2")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not etcd3.healthy(etcd3.member("etcd2"))
    # two of three: still a quorum, serving writes again within a few election timeouts
    rev = wait_until(lambda: _put(etcd3.member("etcd1").client_url, "/t/a", "1"), timeout=15)
    assert rev >= 2

    etcd3.start_member("etcd2")  # back on its data dir: catches up with the write it missed
    r = httpx.post(etcd3.member("etcd2").client_url + "/v3/kv/range",
                   json={"key": base64.b64encode(b"/t/a").decode()}, timeout=5)
    assert base64.b64decode(r.json()["kvs"][0]["value"]) == b"1"

    etcd3.stop()
    assert all(m.pid is None for m in etcd3.members)


def test_address_in_use_is_a_clear_error(etcd3: EtcdCluster, tmp_path: Path) -> None:
    other = EtcdCluster(tmp_path / "other", [etcd3.members[0].address])
    with pytest.raises(EtcdLabError, match=r"cannot start etcd on 127\.\d+\.23\.1:2379"):
        other.start(timeout_s=5)
    assert other.members[0].pid is None


def test_single_member_and_min_ttl(tmp_path: Path) -> None:
    c = cluster(tmp_path, 1)
    with c:
        r = httpx.post(c.endpoints[0] + "/v3/lease/grant", json={"TTL": 1}, timeout=5)
        # etcd raises a TTL below its minimum to the minimum: 2 s with the default 100/1000 ms timing
        assert int(r.json()["TTL"]) == c.min_lease_ttl_s == 2
    assert min_lease_ttl_s(100, 1000) == 2
    assert min_lease_ttl_s(250, 2500) == 4
