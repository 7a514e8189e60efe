"""ClusterNode: built from a real config directory with a cluster: section; an unknown member or no
section is a clear error; with etcd down at start-up it says which endpoints it tried and keeps trying,
becoming leader once etcd is there; closing resigns."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccfo.clients.etcd import EtcdUnavailable
from ccfo.config.loader import load_config
from controller.cluster.node import ClusterConfigError, ClusterNode
from tests.ha.etcdkit import cluster
from tests.support import async_wait_until

REPO = Path(__file__).resolve().parents[2]


def config_with(tmp: Path, endpoints: list[str]) -> Path:
    d = tmp / "config"
    shutil.copytree(REPO / "config", d)
    site = d / "site.yaml"
    eps = ", ".join(f'"{e}"' for e in endpoints)
    site.write_text(site.read_text() + f"""
cluster:
  members:
    - {{name: ctl-a, url: "http://127.0.0.1:8081"}}
    - {{name: ctl-b, url: "http://127.0.0.1:8082"}}
  etcd_endpoints: [{eps}]
  lease_ttl_s: 3
  etcd_timeout_s: 1
""")
    return d


def test_errors(tmp_path: Path) -> None:
    cfg = load_config(config_with(tmp_path, ["http://127.0.0.1:2379"]))
    with pytest.raises(ClusterConfigError, match=r"member 'ctl-z' is not in cluster.members \(ctl-a, ctl-b\)"):
        ClusterNode.from_config(cfg, "ctl-z")
    with pytest.raises(ClusterConfigError, match="no cluster: section"):
        ClusterNode.from_config(load_config(REPO / "config"), "ctl-a")


@pytest.mark.asyncio
async def test_etcd_down_at_start_then_up(tmp_path: Path) -> None:
    etcd = cluster(tmp_path, 3)
    cfg = load_config(config_with(tmp_path, etcd.endpoints))
    node = ClusterNode.from_config(cfg, "ctl-a")
    assert node.election.timing.lease_ttl_s == 3 and node.client.timeout_s == 1
    try:
        problem = await node.start()
        assert isinstance(problem, EtcdUnavailable)
        assert all(url in str(problem) for url in etcd.endpoints)
        assert not node.election.is_acting()
        etcd.start()
        await async_wait_until(node.election.is_acting, timeout=15)
        assert (await node.view.read())["leader"] == "ctl-a"
    finally:
        await node.aclose()
        etcd.stop(grace_s=0)
    assert not node.election.is_acting()
