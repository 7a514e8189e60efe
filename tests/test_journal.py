"""Tests of the SQLite journal on real files: API, append-only enforcement, schema versions, crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import controller.journal as journal_module
from controller.journal import SCHEMA_VERSION, EntryKind, Journal, JournalEntry, JournalError
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Journal(tmp_path / "journal.sqlite") as j:
        yield j


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# --------------------------------------------------------------------------- append / query


def test_append_returns_the_stored_entry(journal: Journal) -> None:
    entry = journal.append(EntryKind.STEP_FINISHED, ts=1000.5, host="pbx-a", plan_id="p-1", step=3,
                           actor="controller", reason="span red", status="ok", duration_s=2.25,
                           data={"output": "done", "nested": {"n": [1, 2]}, "tuple": (1, 2)})
    assert entry == JournalEntry(id=1, ts=1000.5, kind="step_finished", host="pbx-a", plan_id="p-1", step=3,
                                 actor="controller", reason="span red", status="ok", duration_s=2.25,
                                 data={"output": "done", "nested": {"n": [1, 2]}, "tuple": [1, 2]})
    assert journal.get(1) == entry
    assert journal.get(2) is None
    assert journal.last_id() == 1


def test_empty_journal(journal: Journal) -> None:
    assert journal.last_id() == 0
    assert journal.count() == 0
    assert journal.query() == []
    assert journal.schema_version() == SCHEMA_VERSION


def test_ts_defaults_to_the_wall_clock_only_when_omitted(journal: Journal) -> None:
    before = time.time()
    entry = journal.append("note")
    assert before <= entry.ts <= time.time()
    assert journal.append("note", ts=0.0).ts == 0.0
    assert entry.data == {}


def test_filters_and_paging(journal: Journal) -> None:
    for i in range(30):
        journal.append("plan_started" if i % 3 == 0 else "step_finished", ts=100.0 + i,
                       host=f"h{i % 2}", plan_id=f"p{i // 10}", step=i, data={"i": i})
    assert journal.count() == 30
    assert [e.id for e in journal.query(limit=3)] == [30, 29, 28]
    assert [e.id for e in journal.query(limit=3, newest_first=False)] == [1, 2, 3]
    assert journal.count(kinds=["plan_started"]) == 10
    assert journal.count(kinds="plan_started") == 10
    assert journal.count(kinds=["plan_started", "step_finished"]) == 30
    assert journal.count(kinds=[]) == 0
    assert journal.count(host="h1") == 15
    assert journal.count(plan_id="p2", host="h0") == 5
    assert {e.data["i"] for e in journal.query(since=110.0, until=113.0)} == {10, 11, 12}
    assert journal.count(after_id=25) == 5
    assert journal.query(limit=None, kinds=[EntryKind.PLAN_STARTED], plan_id="p1")[0].step == 18

    pages, before = [], None
    while page := journal.query(limit=7, before_id=before):
        pages.append([e.id for e in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert [i for page_ids in pages for i in page_ids] == list(range(30, 0, -1))

    forward, after = [], 0
    while page := journal.query(limit=8, after_id=after, newest_first=False, kinds=["step_finished"]):
        forward.extend(e.data["i"] for e in page)
        after = page[-1].id
    assert forward == [i for i in range(30) if i % 3]


def test_any_well_formed_kind_is_accepted_and_others_refused(journal: Journal) -> None:
    assert journal.append("capacity_alarm_2", ts=1.0).kind == "capacity_alarm_2"
    assert journal.append("a" * 64, ts=1.0).kind == "a" * 64
    for bad in ["", "Fault", "1st", "with-dash", "a" * 65, "note\n", " note", None, 7]:
        with pytest.raises(ValueError, match="kind"):
            journal.append(bad, ts=1.0)  # type: ignore[arg-type]
    assert journal.count() == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ts": float("nan")}, "ts"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 1.0, "step": "3"}, "step"),
        ({"ts": 1.0, "step": True}, "step"),
        ({"ts": 1.0, "host": 5}, "host"),
        ({"ts": 1.0, "duration_s": -1.0}, "duration_s"),
        ({"ts": 1.0, "duration_s": float("inf")}, "duration_s"),
        ({"ts": 1.0, "data": [1, 2]}, "mapping"),
        ({"ts": 1.0, "data": {"x": object()}}, "JSON"),
        ({"ts": 1.0, "data": {"x": float("nan")}}, "JSON"),
    ],
)
def test_invalid_arguments_write_nothing(journal: Journal, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        journal.append("note", **kwargs)
    assert journal.count() == 0
    assert journal.append("note", ts=1.0).id == 1


def test_failure_inside_the_transaction_leaves_no_partial_row(journal: Journal,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The INSERT has run when reading the row back fails: the whole transaction must roll back."""
    journal.append("note", ts=1.0)

    def explode(row: tuple) -> JournalEntry:
        raise RuntimeError("simulated failure after INSERT")

    monkeypatch.setattr(journal_module, "_entry_from_row", explode)
    with pytest.raises(RuntimeError, match="simulated"):
        journal.append("note", ts=2.0, data={"half": "written"})
    monkeypatch.undo()
    assert journal.count() == 1
    assert journal.append("note", ts=3.0).id == 2  # the rolled-back id is not burnt either
    with raw(Path(journal.path)) as conn:
        assert conn.execute("SELECT count(*) FROM entries WHERE data LIKE '%half%'").fetchone()[0] == 0


