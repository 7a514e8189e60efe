"""Fixtures of the HA tests: `etcd3`, a started 3-member etcd cluster on the test's own loopback network,
stopped after the test whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.etcd import EtcdCluster
from tests.ha.etcdkit import cluster


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    c = cluster(tmp_path, 3)
    c.start()
    try:
        yield c
    finally:
        c.stop(grace_s=0)
