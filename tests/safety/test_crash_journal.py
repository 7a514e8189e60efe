"""Crash consistency of the SQLite journal (controller/journal.py) at every system call, beyond the random
kill moments of tests/test_journal.py::test_entries_are_whole_after_the_writer_is_killed: the writer is
killed before, or sees a failure of, each system call of (a) one append, (b) the close that checkpoints the
write-ahead log into the database file, and (c) creating a new journal file. Afterwards the journal must
open, pass SQLite's integrity check, hold every entry committed before, hold the new entry whole or not at
all (and certainly when `append` returned), and take new entries.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from controller.journal import SCHEMA_VERSION, Journal, JournalEntry
from tests.safety import syscall_faults as sf

BEFORE = 40  # entries committed before the operation under test
CHILD = '''
import os, sys
from controller.journal import Journal, JournalError
path, op = sys.argv[1], sys.argv[2]

def append(journal, n):
    journal.append("step_finished", ts=2000.0 + n, host="ipc-a", plan_id="p-%d" % n, step=n, actor="controller",
                   reason="r" * 3000, status="ok", duration_s=0.5, data={"n": n, "blob": "y" * 6000})

journal = None
if op == "append":
    journal = Journal(path)
elif op == "close":
    journal = Journal(path)
    for n in range(1000, 1010):  # in the write-ahead log only, until close() checkpoints it
        append(journal, n)
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()

def attempt(fn):
    try:
        fn()
        return 0
    except JournalError:
        return 3
    except BaseException:
        return 5

if op == "append":
    first = attempt(lambda: append(journal, 1))
    second = attempt(lambda: append(journal, 2))  # after a failed call, the same connection goes on
elif op == "close":
    first, second = attempt(journal.close), 0
else:
    first = attempt(lambda: Journal(path).close())
    second = 0
os._exit(first * 16 + second)
'''


def expected(n: int) -> dict:
    return {"kind": "step_finished", "ts": 2000.0 + n, "host": "ipc-a", "plan_id": f"p-{n}", "step": n,
            "actor": "controller", "reason": "r" * 3000, "status": "ok", "duration_s": 0.5,
            "data": {"n": n, "blob": "y" * 6000}}


def fields(e: JournalEntry) -> dict:
    return {"kind": e.kind, "ts": e.ts, "host": e.host, "plan_id": e.plan_id, "step": e.step, "actor": e.actor,
            "reason": e.reason, "status": e.status, "duration_s": e.duration_s, "data": e.data}


def seeded(path: Path, template: Path) -> Path:
    """A copy of the seeded template (closed cleanly: no write-ahead log beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        with Journal(template) as journal:
            for i in range(BEFORE):
                journal.append("note", ts=float(i), reason=f"before {i}", data={"i": i})
    shutil.copyfile(template, path)
    return path


def reopened(path: Path, where: str) -> list[JournalEntry]:
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok", where
    with Journal(path) as journal:
        assert journal.schema_version() == SCHEMA_VERSION, where
        entries = journal.query(limit=None, newest_first=False)
        assert journal.append("note", ts=9.0).id == len(entries) + 1, f"{where}: not writable afterwards"
    return entries


def check_before(entries: list[JournalEntry], where: str) -> None:
    assert [e.id for e in entries[:BEFORE]] == list(range(1, BEFORE + 1)), where
    assert all(e.kind == "note" and e.data == {"i": e.id - 1} for e in entries[:BEFORE]), where


def sweep(tmp_path: Path, op: str, mode: str) -> list[str]:
    template = tmp_path / "template" / "j.sqlite"

    def fresh(d: Path) -> Path:
        if op != "create":
            return seeded(d / "j.sqlite", template)
        d.mkdir(parents=True)
        return d / "j.sqlite"

    calib = fresh(tmp_path / "calibration")
    code, calls = sf.calibrate(CHILD, [str(calib), op])
    assert code == 0 and any(c.name == "fdatasync" for c in calls), calls

    def work(mode: str, call: sf.Call) -> str:
        d = tmp_path / f"{mode}-{call.name}-{call.k}"
        path = fresh(d)
        action = "signal=KILL" if mode == "kill" else f"error={sf.errno_for(call.name)}"
        code = sf.run(CHILD, [str(path), op], inject=f"{call.name}:{action}:when={call.k}")
        where = f"{mode} at {call} (exit {code})"
        if mode == "kill":
            assert code == sf.KILLED, where
        else:
            assert code >= 0 and code // 16 in (0, 3) and code % 16 in (0, 3), f"{where}: not a JournalError"
        first, second = (code // 16, code % 16) if code >= 0 else (None, None)
        entries = reopened(path, where)
        if op == "create":
            assert entries == [], where
            return f"{call.name}#{call.k}:{code}:0"
        check_before(entries, where)
        rest = [fields(e) for e in entries[BEFORE:]]
        if op == "close":  # everything was committed before close(): a crash in the checkpoint loses nothing
            assert rest == [expected(n) for n in range(1000, 1010)], where
        elif mode == "kill":
            assert rest in ([], [expected(1)], [expected(1), expected(2)]), where
        else:
            assert 0 in (first, second), f"{where}: the connection did not recover from one failed call"
            # whole rows, in order; every append that returned is there (one that raised may or may not be:
            # a failed sync says nothing about whether the bytes reached the disk)
            assert rest in ([expected(1)], [expected(2)], [expected(1), expected(2)]), where
            for n, result in ((1, first), (2, second)):
                assert result != 0 or expected(n) in rest, f"{where}: append {n} returned but its entry is gone"
        return f"{call.name}#{call.k}:{code}:{len(rest)}"

    outcomes = sf.sweep(((mode, c) for c in calls), work)
    assert len(outcomes) == len(calls)
    return [str(o) for o in outcomes]


@pytest.mark.parametrize("mode", ["kill", "error"])
def test_every_system_call_of_an_append(tmp_path: Path, mode: str) -> None:
    outcomes = sweep(tmp_path, "append", mode)
    if mode == "error":  # a failed write or sync is reported to the caller as JournalError
        assert any(f":{3 * 16}:" in o for o in outcomes), outcomes


@pytest.mark.parametrize("mode", ["kill", pytest.param("error", marks=pytest.mark.slow)])
def test_every_system_call_of_the_checkpoint_at_close(tmp_path: Path, mode: str) -> None:
    sweep(tmp_path, "close", mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["kill", "error"])
def test_every_system_call_of_creating_a_journal(tmp_path: Path, mode: str) -> None:
    sweep(tmp_path, "create", mode)
