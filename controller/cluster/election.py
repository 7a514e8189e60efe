"""Leader election on etcd with a lease, and writes guarded by the leader's term.

One key per site, `/ccfo/<site>/leader`, holds the leader's member name. A member becomes leader by
creating it in a transaction (`create_revision == 0`) attached to a lease of `lease_ttl_s`; the key's
create revision is the **term**: unique and growing with every new leadership. The leader renews the
lease every `renew_interval_s` (ttl/3) and checks, with a linearizable read, that the key is still its
own. Followers watch the key and campaign as soon as it is deleted (lease expired or revoked).

The rule that keeps two members from acting at once (Patroni's: demote first): the leader **acts only
until `acting_until`** = the time it *sent* its last successful renewal + ttl - `safety_margin_s`.
etcd cannot expire the lease before (send time + ttl), since the server restarts the TTL when it
receives the renewal, which is after it was sent; so a leader that cannot renew stops acting at least
`safety_margin_s` before any other member can hold the key. `is_acting(now)` is what the engine asks
before each step; the clock is injected (monotonic seconds). What the margin does not cover (a process
paused between its check and its action) the term does: agents refuse an older term (fencing tokens)
and every state write is a `guarded_txn` that compares the leader key's create revision with the term,
so a deposed leader's write fails with `NotLeader`.

This module decides nothing about the site; it only answers "am I the leader, with which term, until
when" and guards writes. It never sleeps to synchronise: waits are on etcd answers or on a watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ccfo.clients.etcd import (
    Compare,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    EventType,
    Get,
    LeaseNotFound,
    Op,
    Put,
    RangeResult,
    TxnResult,
)

log = logging.getLogger("ccfo.cluster")

Clock = Callable[[], float]


def leader_key(site: str) -> str:
    return f"/ccfo/{site}/leader"


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"


class NotLeader(EtcdError):
    """A guarded write was refused: this member is not (or no longer) the leader of `term`."""

    def __init__(self, term: int | None, current_term: int | None, current_leader: str | None) -> None:
        self.term = term
        self.current_term = current_term
        self.current_leader = current_leader
        now = f"term {current_term} held by {current_leader}" if current_term else "no leader now"
        super().__init__(f"not the leader: write guarded by term {term} refused ({now})")


@dataclass(frozen=True, slots=True)
class Timing:
    """The election's timing rule, derived from the lease TTL (see docs/ha.md)."""

    lease_ttl_s: float
    safety_margin_s: float
    renew_interval_s: float

    @classmethod
    def for_ttl(cls, lease_ttl_s: float, safety_margin_s: float | None = None,
                renew_interval_s: float | None = None) -> Timing:
        margin = max(0.5, lease_ttl_s / 5) if safety_margin_s is None else safety_margin_s
        interval = lease_ttl_s / 3 if renew_interval_s is None else renew_interval_s
        if not 0 < margin < lease_ttl_s:
            raise ValueError(f"safety margin must be between 0 and the lease TTL ({lease_ttl_s:g} s), got {margin:g}")
        if not 0 < interval < lease_ttl_s - margin:
            raise ValueError(f"renew interval must be below TTL - margin ({lease_ttl_s - margin:g} s), "
                             f"got {interval:g}")
        return cls(lease_ttl_s, margin, interval)


@dataclass(frozen=True, slots=True)
class Leadership:
    """What one member knows about the leadership at one moment (for the API and the logs)."""

    member: str
    role: Role
    leader: str | None  # the holder's name as last seen (this member when leader)
    term: int | None  # the holder's term (the leader key's create revision)
    acting: bool
    acting_until: float | None  # monotonic clock of this member; None when not leader


