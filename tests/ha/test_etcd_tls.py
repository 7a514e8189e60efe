"""The etcd client over TLS: a 3-member etcd serving clients on https with certificates from a test CA;
the client verifies them with `ca_file` and works, fails over when a member dies, and without the CA is
refused (EtcdUnavailable naming the certificate problem), never silently unverified."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.clients.etcd import EtcdClient, EtcdUnavailable
from lab.etcd import EtcdCluster
from tests.deploy.kit import make_ca, server_cert, write_private
from tests.ha.etcdkit import loopback_addresses, need_etcd


@pytest.mark.asyncio
async def test_client_over_tls(tmp_path: Path) -> None:
    need_etcd()
    addrs = loopback_addresses(3)
    ca = make_ca()
    ca_file = write_private(tmp_path / "tls" / "ca.pem", ca.pem(), 0o644)
    pairs = []
    for a in addrs:
        cert, key = server_cert(ca, a)
        pairs.append((write_private(tmp_path / "tls" / f"{a}.pem", cert, 0o644),
                      write_private(tmp_path / "tls" / f"{a}.key", key)))
    cluster = EtcdCluster(tmp_path / "etcd", addrs, tls=pairs, ca_file=ca_file)
    assert all(url.startswith("https://") for url in cluster.endpoints)
    cluster.start()
    try:
        async with EtcdClient(cluster.endpoints, ca_file=str(ca_file), timeout_s=5) as c:
            await c.put("/tls/k", "v")
            assert (await c.get("/tls/k")).first.text == "v"  # type: ignore[union-attr]
            cluster.kill_member("etcd1")
            assert (await c.get("/tls/k")).first.text == "v"  # type: ignore[union-attr]
        async with EtcdClient(cluster.endpoints[1:], timeout_s=1.5) as untrusted:
            with pytest.raises(EtcdUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
                await untrusted.get("/tls/k")
    finally:
        cluster.stop(grace_s=0)