def test_concurrent_appends_from_threads(journal: Journal) -> None:
    def writer(n: int) -> None:
        for i in range(25):
            journal.append("note", ts=float(i), actor=f"t{n}", data={"i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [e.id for e in journal.query(limit=None, newest_first=False)] == list(range(1, 101))
    for n in range(4):
        assert [e.data["i"] for e in journal.query(limit=None, newest_first=False, kinds=None)
                if e.actor == f"t{n}"] == list(range(25))


def test_closed_journal_refuses_calls(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.close()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append("note", ts=1.0)
    with pytest.raises(JournalError, match="closed"):
        j.count()


# --------------------------------------------------------------------------- append-only, files, schema


def test_database_refuses_update_and_delete(journal: Journal) -> None:
    journal.append("note", ts=1.0, reason="original")
    with raw(Path(journal.path)) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE entries SET reason = 'rewritten'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM entries")
    assert journal.get(1).reason == "original"  # type: ignore[union-attr]
    assert journal.count() == 1


def test_reopening_keeps_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        written = [j.append("decision", ts=float(i), data={"i": i}) for i in range(10)]
    with Journal(path) as j:
        assert j.query(limit=None, newest_first=False) == written
        assert j.append("note", ts=11.0).id == 11
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).close()
    with raw(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(JournalError, match=f"version {SCHEMA_VERSION + 1} is newer"):
        Journal(path)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="cannot open"):
        Journal(path)


def test_migration_table_upgrades_and_a_failed_migration_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.append("note", ts=1.0)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    monkeypatch.setitem(journal_module.MIGRATIONS, SCHEMA_VERSION + 1, broken)
    with pytest.raises(RuntimeError, match="migration bug"):
        Journal(path)
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0

    def add_index(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE INDEX entries_actor ON entries (actor)")

    monkeypatch.setitem(journal_module.MIGRATIONS, SCHEMA_VERSION + 1, add_index)
    with Journal(path) as j:
        assert j.schema_version() == SCHEMA_VERSION + 1
        assert j.count() == 1


# --------------------------------------------------------------------------- crash safety

# Shared by the writer child and the checker: what entry `seq` of writer round `rnd` holds.
FIELDS_SOURCE = '''
import hashlib, json

KINDS = ["step_started", "step_finished", "note", "operator_action", "later_feature_kind"]

def fields(rnd, seq):
    return {
        "kind": KINDS[seq % len(KINDS)],
        "ts": 1.7e9 + rnd * 1000 + seq * 0.125,
        "host": "pbx-%d" % (seq % 3) if seq % 2 else None,
        "plan_id": "plan-%d-%d" % (rnd, seq // 4),
        "step": seq % 7 if seq % 3 else None,
        "actor": "operator é" if seq % 5 == 0 else "controller",
        "reason": "why " * (seq % 6) or None,
        "status": ["ok", "failed", None][seq % 3],
        "duration_s": seq * 0.5 if seq % 2 else None,
        "payload": {"blob": "x" * (40 * (seq % 50)), "n": list(range(seq % 10))},
    }

def checksum(rnd, seq, f):
    return hashlib.sha256(json.dumps([rnd, seq, f], sort_keys=True).encode()).hexdigest()
'''

WRITER_SOURCE = FIELDS_SOURCE + '''
import sys
from controller.journal import Journal

path, rnd = sys.argv[1], int(sys.argv[2])
with Journal(path) as journal:
    seq = 0
    while True:
        f = fields(rnd, seq)
        columns = {k: v for k, v in f.items() if k not in ("kind", "payload")}
        journal.append(f["kind"], **columns,
                       data={"round": rnd, "seq": seq, "payload": f["payload"], "sum": checksum(rnd, seq, f)})
        seq += 1
'''

_shared: dict = {}
exec(FIELDS_SOURCE, _shared)  # the checker uses the very functions the writer ran


def _row_fields(entry: JournalEntry) -> dict:
    return {"kind": entry.kind, "ts": entry.ts, "host": entry.host, "plan_id": entry.plan_id,
            "step": entry.step, "actor": entry.actor, "reason": entry.reason, "status": entry.status,
            "duration_s": entry.duration_s, "payload": entry.data["payload"]}


def _run_and_kill(path: Path, rnd: int, reader: Journal, target: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", WRITER_SOURCE, str(path), str(rnd)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: reader.count() >= target or child.poll() is not None, timeout=20,
                   describe=lambda: f"{reader.count()} rows, wanted {target}")
        assert child.poll() is None, f"writer died by itself: {child.stderr.read()!r}"  # type: ignore[union-attr]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL


def test_entries_are_whole_after_the_writer_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    rng = random.Random(20240611)
    Journal(path).close()
    rounds = 20
    with Journal(path) as reader:
        for rnd in range(rounds):
            committed = reader.count()
            _run_and_kill(path, rnd, reader, target=committed + rng.randint(1, 25))
    with Journal(path) as journal:
        entries = journal.query(limit=None, newest_first=False)
        assert journal.append("note", ts=1.0).id == len(entries) + 1  # still writable
    assert len(entries) >= rounds
    assert [e.id for e in entries] == list(range(1, len(entries) + 1))
    seqs: dict[int, list[int]] = {}
    for entry in entries:
        rnd, seq = entry.data["round"], entry.data["seq"]
        assert _row_fields(entry) == _shared["fields"](rnd, seq), entry
        assert entry.data["sum"] == _shared["checksum"](rnd, seq, _row_fields(entry)), entry
        seqs.setdefault(rnd, []).append(seq)
    assert sorted(seqs) == list(range(rounds))
    assert all(s == list(range(len(s))) for s in seqs.values())  # nothing committed was lost
    json.dumps([e.data for e in entries])  # every data column decodes and re-encodes


def test_a_replica_from_another_member_is_stored_once_with_its_original_fields(tmp_path: Path) -> None:
    """Controller HA (controller/cluster/journalsync.py): another member's entry read from etcd."""
    told: list[JournalEntry] = []
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.on_append = told.append
        own = journal.append("note", ts=5.0, reason="mine")
        original = {"id": 41, "ts": 3.5, "kind": "plan_started", "host": None, "plan_id": "p1", "step": None,
                    "actor": "olga", "reason": "by hand", "status": None, "duration_s": None, "data": {"a": 1}}
        got = journal.append_replica("/ccfo/s/journal/ctl-a/000000000041", 17, original)
        assert got is not None and (got.id, got.ts, got.kind, got.plan_id, got.actor, got.data) == (
            own.id + 1, 3.5, "plan_started", "p1", "olga", {"a": 1})
        assert journal.append_replica("/ccfo/s/journal/ctl-a/000000000041", 17, original) is None
        assert journal.replicated_revision() == 17 and journal.count() == 2
        assert told == [own], "a replica is not published again"
        with pytest.raises(ValueError, match="journal kind must match"):  # logged and skipped by the sync
            journal.append_replica("/ccfo/s/journal/ctl-a/000000000042", 18, {**original, "kind": "Bad Kind"})
