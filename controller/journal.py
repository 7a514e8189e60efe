"""Append-only SQLite journal of everything the controller sees, decides and does.

What it holds: the `entries` table (one row per event: faults, decisions, plans and their steps,
operator actions, mode changes, drills, checklists), the schema migrations, and a small thread-safe
store (`Journal`) with `append`, `query`, `get`, `count` and `last_id`.

Durability: WAL mode with `synchronous=FULL`; every `append` is its own `BEGIN IMMEDIATE ... COMMIT`
and is on disk before it returns, so a controller killed at any moment leaves only whole rows.
Append-only is enforced by the database itself (triggers refuse UPDATE and DELETE), not only by the
absence of an API.

What it must not do: no update or delete API, no hidden clock beyond the `ts=None` convenience, no
asyncio (callers run it off the event loop with `asyncio.to_thread`), no knowledge of the domain
types beyond the entry kinds. sqlite3 errors leave this module as `JournalError`.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_COLUMNS = "id, ts, kind, host, plan_id, step, actor, reason, status, duration_s, data"


class JournalError(Exception):
    """The journal file cannot be opened, migrated, read or written."""


class EntryKind(StrEnum):
    """Kinds the controller writes today; `append` also accepts any other well-formed kind."""

    FAULT_SEEN = "fault_seen"
    FAULT_CLEARED = "fault_cleared"
    DECISION = "decision"
    PLAN_PROPOSED = "plan_proposed"
    PLAN_APPROVED = "plan_approved"
    PLAN_REJECTED = "plan_rejected"
    PLAN_STARTED = "plan_started"
    PLAN_FINISHED = "plan_finished"
    PLAN_FAILED = "plan_failed"
    PLAN_INTERRUPTED = "plan_interrupted"
    PLAN_RESUMED = "plan_resumed"
    PLAN_ABORTED = "plan_aborted"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    STEP_FAILED = "step_failed"
    OPERATOR_ACTION = "operator_action"
    MODE_CHANGED = "mode_changed"
    DRILL_STARTED = "drill_started"
    DRILL_FINISHED = "drill_finished"
    DRILL_SKIPPED = "drill_skipped"
    CHECKLIST_EVENT = "checklist_event"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One stored row; `data` is the decoded JSON object."""

    id: int
    ts: float
    kind: str
    host: str | None
    plan_id: str | None
    step: int | None
    actor: str | None
    reason: str | None
    status: str | None
    duration_s: float | None
    data: dict[str, Any]


# --------------------------------------------------------------------------- schema and migrations


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
            host TEXT NULL,
            plan_id TEXT NULL,
            step INTEGER NULL,
            actor TEXT NULL,
            reason TEXT NULL,
            status TEXT NULL,
            duration_s REAL NULL,
            data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data) AND json_type(data) = 'object')
        )"""
    )
    conn.execute("CREATE INDEX entries_kind ON entries (kind, id)")
    conn.execute("CREATE INDEX entries_plan_id ON entries (plan_id, id)")
    conn.execute("CREATE INDEX entries_ts ON entries (ts)")
    for action in ("UPDATE", "DELETE"):
        conn.execute(
            f"CREATE TRIGGER entries_no_{action.lower()} BEFORE {action} ON entries "
            "BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END"
        )


# Target version -> function that upgrades a file from the version before it. Each runs in the same
# transaction as the `user_version` bump, so a failed migration leaves the file at the old version.
# Migrations must not use `executescript` (it commits).
def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Controller HA: the entries this member copied from the other members (through etcd), by their etcd
    key, so each is stored once however often the watch replays it."""
    conn.execute("CREATE TABLE replicas (key TEXT PRIMARY KEY, revision INTEGER NOT NULL, entry_id INTEGER NOT NULL)")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1, 2: _migrate_to_2}
