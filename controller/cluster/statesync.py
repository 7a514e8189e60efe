"""The site state and the plan records on etcd, so a new leader continues where the old one stopped.

The leader keeps writing its SQLite store as before; every committed write (`Store.on_write`) is also put
on etcd, in order, by one task, each put guarded by the leader key's term (a deposed leader's put fails
with NotLeader and is dropped). Keys: `/ccfo/<site>/state` (the site state) and
`/ccfo/<site>/plans/<id>` (a plan record with its step cursor: proposals, approvals, running and ended
plans alike).

A member that becomes leader does not act before it has **taken over**: it reads the state and the plan
records from etcd into its own store; a plan the old leader was running is left INTERRUPTED at its step
cursor, with the reason, for an operator to resume or abort (its agent action ids are those of the plan
and step, so a step the old leader had already sent is not run twice: the agent answers with its stored
result). On a first leadership (nothing on etcd yet) it publishes its own state and open plans instead.
Until then `is_acting()` stays False (`SyncedLeadership`), so the engine neither claims work nor runs a
step on a state that is not the site's.

The copy to etcd trails the SQLite write by one etcd round trip; what a leader killed in that window had
written last is the step cursor of a step whose agent action is idempotent by its id.

A **follower** serves reads (status, the dashboard, the CLI's first member): it mirrors the site state
key every `mirror_s` into its engine (`on_mirror`, display only: a follower decides nothing), so a mode or
roles changed on the leader read the same on every member within that time. Found by the lab test: a
member that had never led answered `ccfo status` with the mode of its own start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ccfo.clients.etcd import EtcdClient, EtcdError
from ccfo.domain.state import SiteState
from controller.cluster.election import Election, guarded_put, put_while_leading
from controller.store import PlanRecord, PlanStatus, Store

log = logging.getLogger("ccfo.cluster")


def state_key(site: str) -> str:
    return f"/ccfo/{site}/state"


def plans_prefix(site: str) -> str:
    return f"/ccfo/{site}/plans/"


class StateSync:
    """One member's side: publish the leader's writes; take the state over when elected."""

    def __init__(self, election: Election, client: EtcdClient, site: str, store: Store,
                 on_taken: Callable[[SiteState, list[PlanRecord]], Awaitable[None]],
                 on_mirror: Callable[[SiteState], Awaitable[None]] | None = None, mirror_s: float = 1.0) -> None:
        self.election, self.client, self.site, self.store = election, client, site, store
        self.on_taken = on_taken  # the engine adopts the state and journals the plans it interrupted
        self.on_mirror = on_mirror  # a follower's engine shows the site state the leader wrote
        self.mirror_s = mirror_s
        self._mirrored = 0  # the state key's mod revision last mirrored
        self._mirror: asyncio.Task[None] | None = None
        self.synced_term: int | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._revs: dict[str, int] = {}  # key -> its mod revision as this leader last saw or wrote it (CAS)
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._takeover: asyncio.Task[None] | None = None
        store.on_write = self._written

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish(), name="state-sync")
        if self.on_mirror is not None:
            self._mirror = asyncio.create_task(self._mirror_loop(), name="state-mirror")

    async def aclose(self) -> None:
        for task in (self._task, self._takeover, self._mirror):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # a task that had died already (its client closed under it)
                    log.exception("state sync task %s had failed", task.get_name())
        self.store.on_write = None

    # --- the leader's writes to etcd ------------------------------------------------------------------
    def _written(self, kind: str, doc: dict[str, Any]) -> None:
        """Store.on_write: from the store's thread; queued for the publishing task, in commit order."""
        if self.election.term is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, doc))

    async def _publish(self) -> None:
        while True:
            kind, doc = await self._queue.get()
            key = state_key(self.site) if kind == "state" else plans_prefix(self.site) + str(doc["id"])
            term = self.election.term
            if term is None:
                continue
            # retried while etcd does not answer and this member leads (it stops acting at its deadline)
            await put_while_leading(self.election, self.client, term, key, json.dumps(doc, sort_keys=True), key,
                                    self._revs)

    # --- a follower's view ------------------------------------------------------------------------------
    async def mirror_once(self) -> bool:
        """While this member is no leader: the site state on etcd into the engine, when it changed. True
        when it was applied. Skipped as soon as this member has a term (the takeover reads it itself)."""
        if self.on_mirror is None or self.election.term is not None:
            return False
        got = await self.client.get(state_key(self.site), serializable=True)
        kv = got.first
        if kv is None or kv.mod_revision == self._mirrored or self.election.term is not None:
            return False
        state = SiteState.from_dict(json.loads(kv.text))
        self._mirrored = kv.mod_revision
        await self.on_mirror(state)  # runs to the engine's update before yielding: no takeover in between
        return True

    async def _mirror_loop(self) -> None:
        while True:
            try:
                await self.mirror_once()
            except (EtcdError, ValueError, KeyError) as exc:  # etcd away: the view stays as it was
                log.debug("mirroring the site state failed: %s", exc)
            await asyncio.sleep(self.mirror_s)  # the mirror's pace, not a synchronisation

    # --- taking over -----------------------------------------------------------------------------------
    def elected(self, term: int) -> None:
        """The election's leadership change: take the state over for `term` (once)."""
        if self._takeover is None or self._takeover.done():
            self._takeover = asyncio.create_task(self.take_over(term), name=f"take-over-{term}")

    async def take_over(self, term: int) -> None:
        while self.election.term == term and self.synced_term != term:
            try:
                await self._take_over(term)
                self.synced_term = term
                log.warning("%s took the site state over from etcd (term %d)", self.election.name, term)
            except (EtcdError, ValueError, KeyError) as exc:
                log.error("taking the site state over from etcd failed (term %d): %s; retrying", term, exc)
                await asyncio.sleep(0.5)  # a retry pace, not a synchronisation

    async def _take_over(self, term: int) -> None:
        got = await self.client.get(state_key(self.site))
        plans = await self.client.get(plans_prefix(self.site), prefix=True)
        self._revs = {kv.key: kv.mod_revision for kv in (*got.kvs, *plans.kvs)}  # this term's writes compare with these
        if got.first is None:  # the first leader of this site: its own state is the site's
            state = self.store.load_state()
            if state is not None:
                await guarded_put(self.client, self.site, term, state_key(self.site), json.dumps(state.to_dict()))
            for rec in self.store.open_plans():
                await guarded_put(self.client, self.site, term, plans_prefix(self.site) + rec.id,
                                  json.dumps(rec.to_dict(), sort_keys=True))
            return
        state = SiteState.from_dict(json.loads(got.first.text))
        await asyncio.to_thread(self.store.save_state, state, tell=False)
        interrupted: list[PlanRecord] = []
        for kv in plans.kvs:
            rec = PlanRecord.from_dict(json.loads(kv.text))
            if rec.status is PlanStatus.RUNNING:
                why = (f"the leader was lost while this plan ran (taken over with term {term}); "
                       f"step {rec.next_step + 1} is next: resume or abort")
                rec = replace(rec, status=PlanStatus.INTERRUPTED, error=why)
                self._revs[kv.key] = await guarded_put(self.client, self.site, term, kv.key,
                                                       json.dumps(rec.to_dict(), sort_keys=True))
                interrupted.append(rec)
            await asyncio.to_thread(self.store.put_plan, rec)
        await self.on_taken(state, interrupted)


class SyncedLeadership:
    """The election, acting only once this member has taken the site state over for its term
    (ccfo.ports.Leadership)."""

    def __init__(self, election: Election, sync: StateSync) -> None:
        self.election, self.sync = election, sync

    def is_acting(self) -> bool:
        term = self.election.term
        return term is not None and self.sync.synced_term == term and self.election.is_acting()

    @property
    def term(self) -> int | None:
        return self.election.term

    def valid_until(self) -> float | None:
        return self.election.valid_until()

    def describe(self) -> str:
        if self.election.term is not None and self.sync.synced_term != self.election.term:
            return f"{self.election.describe()}; taking the site state over from etcd"
        return self.election.describe()
