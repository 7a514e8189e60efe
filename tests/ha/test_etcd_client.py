"""ccfo.clients.etcd against a real 3-member etcd 3.4 cluster on loopback: the kv calls, transactions with
each compare target, leases, watches (streaming, resumed from a revision, across a killed member),
failover when a member is killed, and our errors (EtcdUnavailable naming the endpoints, within the
call's timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from ccfo.clients.etcd import (
    Compare,
    Delete,
    EtcdClient,
    EtcdCompacted,
    EtcdTxnFailed,
    EtcdUnavailable,
    EventType,
    Get,
    LeaseNotFound,
    Put,
    RangeResult,
    WatchEvent,
)
from lab.etcd import EtcdCluster
from tests.ha.etcdkit import loopback_addresses


async def _next(it, timeout: float = 5.0) -> WatchEvent:  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(anext(it), timeout)


@pytest.mark.asyncio
async def test_kv_roundtrip_and_prefix(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        assert (await c.get("/t/none")).first is None
        p1 = await c.put("/t/a", "1")
        p2 = await c.put("/t/b", b"\x00\xffbin")
        assert p2.revision == p1.revision + 1
        got = await c.get("/t/", prefix=True)
        assert [(kv.key, kv.value) for kv in got.kvs] == [("/t/a", b"1"), ("/t/b", b"\x00\xffbin")]
        assert got.count == 2 and got.revision == p2.revision
        a = got.kvs[0]
        assert (a.create_revision, a.mod_revision, a.version) == (p1.revision, p1.revision, 1)
        again = await c.put("/t/a", "2", prev_kv=True)
        assert again.prev is not None and again.prev.text == "1"
        assert (await c.get("/t/a")).first.version == 2  # type: ignore[union-attr]
        old = await c.get("/t/a", revision=p1.revision)
        assert old.first is not None and old.first.text == "1"
        assert (await c.delete("/t/", prefix=True)).deleted == 2
        assert (await c.get("/t/", prefix=True)).count == 0


@pytest.mark.asyncio
async def test_txn_compares(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        create = await c.txn([Compare.create("/x", "==", 0)], [Put("/x", "mine")], [Get("/x")])
        assert create.succeeded and create.revision > 0
        again = await c.txn([Compare.create("/x", "==", 0)], [Put("/x", "theirs")], [Get("/x")])
        assert not again.succeeded
        holder = again.responses[0]
        assert isinstance(holder, RangeResult) and holder.first is not None
        assert holder.first.text == "mine" and holder.first.create_revision == create.revision

        assert (await c.txn([Compare.mod("/x", "==", create.revision)], [Put("/x", "v2")])).succeeded
        assert not (await c.txn([Compare.mod("/x", "==", create.revision)], [Put("/x", "v3")])).succeeded
        assert (await c.txn([Compare.version("/x", "==", 2)], [Put("/y", "1")])).succeeded
        assert (await c.txn([Compare.value_is("/x", "==", "v2")], [Delete("/y")])).succeeded
        assert not (await c.txn([Compare.value_is("/x", "!=", "v2")], [Delete("/x")])).succeeded
        assert (await c.txn([Compare.create("/x", ">", 0), Compare.create("/x", "<", create.revision + 1)],
                            [Get("/x")])).succeeded
        with pytest.raises(EtcdTxnFailed) as err:
            await c.txn([Compare.create("/x", "==", 0)], [Put("/x", "z")], [Get("/x")], raise_on_fail=True)
        assert not err.value.result.succeeded
        assert (await c.get("/x")).first.text == "v2"  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="compare operator"):
            Compare.create("/x", "=", 0)


@pytest.mark.asyncio
async def test_leases(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        lease = await c.lease_grant(5)
        assert lease.ttl_s == 5 and lease.id > 0
        await c.put("/l/k", "v", lease=lease.id)
        assert (await c.get("/l/k")).first.lease == lease.id  # type: ignore[union-attr]
        assert await c.lease_keepalive(lease.id) == 5
        assert 0 < await c.lease_ttl(lease.id) <= 5
        await c.lease_revoke(lease.id)
        assert (await c.get("/l/k")).first is None  # revoking deletes the lease's keys
        with pytest.raises(LeaseNotFound):
            await c.lease_keepalive(lease.id)
        await c.lease_revoke(lease.id)  # already gone: not an error
        assert await c.lease_ttl(lease.id) == -1
        short = await c.lease_grant(1)
        assert short.ttl_s == etcd3.min_lease_ttl_s == 2  # etcd raises a TTL below its minimum


@pytest.mark.asyncio
async def test_lease_expires_and_deletes_its_key(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        lease = await c.lease_grant(2)
        put = await c.put("/e/k", "v", lease=lease.id)
        t0 = time.monotonic()
        async with c.watch("/e/k", start_revision=put.revision + 1) as w:
            ev = await _next(aiter(w), 6)
        assert ev.type is EventType.DELETE and ev.kv.key == "/e/k"
        assert 1.0 < time.monotonic() - t0 < 4.5


@pytest.mark.asyncio
async def test_watch_streams_and_resumes_from_a_revision(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        first = await c.put("/w/a", "1")
        async with c.watch("/w/", prefix=True, start_revision=first.revision + 1, prev_kv=True) as w:
            it = aiter(w)
            pending = asyncio.create_task(_next(it))  # the stream is open while the writes happen
            r2 = await c.put("/w/b", "2")
            await c.put("/w/a", "3")
            await c.delete("/w/b")
            live = [await pending, await _next(it), await _next(it)]
        assert [(e.type, e.kv.key, e.kv.value) for e in live] == [
            (EventType.PUT, "/w/b", b"2"), (EventType.PUT, "/w/a", b"3"), (EventType.DELETE, "/w/b", b"")]
        assert live[1].prev is not None and live[1].prev.text == "1"
        assert live[0].kv.mod_revision == r2.revision
        assert w.next_revision == live[-1].kv.mod_revision + 1
        # resumed from an older revision: the history first, in order, the same events
        async with c.watch("/w/", prefix=True, start_revision=first.revision) as hist:
            h = aiter(hist)
            events = [await _next(h) for _ in range(4)]
        assert [(e.type, e.kv.key) for e in events] == [
            (EventType.PUT, "/w/a"), (EventType.PUT, "/w/b"), (EventType.PUT, "/w/a"), (EventType.DELETE, "/w/b")]
        assert [e.kv for e in events[1:]] == [e.kv for e in live]


@pytest.mark.asyncio
async def test_watch_survives_a_killed_member(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints, timeout_s=3) as c:
        start = await c.put("/m/k", "0")
        async with c.watch("/m/k", start_revision=start.revision + 1) as w:
            it = aiter(w)
            await c.put("/m/k", "1")
            assert (await _next(it)).kv.text == "1"
            etcd3.kill_member("etcd1")  # the member the watch streams from (the first endpoint)
            for v in ("2", "3"):
                for _ in range(10):  # a proposal sent to a dying raft leader may time out: retry the put
                    try:
                        await c.put("/m/k", v)
                        break
                    except EtcdUnavailable:
                        continue
            seen = [(await _next(it, 15)).kv.text, (await _next(it, 15)).kv.text]
        assert seen == ["2", "3"]  # resumed on another member from the next revision: none lost or repeated


@pytest.mark.asyncio
async def test_failover_when_a_member_is_killed(etcd3: EtcdCluster) -> None:
    # if the killed member was raft's leader, a linearizable read waits for the next election (~1 s here)
    async with EtcdClient(etcd3.endpoints, timeout_s=5) as c:
        await c.put("/f/k", "before")
        etcd3.kill_member("etcd1")
        t0 = time.monotonic()
        got = await c.get("/f/k")
        assert got.first is not None and got.first.text == "before"
        assert time.monotonic() - t0 < 5.5
        assert c.endpoints[c._preferred] != etcd3.member("etcd1").client_url


@pytest.mark.asyncio
async def test_unavailable_names_every_endpoint_within_the_timeout(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints, timeout_s=1.5) as c:
        await c.put("/u/k", "v")
        etcd3.stop(grace_s=0)
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable) as err:
            await c.get("/u/k")
        assert time.monotonic() - t0 < 2.0
        for url in etcd3.endpoints:
            assert url in str(err.value)
        with pytest.raises(EtcdUnavailable):
            await c.txn([Compare.create("/u/k", "==", 0)], [Put("/u/k", "x")])


@pytest.mark.asyncio
async def test_nothing_listening() -> None:
    addrs = loopback_addresses(2)
    async with EtcdClient([f"http://{a}:2379" for a in addrs], timeout_s=1.0) as c:
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable, match=f"etcd unavailable at http://{addrs[0]}:2379, "):
            await c.lease_grant(5)
        assert time.monotonic() - t0 < 1.5
    with pytest.raises(ValueError):
        EtcdClient([])


@pytest.mark.asyncio
async def test_compacted_history(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        first = await c.put("/c/k", "1")
        last = await c.put("/c/k", "2")
        await c.compact(last.revision)
        async with c.watch("/c/k", start_revision=first.revision) as w:
            with pytest.raises(EtcdCompacted) as err:
                await _next(aiter(w))
        assert err.value.compact_revision == last.revision


@pytest.mark.asyncio
async def test_a_txn_moves_past_a_member_that_does_not_accept(etcd3: EtcdCluster) -> None:
    # a listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs, as to a
    # member behind a cut link (the address is the test's own loopback)
    addr = loopback_addresses(1)[0]
    with socket.socket() as hole:
        hole.bind((addr, 2379))
        hole.listen(0)
        fillers = []
        try:
            for _ in range(4):
                f = socket.socket()
                f.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    f.connect((addr, 2379))
                fillers.append(f)
            async with EtcdClient([f"http://{addr}:2379", *etcd3.endpoints[1:]], timeout_s=4) as c:
                t0 = time.monotonic()
                res = await c.txn([Compare.create("/bh/k", "==", 0)], [Put("/bh/k", "v")])
                took = time.monotonic() - t0
            assert res.succeeded
            assert took < 2.5, f"the txn waited {took:.2f} s on a member that never accepted"
        finally:
            for f in fillers:
                f.close()
