"""Test helpers for the HA tests: a real 3-member etcd cluster on the test's own loopback network.

Networks are `127.N.23.0/24` with N taken from a per-process counter (as tests/integration/labkit.py
does for the lab, on another third octet), skipping any whose etcd ports are taken, so helpers and
parallel runs do not collide.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

import pytest

from lab.etcd import EtcdCluster, etcd_available

_NETS = itertools.count(30 + (os.getpid() % 100) * 2)


def _free(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def loopback_addresses(n: int = 3) -> list[str]:
    for _ in range(250):
        net = next(_NETS) % 250 + 2
        addrs = [f"127.{net}.23.{i + 1}" for i in range(n)]
        if all(_free(a, p) for a in addrs for p in (2379, 2380)):
            return addrs
    raise RuntimeError("no free loopback network for etcd")


def need_etcd() -> None:
    if not etcd_available():
        pytest.skip("Debian's etcd-server/etcd-client are not installed (make deps installs them as root)")


def cluster(tmp: Path, n: int = 3) -> EtcdCluster:
    need_etcd()
    return EtcdCluster(tmp / "etcd", loopback_addresses(n))