class Election:
    """One member's side of the election. `await run()` campaigns and holds the leadership until
    cancelled (then resigns); `is_acting(now)` and `term` are read by the engine."""

    def __init__(self, client: EtcdClient, site: str, name: str, *, lease_ttl_s: float = 5.0,
                 safety_margin_s: float | None = None, renew_interval_s: float | None = None,
                 clock: Clock = time.monotonic, on_change: Callable[[Leadership], None] | None = None) -> None:
        self.client = client
        self.site = site
        self.name = name
        self.key = leader_key(site)
        self.timing = Timing.for_ttl(lease_ttl_s, safety_margin_s, renew_interval_s)
        self.clock = clock
        self.on_change = on_change
        self._lease: int | None = None
        self._term: int | None = None
        self._acting_until = -math.inf
        self._renewed_at = -math.inf  # when the last successful renewal (or the grant) was sent
        self._stale_lease: int | None = None  # the lease of a leadership given up, to revoke
        self._seen_leader: str | None = None
        self._seen_term: int | None = None
        self._last = self.snapshot()

    # --- what the engine reads -----------------------------------------------------------------------
    @property
    def term(self) -> int | None:
        """This member's term while it holds the leader key, else None."""
        return self._term

    @property
    def acting_until(self) -> float:
        return self._acting_until

    def is_acting(self, now: float | None = None) -> bool:
        """True while this member is leader and its lease is certainly still alive (minus the margin)."""
        t = self.clock() if now is None else now
        return self._term is not None and t < self._acting_until

    def valid_until(self, wall: Callable[[], float] = time.time) -> float | None:
        """The end of the acting window on the wall clock (what an agent can compare with its own clock:
        it refuses an action arriving later); None when not leader. Safe while the agent's clock is
        behind this member's by less than the safety margin (docs/ha.md)."""
        if self._term is None:
            return None
        return wall() + (self._acting_until - self.clock())

    def describe(self) -> str:
        """One line for refusals and the status (ccfo.ports.Leadership)."""
        if self._term is not None:
            acting = "acting" if self.is_acting() else "not acting: its lease may have lapsed"
            return f"{self.name} leads (term {self._term}), {acting}"
        if self._seen_leader:
            return f"{self.name} is a follower; {self._seen_leader} leads (term {self._seen_term})"
        return f"{self.name} is a follower; no leader now"

    def snapshot(self) -> Leadership:
        leader = self._term is not None
        return Leadership(self.name, Role.LEADER if leader else Role.FOLLOWER,
                          self.name if leader else self._seen_leader, self._term if leader else self._seen_term,
                          self.is_acting(), self._acting_until if leader else None)

    def _changed(self) -> None:
        now = self.snapshot()
        if (now.role, now.leader, now.term) != (self._last.role, self._last.leader, self._last.term):
            self._last = now
            if self.on_change is not None:
                try:
                    self.on_change(now)
                except Exception:  # an observer must not break the election
                    log.exception("leadership observer failed")

    # --- the loop ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Campaign, hold, demote, campaign again, until cancelled; on cancel, resign (revoke the lease)."""
        try:
            while True:
                try:
                    if self._stale_lease is not None:
                        lease, self._stale_lease = self._stale_lease, None
                        await self._revoke(lease)
                    if self._term is None:
                        result = await self.campaign()
                        if self._term is None:
                            await self._wait_for_vacancy(result)
                    else:
                        await self._hold()
                except EtcdError as exc:
                    log.warning("%s: election: %s", self.name, exc)
                    await asyncio.sleep(min(1.0, self.timing.renew_interval_s))  # back off before the next try
        finally:
            await asyncio.shield(self.resign())

    async def campaign(self) -> RangeResult | None:
        """One attempt to take the leader key. Returns the key as read when another member holds it."""
        t_sent = self.clock()
        lease = await self.client.lease_grant(math.ceil(self.timing.lease_ttl_s))
        try:
            res = await self.client.txn([Compare.create(self.key, "==", 0)],
                                        [Put(self.key, self.name, lease=lease.id)], [Get(self.key)])
        except EtcdUnavailable as exc:
            if not exc.maybe_applied:
                await self._revoke(lease.id)
                raise
            try:
                got = await self.client.get(self.key)  # did our create land? read back before deciding
            except EtcdError:
                await self._revoke(lease.id)  # unknown outcome: give the lease up (or let it expire) unused
                raise
            kv = got.first
            if kv is not None and kv.lease == lease.id:
                self._become_leader(kv.create_revision, lease.id, t_sent, lease.ttl_s)
                return None
            await self._revoke(lease.id)
            self._observe(got)
            return got
        if res.succeeded:
            self._become_leader(res.revision, lease.id, t_sent, lease.ttl_s)
            return None
        await self._revoke(lease.id)
        holder = res.responses[0]
        assert isinstance(holder, RangeResult)
        self._observe(holder)
        return holder

    def _become_leader(self, term: int, lease_id: int, t_sent: float, granted_ttl_s: int) -> None:
        self._lease, self._term = lease_id, term
        self._renewed_at = t_sent
        self._acting_until = t_sent + min(self.timing.lease_ttl_s, granted_ttl_s) - self.timing.safety_margin_s
        self._seen_leader, self._seen_term = self.name, term
        log.info("%s: leader of site %s, term %d", self.name, self.site, term)
        self._changed()

    def _observe(self, got: RangeResult) -> None:
        kv = got.first
        self._seen_leader = kv.text if kv else None
        self._seen_term = kv.create_revision if kv else None
        self._changed()

    async def _wait_for_vacancy(self, seen: RangeResult | None) -> None:
        """Follower: wait until the leader key is deleted (watch), or at most one TTL, then re-check."""
        if seen is None or seen.first is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timing.lease_ttl_s), \
                    self.client.watch(self.key, start_revision=seen.revision + 1) as w:
                async for ev in w:
                    if ev.type is EventType.DELETE:
                        self._seen_leader = self._seen_term = None
                        self._changed()
                        return

    async def _hold(self) -> None:
        """Leader: renew the lease every interval; demote when the acting deadline passes without one."""
        while self._term is not None:
            await asyncio.sleep(max(0.0, self._renewed_at + self.timing.renew_interval_s - self.clock()))
            while self._term is not None:
                try:
                    await self.renew()
                    break
                except EtcdError as exc:
                    left = max(0.0, self._acting_until - self.clock())
                    log.warning("%s: lease renewal failed (%s); acting for %.2f s more at most", self.name, exc, left)
                    await asyncio.sleep(min(0.2, left))

    async def renew(self) -> bool:
        """One renewal: keepalive, then a linearizable read that the key is still ours. True when renewed;
        False (and demoted) when the acting deadline has passed, the lease is gone or the key is not ours;
        raises EtcdError when etcd did not answer in time (the caller retries until the deadline)."""
        if self._term is None or self._lease is None:
            return False
        t_sent = self.clock()
        left = self._acting_until - t_sent
        if left <= 0:
            self.demote("the lease could not be renewed before the acting deadline")
            return False
        try:
            ttl = await self.client.lease_keepalive(self._lease, timeout_s=min(left, self.timing.renew_interval_s))
            got = await self.client.get(self.key, timeout_s=max(0.05, self._acting_until - self.clock()))
        except LeaseNotFound:
            self.demote("the lease expired or was revoked")
            return False
        kv = got.first
        if kv is None or kv.create_revision != self._term:
            self.demote(f"the leader key is no longer ours (now {kv.text if kv else 'absent'})")
            return False
        if self.clock() >= self._acting_until:  # the answer came too late to extend a deadline already passed
            self.demote("the renewal answered after the acting deadline")
            return False
        self._renewed_at = t_sent
        self._acting_until = t_sent + min(self.timing.lease_ttl_s, ttl) - self.timing.safety_margin_s
        return True

    def demote(self, why: str) -> None:
        """Stop acting now (idempotent). The lease is left to expire or revoked by `resign`."""
        if self._term is None:
            return
        log.warning("%s: stepping down from term %d: %s", self.name, self._term, why)
        lease, self._lease = self._lease, None
        self._term = None
        self._acting_until = -math.inf
        self._seen_leader = self._seen_term = None
        self._stale_lease = lease
        self._changed()

    async def resign(self) -> None:
        """Give the leadership up now (revoke the lease: the key goes, followers take over at once)."""
        self.demote("resigned")
        lease, self._stale_lease = self._stale_lease, None
        if lease is not None:
            await self._revoke(lease)

    async def _revoke(self, lease_id: int) -> None:
        try:
            await self.client.lease_revoke(lease_id, timeout_s=min(1.0, self.timing.renew_interval_s))
        except EtcdError as exc:
            log.info("%s: lease %x not revoked (%s): it expires by itself", self.name, lease_id, exc)

    # --- guarded writes ------------------------------------------------------------------------------
    async def guarded_txn(self, success: Sequence[Op], *, compare: Sequence[Compare] = (),
                          failure: Sequence[Op] = ()) -> TxnResult:
        """Run `success` only while this member is acting leader and the leader key is still its term."""
        term = self._term
        if term is None or not self.is_acting():
            raise NotLeader(term, self._seen_term, self._seen_leader)
        return await guarded_txn(self.client, self.site, term, success, compare=compare, failure=failure)