SCHEMA_VERSION = max(MIGRATIONS)


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    target = max(MIGRATIONS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > target:
            raise JournalError(
                f"{path}: journal schema version {version} is newer than this code knows ({target}); "
                "upgrade ccfo before opening it"
            )
        for step in range(version + 1, target + 1):
            MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {int(step)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------- row <-> entry


def _entry_from_row(row: tuple[Any, ...]) -> JournalEntry:
    data = json.loads(row[10])
    if not isinstance(data, dict):
        raise JournalError(f"entry {row[0]}: data is not a JSON object: {row[10][:200]!r}")
    return JournalEntry(id=row[0], ts=row[1], kind=row[2], host=row[3], plan_id=row[4], step=row[5],
                        actor=row[6], reason=row[7], status=row[8], duration_s=row[9], data=data)


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(f"journal kind must match ^[a-z][a-z0-9_]{{0,63}}$, got {kind!r}")
    return str(kind)


def _check_optional(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ValueError(f"journal {name} must be {getattr(kind, '__name__', kind)} or None, got {value!r}")


def _encode_data(data: Mapping[str, Any] | None) -> str:
    if data is None:
        return "{}"
    if not isinstance(data, Mapping):
        raise ValueError(f"journal data must be a mapping, got {type(data).__name__}")
    try:
        return json.dumps(dict(data), sort_keys=True, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"journal data is not JSON-serialisable: {exc}") from exc


def _check_id(name: str, value: int | None) -> None:
    """Ids are SQLite integers: a larger Python int would raise OverflowError out of sqlite3, not an answer."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise ValueError(f"journal {name} must fit in 64 bits, got {value!r}")


def _where(kinds: str | Iterable[str] | None, host: str | None, plan_id: str | None, since: float | None,
           until: float | None, after_id: int | None, before_id: int | None) -> tuple[str, list[Any]]:
    """SQL filter for the query parameters (`since` inclusive, `until` and both ids exclusive)."""
    _check_id("after_id", after_id)
    _check_id("before_id", before_id)
    clauses: list[str] = []
    params: list[Any] = []
    if kinds is not None:
        wanted = [kinds] if isinstance(kinds, str) else list(kinds)
        if not wanted:
            return " WHERE 0", []
        clauses.append(f"kind IN ({', '.join('?' * len(wanted))})")
        params.extend(str(k) for k in wanted)
    for clause, value in (("host = ?", host), ("plan_id = ?", plan_id), ("ts >= ?", since),
                          ("ts < ?", until), ("id > ?", after_id), ("id < ?", before_id)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# --------------------------------------------------------------------------- the store


class Journal:
    """A journal file: one connection, guarded by a lock, usable from any thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open journal: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode not in ("wal", "memory"):
                raise JournalError(f"{self.path}: cannot switch the journal to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, self.path)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"{self.path}: cannot open journal: {exc}") from exc
            raise
        self._conn: sqlite3.Connection | None = conn
        # Controller HA (controller/cluster/journalsync.py): told of each entry this member appends, after
        # its commit, from the appending thread; must not block.
        self.on_append: Callable[[JournalEntry], None] | None = None

    # context manager and lifetime ---------------------------------------------------------------

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; idempotent. Any later call raises `JournalError`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def unwritable(self) -> str | None:
        """Why an append would fail now (closed, the file or its directory not writable), or None."""
        if self._conn is None:
            return "the journal is closed"
        for path in (self.path, os.path.dirname(os.path.abspath(self.path))):
            if not os.access(path, os.W_OK):
                return f"{path} is not writable"
        return None

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"{self.path}: journal is closed")
        return self._conn

    # writing -------------------------------------------------------------------------------------

    def append(self, kind: str, *, ts: float | None = None, host: str | None = None,
               plan_id: str | None = None, step: int | None = None, actor: str | None = None,
               reason: str | None = None, status: str | None = None, duration_s: float | None = None,
               data: Mapping[str, Any] | None = None) -> JournalEntry:
        """Write one entry in its own transaction, committed (and synced) before returning it.

        `ts` is the caller's clock (seconds since the epoch); `None` means `time.time()`. Invalid
        arguments raise `ValueError` before anything is written.
        """
        kind = _check_kind(kind)
        when = time.time() if ts is None else ts
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            raise ValueError(f"journal ts must be a finite number, got {ts!r}")
        for name, value in (("host", host), ("plan_id", plan_id), ("actor", actor), ("reason", reason),
                            ("status", status)):
            _check_optional(name, value, str)
        _check_optional("step", step, int)
        _check_optional("duration_s", duration_s, (int, float))
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"journal duration_s must be finite and >= 0, got {duration_s!r}")
        row = (float(when), kind, host, plan_id, step, actor, reason, status,
               None if duration_s is None else float(duration_s), _encode_data(data))
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = conn.execute(
                        "INSERT INTO entries (ts, kind, host, plan_id, step, actor, reason, status, "
                        "duration_s, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                    stored = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?",
                                          (cursor.lastrowid,)).fetchone()
                    entry = _entry_from_row(stored)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"{self.path}: cannot append {kind!r} entry: {exc}") from exc
        if self.on_append is not None:
            self.on_append(entry)
        return entry

    def append_replica(self, key: str, revision: int, entry: Mapping[str, Any]) -> JournalEntry | None:
        """Store an entry another member appended (read from etcd under `key` at `revision`), once: None
        when this key is already stored. Its own id here is this journal's next; `ts` and the rest are the
        original's. Not told to `on_append`."""
        row = (float(entry["ts"]), _check_kind(entry["kind"]), entry.get("host"), entry.get("plan_id"),
               entry.get("step"), entry.get("actor"), entry.get("reason"), entry.get("status"),
               entry.get("duration_s"), _encode_data(entry.get("data") or {}))
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if conn.execute("SELECT 1 FROM replicas WHERE key = ?", (key,)).fetchone():
                        conn.execute("ROLLBACK")
                        return None
                    cursor = conn.execute(
                        "INSERT INTO entries (ts, kind, host, plan_id, step, actor, reason, status, "
                        "duration_s, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                    conn.execute("INSERT INTO replicas (key, revision, entry_id) VALUES (?, ?, ?)",
                                 (key, revision, cursor.lastrowid))
                    stored = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id = ?",
                                          (cursor.lastrowid,)).fetchone()
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise JournalError(f"{self.path}: cannot store the replica {key}: {exc}") from exc
        return _entry_from_row(stored)

    def replicated_revision(self) -> int:
        """The highest etcd revision of an entry copied from another member (0: none yet)."""
        rows = self._read("SELECT COALESCE(MAX(revision), 0) FROM replicas", ())
        return int(rows[0][0])

    # reading -------------------------------------------------------------------------------------

    def _read(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._live()
            try:
                return conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"{self.path}: cannot read journal: {exc}") from exc

    def query(self, *, kinds: str | Iterable[str] | None = None, host: str | None = None,
              plan_id: str | None = None, since: float | None = None, until: float | None = None,
              after_id: int | None = None, before_id: int | None = None, limit: int | None = 100,
              newest_first: bool = True) -> list[JournalEntry]:
        """Entries matching every given filter, ordered by id.

        `since <= ts < until`; `after_id < id < before_id`. Paging: newest first, pass the smallest id
        of a page as `before_id` for the next; oldest first, pass the largest id as `after_id`.
        `limit=None` returns every match.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        _check_id("limit", limit)
        where, params = _where(kinds, host, plan_id, since, until, after_id, before_id)
        sql = f"SELECT {_COLUMNS} FROM entries{where} ORDER BY id {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_entry_from_row(row) for row in self._read(sql, params)]

    def count(self, *, kinds: str | Iterable[str] | None = None, host: str | None = None,
              plan_id: str | None = None, since: float | None = None, until: float | None = None,
              after_id: int | None = None, before_id: int | None = None) -> int:
        """Number of entries matching the same filters as `query`."""
        where, params = _where(kinds, host, plan_id, since, until, after_id, before_id)
        return int(self._read(f"SELECT count(*) FROM entries{where}", params)[0][0])

    def get(self, entry_id: int) -> JournalEntry | None:
        """The entry with this id, or None."""
        _check_id("entry id", entry_id)
        rows = self._read(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (entry_id,))
        return _entry_from_row(rows[0]) if rows else None

    def last_id(self) -> int:
        """Id of the newest entry; 0 for an empty journal (ids start at 1)."""
        return int(self._read("SELECT coalesce(max(id), 0) FROM entries", ())[0][0])

    def schema_version(self) -> int:
        """The file's `PRAGMA user_version`."""
        return int(self._read("PRAGMA user_version", ())[0][0])
