"""The controller's durable state: the site state (duties, mode, active database) and the plans.

Unlike the journal (append-only history), these rows change: a plan moves from proposed to running to
finished, and its `next_step` advances as the executor completes steps, so a controller killed
mid-plan finds it on restart, marks it interrupted, and can resume it from the step it was on.
SQLite in WAL mode with synchronous=FULL; each change is one transaction. Not async: callers use
asyncio.to_thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from ccfo.domain.plan import Plan, plan_from_dict
from ccfo.domain.state import SiteState


class PlanStatus(StrEnum):
    PROPOSED = "proposed"  # waiting for an operator's approval
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the controller stopped while it ran: resume or abort
    REJECTED = "rejected"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"  # a proposal the situation no longer calls for

    @property
    def open(self) -> bool:
        return self in (PlanStatus.PROPOSED, PlanStatus.RUNNING, PlanStatus.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: str
    plan: Plan
    status: PlanStatus
    created: float
    updated: float
    source: str  # rule id, or "operator"
    requested_by: str  # "controller" or the operator's token name
    reason: str
    next_step: int = 0
    decided_by: str | None = None
    decided_reason: str | None = None
    error: str | None = None
    attempt: int = 0  # bumped when a failed plan is retried, so agent action ids change

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status.value, "created": self.created, "updated": self.updated,
            "source": self.source, "requested_by": self.requested_by, "reason": self.reason,
            "next_step": self.next_step, "decided_by": self.decided_by, "decided_reason": self.decided_reason,
            "error": self.error, "attempt": self.attempt, **self.plan.to_dict(),
            "requested_reason": self.reason,  # the request's words: `reason` above is the plan's own
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> PlanRecord:
        """The inverse of `to_dict` (a record read back from etcd by a new leader)."""
        return PlanRecord(d["id"], plan_from_dict(d), PlanStatus(d["status"]), float(d["created"]),
                          float(d["updated"]), d["source"], d["requested_by"], d.get("requested_reason", d["reason"]),
                          int(d["next_step"]),
                          d.get("decided_by"), d.get("decided_reason"), d.get("error"), int(d.get("attempt", 0)))


def new_plan_id() -> str:
    return uuid.uuid4().hex[:12]


class StoreError(Exception):
    pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, status TEXT NOT NULL,
    source TEXT NOT NULL, requested_by TEXT NOT NULL, reason TEXT NOT NULL, plan TEXT NOT NULL,
    next_step INTEGER NOT NULL DEFAULT 0, decided_by TEXT, decided_reason TEXT, error TEXT,
    attempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS plans_status ON plans(status);
CREATE INDEX IF NOT EXISTS plans_created ON plans(created);
"""


class Store:
    """The site state and the plan records in SQLite. `on_write` (controller HA: the leader's copy to
    etcd, controller/cluster/statesync.py) is told of every write after it is committed here; it is
    called from the writing thread and must not block."""

    def __init__(self, path: str | Path) -> None:
        self.on_write: Callable[[str, dict[str, Any]], None] | None = None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state store {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _tx(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StoreError(str(exc)) from exc

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params))

    # --- site state ---------------------------------------------------------------------------

    def load_state(self) -> SiteState | None:
        rows = self._rows("SELECT value FROM kv WHERE key = 'site_state'")
        return SiteState.from_dict(json.loads(rows[0][0])) if rows else None

    def save_state(self, state: SiteState, *, tell: bool = True) -> None:
        self._tx("INSERT INTO kv(key, value) VALUES('site_state', ?) ON CONFLICT(key) DO UPDATE SET value = "
                 "excluded.value", (json.dumps(state.to_dict()),))
        if tell and self.on_write is not None:
            self.on_write("state", state.to_dict())

    # --- plans -------------------------------------------------------------------------------

    def add_plan(self, plan: Plan, *, status: PlanStatus, source: str, requested_by: str, reason: str,
                 now: float, plan_id: str | None = None) -> PlanRecord:
        """Store a new plan; `plan_id` is one from `new_plan_id` when the caller claimed work under it."""
        rec = PlanRecord(plan_id or new_plan_id(), plan, status, now, now, source, requested_by, reason)
        self._tx("INSERT INTO plans(id, created, updated, status, source, requested_by, reason, plan, next_step) "
                 "VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0)",
                 (rec.id, now, now, status.value, source, requested_by, reason, json.dumps(plan.to_dict())))
        if self.on_write is not None:
            self.on_write("plan", rec.to_dict())
        return rec

    def put_plan(self, rec: PlanRecord) -> None:
        """Store `rec` as it is (a new leader taking the records over from etcd); not told to `on_write`."""
        self._tx("INSERT OR REPLACE INTO plans(id, created, updated, status, source, requested_by, reason, plan, "
                 "next_step, decided_by, decided_reason, error, attempt) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (rec.id, rec.created, rec.updated, rec.status.value, rec.source, rec.requested_by, rec.reason,
                  json.dumps(rec.plan.to_dict()), rec.next_step, rec.decided_by, rec.decided_reason, rec.error,
                  rec.attempt))

    def update_plan(self, rec: PlanRecord, now: float, **changes: Any) -> PlanRecord:
        new = replace(rec, updated=now, **changes)
        self._tx("UPDATE plans SET updated=?, status=?, next_step=?, decided_by=?, decided_reason=?, error=?, "
                 "attempt=? WHERE id=?", (now, new.status.value, new.next_step, new.decided_by, new.decided_reason,
                                          new.error, new.attempt, new.id))
        if self.on_write is not None:
            self.on_write("plan", new.to_dict())
        return new

    def get_plan(self, plan_id: str) -> PlanRecord | None:
        rows = self._rows(f"SELECT {_COLS} FROM plans WHERE id = ?", (plan_id,))
        return _record(rows[0]) if rows else None

    def plans(self, statuses: set[PlanStatus] | None = None, limit: int = 50) -> list[PlanRecord]:
        if statuses:
            marks = ",".join("?" for _ in statuses)
            rows = self._rows(f"SELECT {_COLS} FROM plans WHERE status IN ({marks}) ORDER BY created DESC LIMIT ?",
                              (*[s.value for s in statuses], limit))
        else:
            rows = self._rows(f"SELECT {_COLS} FROM plans ORDER BY created DESC LIMIT ?", (limit,))
        return [_record(r) for r in rows]

    def open_plans(self) -> Iterator[PlanRecord]:
        yield from self.plans({PlanStatus.PROPOSED, PlanStatus.RUNNING, PlanStatus.INTERRUPTED})


_COLS = ("id, created, updated, status, source, requested_by, reason, plan, next_step, decided_by, decided_reason, "
         "error, attempt")


def _record(row: tuple[Any, ...]) -> PlanRecord:
    (pid, created, updated, status, source, requested_by, reason, plan, next_step, decided_by, decided_reason,
     error, attempt) = row
    return PlanRecord(pid, plan_from_dict(json.loads(plan)), PlanStatus(status), created, updated, source,
                      requested_by, reason, next_step, decided_by, decided_reason, error, attempt)
