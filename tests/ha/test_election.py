"""Leader election on a real 3-member etcd: one leader among contenders, the timing rule with an injected
clock, takeover after kill -9 of the leader's process within lease_ttl_s + 1 s with a higher term, a
resign handing over at once, and a deposed leader's guarded write refused."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from pathlib import Path

import pytest

from ccfo.clients.etcd import Compare, EtcdClient, EtcdUnavailable, Put
from controller.cluster.election import (
    Election,
    NotLeader,
    Role,
    Timing,
    guarded_put,
    guarded_txn,
    leader_key,
    put_while_leading,
)
from lab import contenders
from lab.etcd import EtcdCluster
from tests.support import async_wait_until, wait_until

TTL = 5.0


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_timing_rule() -> None:
    t = Timing.for_ttl(5)
    assert (t.lease_ttl_s, t.safety_margin_s, t.renew_interval_s) == (5, 1.0, pytest.approx(5 / 3))
    assert Timing.for_ttl(2).safety_margin_s == 0.5
    with pytest.raises(ValueError, match="safety margin"):
        Timing.for_ttl(5, safety_margin_s=5)
    with pytest.raises(ValueError, match="renew interval"):
        Timing.for_ttl(5, safety_margin_s=1, renew_interval_s=4.5)


@pytest.mark.asyncio
async def test_acting_deadline_follows_the_last_renewal_sent(etcd3: EtcdCluster) -> None:
    clock = FakeClock(1000.0)
    async with EtcdClient(etcd3.endpoints) as c:
        e = Election(c, "s1", "a", lease_ttl_s=TTL, clock=clock)
        assert not e.is_acting() and e.term is None
        assert await e.campaign() is None
        assert e.term is not None and e.acting_until == 1000.0 + TTL - 1.0
        assert e.is_acting(1003.99) and not e.is_acting(1004.0)
        clock.t = 1002.0
        assert await e.renew()
        assert e.acting_until == 1002.0 + TTL - 1.0 and e.is_acting(1005.9) and not e.is_acting(1006.0)
        # the same window on the wall clock, as agents get it with each action
        assert e.valid_until(lambda: 1_700_000_000.0) == 1_700_000_000.0 + (1002.0 + TTL - 1.0 - 1002.0)
        kv = (await c.get(leader_key("s1"))).first
        assert kv is not None and kv.text == "a" and kv.create_revision == e.term

        etcd3.stop(grace_s=0)  # etcd gone: renewals fail, the leader stops acting at its deadline
        clock.t = 1003.0
        with pytest.raises(EtcdUnavailable):
            await e.renew()
        assert e.is_acting() and e.snapshot().role is Role.LEADER
        clock.t = 1006.0
        assert not e.is_acting()
        assert not await e.renew()  # past the deadline: demoted without asking etcd
        assert e.term is None and e.snapshot().role is Role.FOLLOWER
        assert e.valid_until() is None


@pytest.mark.asyncio
async def test_one_leader_among_three_and_guarded_writes(etcd3: EtcdCluster) -> None:
    clients = [EtcdClient(etcd3.endpoints) for _ in range(3)]
    es = [Election(c, "s2", f"m{i}", lease_ttl_s=TTL) for i, c in enumerate(clients)]
    tasks = [asyncio.create_task(e.run()) for e in es]
    try:
        await async_wait_until(lambda: sum(e.is_acting() for e in es) == 1, timeout=10)
        leader = next(e for e in es if e.is_acting())
        followers = [e for e in es if e is not leader]
        await async_wait_until(lambda: all(f.snapshot().leader == leader.name for f in followers), timeout=5)
        assert all(f.snapshot().term == leader.term and not f.is_acting() for f in followers)
        assert (await leader.guarded_txn([Put("/ccfo/s2/state", "x")])).succeeded
        with pytest.raises(NotLeader):
            await followers[0].guarded_txn([Put("/ccfo/s2/state", "y")])
        # an extra compare that does not hold is a plain failed txn, not a deposition
        res = await leader.guarded_txn([Put("/ccfo/s2/state", "z")],
                                       compare=[Compare.value_is("/ccfo/s2/state", "==", "q")])
        assert not res.succeeded
        assert (await clients[0].get("/ccfo/s2/state")).first.text == "x"  # type: ignore[union-attr]
        # several renewal periods later, still exactly that leader with that term
        term = leader.term
        await async_wait_until(lambda: leader._renewed_at > leader.clock() - 1 and leader.acting_until > 0, timeout=5)
        assert sum(e.is_acting() for e in es) == 1 and leader.term == term

        # cancelling the leader's task resigns: the lease is revoked and another takes over at once
        t0 = asyncio.get_running_loop().time()
        tasks[es.index(leader)].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[es.index(leader)]
        await async_wait_until(lambda: any(f.is_acting() for f in followers), timeout=TTL)
        took = asyncio.get_running_loop().time() - t0
        new = next(f for f in followers if f.is_acting())
        assert new.term is not None and term is not None and new.term > term
        assert took < 1.5, f"a resign should hand over at once, took {took:.2f} s"
        assert not leader.is_acting()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.aclose()


@pytest.mark.asyncio
async def test_a_deposed_leaders_write_fails(etcd3: EtcdCluster) -> None:
    async with EtcdClient(etcd3.endpoints) as c:
        old = Election(c, "s3", "old", lease_ttl_s=TTL)
        await old.campaign()
        old_term = old.term
        assert old_term is not None
        assert await guarded_put(c, "s3", old_term, "/ccfo/s3/plan", "step1") > old_term
        # the old leader is paused: its lease runs out (revoked here to not wait) and another takes over
        assert old._lease is not None
        await c.lease_revoke(old._lease)
        new = Election(c, "s3", "new", lease_ttl_s=TTL)
        await new.campaign()
        assert new.term is not None and new.term > old_term
        # the old one still believes it leads (its deadline has not passed) but its writes are refused
        assert old.is_acting()
        with pytest.raises(NotLeader) as err:
            await old.guarded_txn([Put("/ccfo/s3/plan", "step2-by-old")])
        assert err.value.term == old_term and err.value.current_term == new.term
        assert err.value.current_leader == "new"
        assert f"term {old_term}" in str(err.value) and f"term {new.term} held by new" in str(err.value)
        assert (await c.get("/ccfo/s3/plan")).first.text == "step1"  # type: ignore[union-attr]
        assert not await old.renew()  # its next renewal finds the lease gone: it demotes
        assert not old.is_acting()
        await guarded_put(c, "s3", new.term, "/ccfo/s3/plan", "step2")
        res = await guarded_txn(c, "s3", new.term, [Put("/ccfo/s3/plan", "step3")])
        assert res.succeeded


def test_kill_9_the_leader_process_takeover_within_ttl_plus_1(etcd3: EtcdCluster, tmp_path: Path) -> None:
    tag = str(tmp_path)
    cs = [contenders.start(f"c{i}", etcd3.endpoints, "s4", ttl=TTL, tag=tag) for i in range(3)]
    takeovers: list[float] = []
    try:
        wait_until(lambda: len(contenders.leaders(cs)) == 1, timeout=15,
                   describe=lambda: [c.state() for c in cs])
        for _round in range(3):
            leader = contenders.leaders(cs)[0]
            term = leader.state()["term"]  # type: ignore[index]
            t_kill = leader.kill()
            old_until = max(ln["acting_until"] for ln in leader.history() if ln.get("acting_until") is not None)
            rest = [c for c in cs if c is not leader]
            wait_until(lambda rest=rest: len(contenders.leaders(rest)) == 1, timeout=TTL + 3,
                       describe=lambda: [c.state() for c in cs])
            new = contenders.leaders(rest)[0]
            line = contenders.first_line(new, lambda ln: ln["role"] == "leader", after=t_kill)
            assert line is not None and line["term"] > term
            # no overlap: the new leader took the key after the dead one's last acting deadline
            assert line["t"] > old_until, (line, old_until)
            takeovers.append(line["t"] - t_kill)
            assert takeovers[-1] <= TTL + 1, f"takeover took {takeovers[-1]:.2f} s"
            # the killed one comes back as a follower: three contenders again
            leader.stop()
            cs[cs.index(leader)] = contenders.start(leader.name, etcd3.endpoints, "s4", ttl=TTL, tag=tag)
            wait_until(lambda new=new: all(c.state() and c.state()["leader"] == new.name for c in cs), timeout=10,
                       describe=lambda: [c.state() for c in cs])
        print(f"takeover after kill -9 (ttl {TTL:g} s): " + ", ".join(f"{t:.2f} s" for t in takeovers))
        assert len(takeovers) == 3 and all(not math.isnan(t) for t in takeovers)
    finally:
        for c in cs:
            c.stop()


def test_a_paused_leader_never_acts_again_after_resume(etcd3: EtcdCluster, tmp_path: Path) -> None:
    cs = [contenders.start(f"p{i}", etcd3.endpoints, "s5", ttl=TTL, tag=str(tmp_path)) for i in range(3)]
    try:
        wait_until(lambda: len(contenders.leaders(cs)) == 1, timeout=15, describe=lambda: [c.state() for c in cs])
        old = contenders.leaders(cs)[0]
        old_term = old.state()["term"]  # type: ignore[index]
        deadline = max(ln["acting_until"] for ln in old.history() if ln.get("acting_until") is not None)
        old.kill(signal.SIGSTOP)  # paused, not dead: its lease runs out while it sleeps
        t_stop = time.monotonic()
        rest = [c for c in cs if c is not old]
        wait_until(lambda: len(contenders.leaders(rest)) == 1, timeout=TTL + 3,
                   describe=lambda: [c.state() for c in rest])
        new = contenders.leaders(rest)[0]
        took = contenders.first_line(new, lambda ln: ln["role"] == "leader", after=t_stop)
        assert took is not None and took["term"] > old_term and took["t"] > deadline
        t_cont = time.monotonic()
        old.proc.send_signal(signal.SIGCONT)
        # resumed: it reports at once that it no longer acts, then follows the new leader
        wait_until(lambda: (old.state() or {}).get("leader") == new.name and old.state()["t"] > t_cont,  # type: ignore[index]
                   timeout=TTL + 3, describe=lambda: old.history()[-3:])
        after = [ln for ln in old.history() if ln["t"] > t_cont and ln["event"] != "log"]
        assert after and not any(ln["acting"] and ln["term"] == old_term for ln in after), after
        assert new.is_leader() and new.state()["term"] == took["term"]  # type: ignore[index]
    finally:
        for c in cs:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGCONT)
            c.stop()


@pytest.mark.asyncio
async def test_a_leaders_write_waits_out_an_etcd_outage_and_a_deposed_one_is_dropped(
        etcd3: EtcdCluster, caplog: pytest.LogCaptureFixture) -> None:
    """The publishers' put (statesync, journalsync): retried in place while etcd does not answer and the
    member holds its term (the campaign found a journal entry and a plan's abort dropped on one timeout),
    given up at once for a term that is not this member's."""
    caplog.set_level("ERROR", logger="ccfo.cluster")
    async with EtcdClient(etcd3.endpoints) as c:
        e = Election(c, "s9", "a", lease_ttl_s=TTL)
        await e.campaign()
        term = e.term
        assert term is not None
        assert not await put_while_leading(e, c, term + 1, "/ccfo/s9/other", "x", "a deposed write")
        etcd3.stop(grace_s=0)
        put = asyncio.create_task(put_while_leading(e, c, term, "/ccfo/s9/entry", "v1", "entry 1"))
        await async_wait_until(lambda: "entry 1 not copied to etcd yet" in caplog.text, timeout=30)
        assert not put.done()
        await asyncio.to_thread(etcd3.start)
        assert await asyncio.wait_for(put, 30) is True
        got = await c.get("/ccfo/s9/entry")
        assert got.first is not None and got.first.text == "v1"
        assert (await c.get("/ccfo/s9/other")).first is None


@pytest.mark.asyncio
async def test_an_overwritten_key_is_put_by_compare_and_set_so_a_late_older_write_cannot_win(
        etcd3: EtcdCluster) -> None:
    """A put whose answer timed out can reach etcd later (TCP retransmits it after a partition heals): with
    `revs` each put compares the key's mod revision, so the late one fails instead of overwriting a newer
    value (the partition campaign saw a finished plan "running" on etcd)."""
    async with EtcdClient(etcd3.endpoints) as c:
        e = Election(c, "s8", "a", lease_ttl_s=TTL)
        await e.campaign()
        term = e.term
        assert term is not None
        key, revs = "/ccfo/s8/plans/p1", {}
        assert await put_while_leading(e, c, term, key, "running@1", "p1", revs)
        first = revs[key]
        assert await put_while_leading(e, c, term, key, "finished", "p1", revs)
        # the late request: the first put, still carrying the compare it was sent with (the key absent)
        late = await guarded_txn(c, "s8", term, [Put(key, "running@1")], compare=[Compare.mod(key, "==", 0)])
        assert not late.succeeded
        late = await guarded_txn(c, "s8", term, [Put(key, "running@1")], compare=[Compare.mod(key, "==", first)])
        assert not late.succeeded
        got = await c.get(key)
        assert got.first is not None and got.first.text == "finished" and got.first.mod_revision == revs[key]
        # an attempt given up on had been applied: the retry finds its own value and writes nothing more
        stale = dict(revs)
        await guarded_put(c, "s8", term, key, "aborted")
        applied = (await c.get(key)).first
        assert applied is not None
        assert await put_while_leading(e, c, term, key, "aborted", "p1", stale)
        assert (await c.get(key)).first.mod_revision == applied.mod_revision == stale[key]  # type: ignore[union-attr]
        # an older value of ours landed after we read: written over with the newer one
        await guarded_put(c, "s8", term, key, "running@2")
        assert await put_while_leading(e, c, term, key, "finished@3", "p1", stale)
        assert (await c.get(key)).first.text == "finished@3"  # type: ignore[union-attr]
        assert not await put_while_leading(e, c, term + 1, key, "x", "p1", stale)  # not our term: nothing
        assert (await c.get(key)).first.text == "finished@3"  # type: ignore[union-attr]