async def guarded_txn(client: EtcdClient, site: str, term: int, success: Sequence[Op], *,
                      compare: Sequence[Compare] = (), failure: Sequence[Op] = ()) -> TxnResult:
    """A transaction that applies only if `/ccfo/<site>/leader` still has create revision `term`.
    Raises NotLeader when the term is over; a failed extra compare returns the result (succeeded False)."""
    key = leader_key(site)
    res = await client.txn([Compare.create(key, "==", term), *compare], success, [Get(key), *failure])
    if not res.succeeded:
        holder = res.responses[0]
        kv = holder.first if isinstance(holder, RangeResult) else None
        if kv is None or kv.create_revision != term:
            raise NotLeader(term, kv.create_revision if kv else None, kv.text if kv else None)
        return TxnResult(False, res.revision, res.responses[1:])
    return res


async def guarded_put(client: EtcdClient, site: str, term: int, key: str, value: str | bytes) -> int:
    """Put one key under the term guard; returns the revision. Raises NotLeader for a stale term."""
    return (await guarded_txn(client, site, term, [Put(key, value)])).revision


RETRY_S = 0.25  # the pace of a publisher's retries while etcd does not answer


async def _put_if_unchanged(client: EtcdClient, site: str, term: int, key: str, value: str | bytes, data: bytes,
                            revs: dict[str, int]) -> bool:
    """One guarded compare-and-set put (see put_while_leading); False when it must be tried again."""
    if key not in revs:
        got = await client.get(key)
        revs[key] = got.first.mod_revision if got.first is not None else 0  # 0: the key must not exist
    res = await guarded_txn(client, site, term, [Put(key, value)], compare=[Compare.mod(key, "==", revs[key])],
                            failure=[Get(key)])
    if res.succeeded:
        revs[key] = res.revision
        return True
    now = res.responses[0].first if res.responses and isinstance(res.responses[0], RangeResult) else None
    revs[key] = now.mod_revision if now is not None else 0
    return now is not None and now.value == data


