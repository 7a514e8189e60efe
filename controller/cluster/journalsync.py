"""The journal through etcd: every member keeps the whole site's journal in its own SQLite file.

The leader's entries are put on etcd as it appends them (one task, in append order, each put guarded by
its term: a deposed leader's entry is not published, it stays in its local file), under
`/ccfo/<site>/journal/<member>/<its local id, 12 digits>`. Every member watches the prefix from the last
etcd revision it stored and appends the other members' entries to its own file (`Journal.append_replica`,
once per key, in etcd's revision order: one global order for the leaders' entries). So the journal
survives the loss of any one controller host, and a new leader's dashboard and API show what its
predecessor did.

Bounded etcd space: each member keeps its last `keep` entries on etcd (older keys are deleted as new ones
are put); the local files keep everything. etcd's own history is bounded by its auto-compaction
(docs/ha.md); a watch that asks for a compacted revision falls back to reading the prefix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

from ccfo.clients.etcd import EtcdClient, EtcdCompacted, EtcdError, EventType
from controller.cluster.election import Election, put_while_leading
from controller.journal import Journal, JournalEntry, JournalError

log = logging.getLogger("ccfo.cluster")
KEEP = 10_000


def journal_prefix(site: str) -> str:
    return f"/ccfo/{site}/journal/"


class JournalSync:
    def __init__(self, election: Election, client: EtcdClient, site: str, journal: Journal, *,
                 keep: int = KEEP) -> None:
        self.election, self.client, self.site, self.journal, self.keep = election, client, site, journal, keep
        self.mine = f"{journal_prefix(site)}{election.name}/"
        self._queue: asyncio.Queue[JournalEntry] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._deleted_upto: int | None = None
        journal.on_append = self._appended

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._publish(), name="journal-publish"),
                       asyncio.create_task(self._follow(), name="journal-follow")]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # a task that had died already (its client closed under it): said, not raised
                log.exception("journal sync task %s had failed", task.get_name())
        self.journal.on_append = None

    # --- the leader's entries ---------------------------------------------------------------------------
    def _appended(self, entry: JournalEntry) -> None:
        if self.election.term is not None:  # a follower's own entries (notifications it received) stay local
            self._loop.call_soon_threadsafe(self._queue.put_nowait, entry)

    async def _publish(self) -> None:
        while True:
            entry = await self._queue.get()
            term = self.election.term
            if term is None:
                continue
            doc = json.dumps(dataclasses.asdict(entry), sort_keys=True)
            if not await put_while_leading(self.election, self.client, term, f"{self.mine}{entry.id:012d}", doc,
                                           f"journal entry {entry.id}"):
                continue
            try:
                await self._trim(entry.id)
            except EtcdError as exc:  # an old key left on etcd a little longer: the next put trims again
                log.warning("journal trim after entry %d: %s", entry.id, exc)

    async def _trim(self, last_id: int) -> None:
        """Keep this member's last `keep` entries on etcd (at most 20 deletes per entry put)."""
        upto = last_id - self.keep
        if self._deleted_upto is None:
            self._deleted_upto = max(0, upto - 1)
        while self._deleted_upto < upto and upto - self._deleted_upto <= 20:
            self._deleted_upto += 1
            await self.client.delete(f"{self.mine}{self._deleted_upto:012d}")
        self._deleted_upto = max(self._deleted_upto, upto - 20)

    # --- the other members' entries -----------------------------------------------------------------------
    async def _follow(self) -> None:
        prefix = journal_prefix(self.site)
        start = await asyncio.to_thread(self.journal.replicated_revision) + 1
        while True:
            try:
                async with self.client.watch(prefix, prefix=True, start_revision=start) as events:
                    async for ev in events:
                        if ev.type is EventType.PUT:
                            await self._store(ev.kv.key, ev.kv.mod_revision, ev.kv.text)
                        start = ev.kv.mod_revision + 1
            except EtcdCompacted:  # the history is gone: what is still there, in revision order
                got = await self.client.get(prefix, prefix=True)
                for kv in sorted(got.kvs, key=lambda kv: kv.mod_revision):
                    await self._store(kv.key, kv.mod_revision, kv.text)
                start = got.revision + 1
            except EtcdError as exc:
                log.warning("journal watch: %s; watching again", exc)
                await asyncio.sleep(0.5)  # a retry pace, not a synchronisation

    async def _store(self, key: str, revision: int, text: str) -> None:
        if key.startswith(self.mine):
            return
        try:
            entry = json.loads(text)
            await asyncio.to_thread(self.journal.append_replica, key, revision, entry)
        except (ValueError, KeyError, TypeError, JournalError) as exc:  # malformed: logged and skipped
            log.warning("journal replica %s skipped: %s", key, exc)
