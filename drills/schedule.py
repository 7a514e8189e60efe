"""Drill schedules: cron (or one-off `at`) triggers that start a drill, on APScheduler 3's asyncio scheduler.

Schedules come from two places: `schedules:` in CONFIG/drills.yaml (read at start-up; change the file to
change them) and the API (kept in the controller's data directory, in the `drill_schedules` table of
drills.sqlite next to the journal). APScheduler's own persistent job store needs SQLAlchemy, which ccfo
does not install, so the definitions are persisted here and re-added as in-memory jobs at start-up.
When a schedule fires, `fire` decides (the controller's guard: no plan running or proposed, the site in
its steady state) and either starts the drill or skips it, journaled and notified.

What it must not do: run a drill itself, or keep a job whose definition is not persisted.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from drills.model import ScheduleModel

log = logging.getLogger("ccfo.drills.schedule")

_SCHEMA = """CREATE TABLE IF NOT EXISTS drill_schedules (
    id TEXT PRIMARY KEY, drill TEXT NOT NULL, cron TEXT, at TEXT, enabled INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL, created_by TEXT NOT NULL)"""


class ScheduleError(ValueError):
    """A schedule that cannot be added (duplicate id, unknown drill) or removed (unknown, from config)."""


class ScheduleNotFound(ScheduleError):
    """No drill (to schedule) or no schedule (to remove) by that name."""


class ScheduleStore:
    """The API's schedules in SQLite (one connection, a lock; callers use asyncio.to_thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)

    def all(self) -> list[ScheduleModel]:
        with self._lock:
            rows = self._conn.execute("SELECT id, drill, cron, at, enabled FROM drill_schedules ORDER BY id").fetchall()
        return [ScheduleModel(id=r[0], drill=r[1], cron=r[2], at=datetime.fromisoformat(r[3]) if r[3] else None,
                              enabled=bool(r[4])) for r in rows]

    def add(self, s: ScheduleModel, who: str) -> None:
        with self._lock:
            try:
                self._conn.execute("INSERT INTO drill_schedules (id, drill, cron, at, enabled, created, created_by) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (s.id, s.drill, s.cron,
                                                                    s.at.isoformat() if s.at else None,
                                                                    int(s.enabled), time.time(), who))
            except sqlite3.IntegrityError as exc:
                raise ScheduleError(f"a schedule {s.id!r} exists already") from exc

    def remove(self, schedule_id: str) -> bool:
        with self._lock:
            return self._conn.execute("DELETE FROM drill_schedules WHERE id = ?", (schedule_id,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def trigger(s: ScheduleModel) -> CronTrigger | DateTrigger:
    if s.cron is not None:
        return CronTrigger.from_crontab(s.cron)
    return DateTrigger(run_date=s.at)


class DrillScheduler:
    """Config and API schedules as APScheduler jobs calling `fire(schedule)` in the event loop."""

    def __init__(self, config_schedules: list[ScheduleModel], store_path: Path,
                 fire: Callable[[ScheduleModel], Awaitable[None]], known: Callable[[str], bool]) -> None:
        self.config = {s.id: s for s in config_schedules}
        self.store_path, self.fire, self.known = store_path, fire, known
        self._store: ScheduleStore | None = None
        self._api: dict[str, ScheduleModel] = {}
        self._sched: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[None]] = set()

    def _db(self) -> ScheduleStore:
        if self._store is None:
            self._store = ScheduleStore(self.store_path)
        return self._store

    async def start(self) -> None:
        """Load the API's schedules (if any were ever stored) and start the jobs of every enabled one."""
        if self.store_path.exists():
            self._api = {s.id: s for s in await asyncio.to_thread(self._db().all)}
        for s in [*self.config.values(), *self._api.values()]:
            self._add_job(s)

    def _scheduler(self) -> AsyncIOScheduler:
        if self._sched is None:
            self._sched = AsyncIOScheduler(event_loop=asyncio.get_running_loop(),
                                           job_defaults={"coalesce": True, "max_instances": 1,
                                                         "misfire_grace_time": 60})
            self._sched.start()
        return self._sched

    def _add_job(self, s: ScheduleModel) -> None:
        if not s.enabled:
            return
        self._scheduler().add_job(self._fired, trigger(s), args=[s], id=s.id, name=f"drill {s.drill}",
                                  replace_existing=True)
        log.info("drill schedule %s: %s %s", s.id, s.drill, s.cron or s.at)

    async def _fired(self, s: ScheduleModel) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.fire(s)
        except Exception:  # a schedule never dies of one bad firing
            log.exception("drill schedule %s failed", s.id)
        finally:
            if task is not None:
                self._running.discard(task)

    async def add(self, s: ScheduleModel, who: str) -> dict[str, Any]:
        if not self.known(s.drill):
            raise ScheduleNotFound(f"no drill named {s.drill!r}")
        if s.id in self.config:
            raise ScheduleError(f"schedule {s.id!r} comes from drills.yaml; choose another id")
        await asyncio.to_thread(self._db().add, s, who)
        self._api[s.id] = s
        self._add_job(s)
        return self.view(s, "api")

    async def remove(self, schedule_id: str) -> None:
        if schedule_id in self.config:
            raise ScheduleError(f"schedule {schedule_id!r} comes from drills.yaml: change the file")
        if schedule_id not in self._api:
            raise ScheduleNotFound(f"no schedule {schedule_id!r}")
        await asyncio.to_thread(self._db().remove, schedule_id)
        del self._api[schedule_id]
        if self._sched is not None and self._sched.get_job(schedule_id) is not None:
            self._sched.remove_job(schedule_id)

    def view(self, s: ScheduleModel, source: str) -> dict[str, Any]:
        job = self._sched.get_job(s.id) if self._sched is not None else None
        nxt = job.next_run_time if job is not None else None
        return {"id": s.id, "drill": s.drill, "cron": s.cron, "at": s.at.isoformat() if s.at else None,
                "enabled": s.enabled, "source": source, "next_run": nxt.isoformat() if nxt else None,
                "next_run_ts": nxt.timestamp() if nxt else None}

    def list(self) -> list[dict[str, Any]]:
        return ([self.view(s, "config") for s in self.config.values()]
                + [self.view(s, "api") for s in self._api.values()])

    async def stop(self) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=False)
            self._sched = None
        for task in list(self._running):
            task.cancel()
        if self._store is not None:
            self._store.close()
            self._store = None