async def put_while_leading(election: Election, client: EtcdClient, term: int, key: str, value: str | bytes,
                            what: str, revs: dict[str, int] | None = None) -> bool:
    """Put one key under the term guard, retrying while etcd does not answer and this member still holds
    `term`: a leader's writes reach etcd in order or not at all (the publishers in statesync and journalsync
    put one at a time, so the next waits). Dropping one on a transient error (an etcd member cut, raft
    electing) left etcd behind the leader: a plan's abort not on etcd, a journal entry missing from every
    other member's copy; the fault campaign found it. False once the term is over (NotLeader, or demoted:
    a deposed leader's writes are not the site's); a retried put that had been applied is the same value
    again (the followers store each journal key once).

    `revs` (key -> the mod revision this leader last saw or wrote) makes each put a compare-and-set on the
    key's mod revision, for keys that are overwritten (the state, the plan records): a put whose answer
    timed out can still reach etcd later (TCP retransmits it after a partition heals) and would overwrite
    a newer write; with the compare it fails. The campaign saw it: a plan finished on the leader and in
    the journal, "running" on etcd. A failed compare reads the key: our value already there (an attempt
    given up on was applied) is success; an older one of ours is written over."""
    failed = 0
    data = value.encode() if isinstance(value, str) else value
    while election.term == term:
        try:
            if revs is None:
                await guarded_put(client, election.site, term, key, value)
            elif not await _put_if_unchanged(client, election.site, term, key, value, data, revs):
                continue  # a late write of ours had landed: written over with this newer one
            if failed:
                log.warning("%s copied to etcd after %d failed attempt(s)", what, failed)
            return True
        except NotLeader as exc:
            log.warning("%s not copied to etcd: %s", what, exc)
            return False
        except EtcdError as exc:
            failed += 1
            if failed == 1:
                log.error("%s not copied to etcd yet: %s; retrying while this member leads", what, exc)
            await asyncio.sleep(RETRY_S)  # a retry pace, not a synchronisation
    log.warning("%s not copied to etcd: this member no longer leads with term %d", what, term)
    return False
