"""The fault campaign's independent checker: the invariants, judged from what the lab really does.

It never asks the controller. It reads the lab's process table (the stand-in daemons' pid files and
/proc), the lab AMI servers' own state (their HTTP control API: calls, spans, driver) and the
controller's SQLite files opened read-only (`mode=ro`). The invariant functions at the top are pure
(observations in, violation sentences out) so they are unit-tested on synthetic observations; the
`Checker` below gathers the observations, counts every check it makes and keeps every violation.

Invariants:
* split brain: CTI or IVR never active on two hosts at once (process table, sampled every 20 ms);
* capacity: on every host the AMI server's calls satisfy X + 2Y <= C (C: channels of healthy spans),
  and no agent transfer is admitted (FastAGI `CCFO_ADMIT=yes`, not a fail-open fallback) when
  X + 2Y + 1 > C on an unchanged host whose agent saw the same X, Y and C;
* journal: every entry written before a controller kill is still there, byte-identical, after it;
* plans: every started plan ends finished, failed or interrupted (never silently lost), the journal and
  the plan store agree on how each plan ended, nothing is left running, interrupted or proposed once
  the run is repaired;
* one plan at a time: never two plans running at once, read from the journal (a plan runs from its
  `plan_started` or `plan_resumed` to its `plan_finished`, `plan_failed`, `plan_interrupted` or
  `plan_aborted`), bursts of simultaneous operator requests included;
* repair: after the faults clear and the operator fails back, the site is normal (checked by the runner
  through `normal_violations`);
* hangs: every hang (SIGSTOP) of a critical service on the active host (where CTI/IVR run, per the process
  table) is journaled as `HOST:service:NAME=hung` within `interval_s x failures + 1 s`, and handled: a
  decision names it, or it clears (the plan killed it), within `HANDLE_S` of being seen, or of the end of
  the plan the controller was busy with. Hangs the run itself disturbed (the controller or the host's
  agent killed, restarted or frozen around it, a plan already running, the service already hung) are
  counted as not judged (`hang_verdict`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CRITICAL = ("cti", "ivr")
Row = tuple[Any, ...]

# --------------------------------------------------------------------------- pure invariant functions


def split_brain(critical: Sequence[str]) -> str | None:
    """`critical`: the hosts where CTI or IVR runs now."""
    return f"CTI/IVR active on {len(critical)} hosts at once: {', '.join(critical)}" if len(critical) > 1 else None


def healthy_channels(ami: Mapping[str, Any]) -> int:
    """C from a lab AMI snapshot: bearer channels of spans that are healthy (driver up, no alarm, D up)."""
    return sum(int(s["bearer"]) for s in ami.get("spans", ()) if s.get("healthy"))


def capacity_violation(host: str, ami: Mapping[str, Any]) -> str | None:
    """X + 2Y <= C on one host, from its AMI server's own call list."""
    counts = ami.get("counts", {})
    x, y, c = int(counts.get("ivr", 0)), int(counts.get("agent", 0)), healthy_channels(ami)
    if x + 2 * y > c:
        return f"{host}: X + 2Y = {x} + 2*{y} = {x + 2 * y} > C = {c}"
    return None


@dataclass(frozen=True, slots=True)
class Load:
    """X, Y and C as one observer saw them."""

    x: int
    y: int
    c: int

    @classmethod
    def from_ami(cls, ami: Mapping[str, Any]) -> Load:
        counts = ami.get("counts", {})
        return cls(int(counts.get("ivr", 0)), int(counts.get("agent", 0)), healthy_channels(ami))

    @classmethod
    def from_agent(cls, report: Mapping[str, Any]) -> Load | None:
        calls, chans = report.get("calls"), report.get("channels")
        if not calls or not chans:
            return None
        return cls(int(calls.get("ivr", 0)), int(calls.get("agent", 0)), int(chans.get("available", 0)))


def admission_violation(host: str, before: Load, after: Load, agent: Load | None, admitted: bool,
                        fallback: bool) -> tuple[bool, str | None]:
    """Judge one FastAGI answer to `admit?kind=agent`: (judged, violation).

    Judged only when it can be judged fairly: the AMI server's X, Y, C did not change while the agent
    decided, and the agent's own view was the same figures (so a late AMI event is not blamed on the
    admission rule). A fail-open fallback (AMI link down) is policy, not a capacity decision.
    """
    if fallback or before != after or agent != before:
        return False, None
    if admitted and before.x + 2 * before.y + 1 > before.c:
        return True, (f"{host}: agent transfer admitted with X + 2Y = {before.x} + 2*{before.y}, "
                      f"+1 > C = {before.c}")
    return True, None


def journal_violations(before: Sequence[Row], after: Sequence[Row]) -> list[str]:
    """Every row of `before` (read just before a controller kill) is in `after`, identical."""
    out: list[str] = []
    by_id = {row[0]: row for row in after}
    for row in before:
        now = by_id.get(row[0])
        if now is None:
            out.append(f"journal entry {row[0]} ({row[2]}) written before the kill is gone")
        elif now != row:
            out.append(f"journal entry {row[0]} ({row[2]}) changed across the kill: {row!r} -> {now!r}")
    return out


# journal kind -> the store status it leaves a plan in (plan_rejected: rejected, or superseded per status)
_LIFECYCLE = {"plan_proposed": "proposed", "plan_approved": "running", "plan_started": "running",
              "plan_resumed": "running", "plan_finished": "finished", "plan_failed": "failed",
              "plan_interrupted": "interrupted", "plan_aborted": "aborted", "plan_rejected": "rejected"}
OPEN = ("running", "interrupted", "proposed")


def journal_plan_status(entries: Iterable[tuple[str, str | None]]) -> str | None:
    """The status the journal says a plan is in: entries are (kind, status) of its lifecycle rows."""
    status = None
    for kind, entry_status in entries:
        if kind in _LIFECYCLE:
            status = _LIFECYCLE[kind]
            if kind == "plan_rejected" and entry_status == "superseded":
                status = "superseded"
    return status


def plan_violations(entries: Sequence[tuple[str, str, str | None]], store: Mapping[str, str],
                    settled: bool) -> list[str]:
    """Plans judged from the journal's lifecycle rows `(plan_id, kind, status)` in id order and the
    plan store's `{plan_id: status}`. `settled`: the run is repaired, nothing may be open any more."""
    out: list[str] = []
    per_plan: dict[str, list[tuple[str, str | None]]] = {}
    for plan_id, kind, status in entries:
        if kind in _LIFECYCLE:
            per_plan.setdefault(plan_id, []).append((kind, status))
    for plan_id in sorted(set(per_plan) | set(store)):
        journal = journal_plan_status(per_plan.get(plan_id, ()))
        stored = store.get(plan_id)
        if journal is None:
            out.append(f"plan {plan_id} is {stored} in the store but the journal never mentions it")
        elif stored is None:
            out.append(f"plan {plan_id} is {journal} per the journal but missing from the store")
        elif journal != stored:
            out.append(f"plan {plan_id}: the store says {stored}, the journal's last word is {journal}")
        if settled and stored in OPEN:
            out.append(f"plan {plan_id} is still {stored} after the repair")
    return out


_STARTS = ("plan_started", "plan_resumed")
_ENDS = ("plan_finished", "plan_failed", "plan_interrupted", "plan_aborted")


def concurrent_plans(entries: Iterable[tuple[int, str, str | None]]) -> tuple[int, list[str]]:
    """Never two plans running: `entries` are (entry id, kind, plan id) in id order. Returns how many
    starts were judged and a sentence for every start while another plan ran."""
    running: dict[str, int] = {}
    judged, out = 0, []
    for entry_id, kind, plan_id in entries:
        if not plan_id:
            continue
        if kind in _STARTS:
            judged += 1
            others = sorted(p for p in running if p != plan_id)
            if others:
                out.append(f"journal entry {entry_id}: plan {plan_id} started while plan {', '.join(others)} "
                           f"ran (started at entry {', '.join(str(running[p]) for p in others)})")
            running[plan_id] = entry_id
        elif kind in _ENDS:
            running.pop(plan_id, None)
    return judged, out


def normal_violations(status: Mapping[str, Any] | None, critical: Sequence[str], primary: str) -> list[str]:
    """After repair and failback: state normal, no faults, the primary active, CTI/IVR only there."""
    if status is None:
        return ["the controller does not answer"]
    out = []
    if status.get("state") != "normal":
        out.append(f"state is {status.get('state')!r}, not normal")
    if status.get("faults"):
        out.append(f"faults remain: {[f.get('fault') for f in status['faults']]}")
    if status.get("active_host") != primary:
        out.append(f"active host is {status.get('active_host')!r}, not {primary}")
    if list(critical) != [primary]:
        out.append(f"CTI/IVR run on {list(critical)}, not only on {primary}")
    return out


HANDLE_S = 5.0  # after a hang is seen: time for the decision that names it (debounce 0.5 s + a cycle)
_PLAN_OPEN = ("plan_started", "plan_resumed", "plan_approved")
_PLAN_END = ("plan_finished", "plan_failed", "plan_interrupted", "plan_aborted")


@dataclass(frozen=True, slots=True)
class Hang:
    """One SIGSTOP the campaign sent: `at` is Unix time, `deadline_s` the probe's interval x failures + 1 s."""

    host: str
    service: str
    at: float
    deadline_s: float
    excuse: str | None = None  # why it cannot be judged fairly (known when it was injected or just after)

    @property
    def fault(self) -> str:
        return f"{self.host}:service:{self.service}=hung"


def _names(row: Row, fault: str) -> bool:
    kind, reason, data = row[2], row[7], row[10]
    if kind == "decision":
        return fault in str(reason or "") or fault in str(data or "")
    return kind == "fault_cleared" and reason == fault


def hang_verdict(hang: Hang, rows: Sequence[Row], now: float) -> tuple[str, str | None]:
    """Judge one hang from the journal's rows: (outcome, violation). Outcomes: `pending` (judge later),
    `not judged: WHY`, `handled`. Pure: `now` is the time the rows were read."""
    if hang.excuse:
        return f"not judged: {hang.excuse}", None
    before = [r for r in rows if r[1] < hang.at]
    open_plans = {r[4] for r in before if r[2] in _PLAN_OPEN} - {r[4] for r in before if r[2] in _PLAN_END}
    if open_plans:
        return "not judged: a plan was running when it hung", None
    seen = next((r for r in rows if r[2] == "fault_seen" and r[7] == hang.fault and r[1] >= hang.at - 0.05), None)
    if seen is None or seen[1] - hang.at > hang.deadline_s:
        if seen is None and now < hang.at + hang.deadline_s:
            return "pending", None
        late = f" (seen after {seen[1] - hang.at:.2f} s)" if seen else ""
        return "late", f"{hang.fault} not detected within {hang.deadline_s:g} s of the SIGSTOP{late}"
    limit = seen[1] + HANDLE_S
    # The engine does not decide while a plan runs (its own stops look like faults): a plan started between
    # the SIGSTOP and the sighting (an operator's approval, say) keeps it busy from the start, like one
    # started after it.
    upto = [r for r in rows if r[1] < seen[1]]
    busy: set[Any] = {r[4] for r in upto if r[2] in _PLAN_OPEN} - {r[4] for r in upto if r[2] in _PLAN_END}
    for row in rows:
        if row[1] < seen[1]:
            continue
        if row[1] > limit and not busy:
            break
        if row[2] in _PLAN_OPEN:
            busy.add(row[4])
        elif row[2] in _PLAN_END:
            busy.discard(row[4])
            limit = max(limit, row[1] + HANDLE_S)
        if _names(row, hang.fault):
            return "handled", None
    if busy or now <= limit:
        return "pending", None
    return "unhandled", (f"{hang.fault} seen {seen[1] - hang.at:.2f} s after the SIGSTOP but no decision named it "
                         f"within {HANDLE_S:g} s")


# --------------------------------------------------------------------------- observations


def running(run_dir: Path, service: str) -> bool:
    """Is the stand-in daemon alive (a stopped, i.e. hung, process counts as alive; a zombie does not)?"""
    try:
        pid = int((run_dir / f"{service}.pid").read_text().strip())
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def critical_hosts(run_dirs: Mapping[str, Path]) -> list[str]:
    return [h for h, d in run_dirs.items() if any(running(d, s) for s in CRITICAL)]


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)


def read_journal(path: Path, after_id: int = 0) -> list[Row]:
    """The journal's rows with id > after_id, as stored (read-only connection)."""
    with contextlib.closing(_ro(path)) as conn:
        return conn.execute("SELECT id, ts, kind, host, plan_id, step, actor, reason, status, duration_s, data "
                            "FROM entries WHERE id > ? ORDER BY id", (after_id,)).fetchall()


def read_plans(path: Path) -> dict[str, str]:
    """The plan store's {plan_id: status} (read-only connection)."""
    with contextlib.closing(_ro(path)) as conn:
        return dict(conn.execute("SELECT id, status FROM plans").fetchall())


# --------------------------------------------------------------------------- the checker


@dataclass
class Checker:
    """Counts every invariant check and keeps every violation (with the run it happened in)."""

    run_dirs: Mapping[str, Path]
    journal_path: Path
    store_path: Path
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[dict[str, Any]] = field(default_factory=list)
    run: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: set[str] = field(default_factory=set)
    # a controller cluster: the journal and the plan records as etcd holds them (lab.campaign_cluster
    # EtcdView), instead of the one controller's SQLite files
    journal_reader: Callable[[int], list[Row]] | None = None
    plans_reader: Callable[[], dict[str, str]] | None = None

    def rows(self, after_id: int = 0) -> list[Row]:
        """The journal's rows after `after_id` (an etcd revision with a cluster), in the site's order."""
        if self.journal_reader is not None:
            return self.journal_reader(after_id)
        return read_journal(self.journal_path, after_id)

    def plan_statuses(self) -> dict[str, str]:
        return self.plans_reader() if self.plans_reader is not None else read_plans(self.store_path)

    def last_id(self) -> int:
        rows = self.rows()
        return int(rows[-1][0]) if rows else 0

    def violation(self, invariant: str, text: str) -> None:
        with self._lock:
            if invariant == "plans":  # judged over the whole store each time: report each problem once
                if text in self._seen:
                    return
                self._seen.add(text)
            self.violations.append({"run": self.run, "invariant": invariant, "text": text, "at": time.time()})

    def count(self, invariant: str, n: int = 1) -> None:
        with self._lock:
            self.checks[invariant] += n

    # split brain, on its own thread so a busy event loop never thins the samples
    def start(self, interval_s: float = 0.02) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), name="campaign-split-brain",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sample(self, interval_s: float) -> None:
        last: str | None = None
        while not self._stop.wait(interval_s):
            bad = split_brain(critical_hosts(self.run_dirs))
            self.count("split_brain")
            if bad and bad != last:
                self.violation("split_brain", bad)
            last = bad

    def ami(self, host: str, snapshot: Mapping[str, Any]) -> None:
        self.count("capacity")
        bad = capacity_violation(host, snapshot)
        if bad:
            self.violation("capacity", bad)

    def admission(self, host: str, before: Load, after: Load, agent: Load | None, admitted: bool,
                  fallback: bool) -> None:
        judged, bad = admission_violation(host, before, after, agent, admitted, fallback)
        if judged:
            self.count("admission")
        if bad:
            self.violation("admission", bad)

    def journal_before_kill(self) -> list[Row]:
        return read_journal(self.journal_path)

    def journal_after_restart(self, before: Sequence[Row]) -> None:
        after = read_journal(self.journal_path)
        self.count("journal", len(before))
        for bad in journal_violations(before, after):
            self.violation("journal", bad)

    def one_plan_at_a_time(self, since_id: int = 0) -> None:
        """Never two plans running, from the journal's rows after `since_id` (nothing runs at a run's
        start: the previous run's repair settled every plan)."""
        judged, bad = concurrent_plans((r[0], r[2], r[4]) for r in self.rows(since_id))
        self.count("one_plan", judged)
        for text in bad:
            self.violation("one_plan", text)

    def hangs(self, hangs: Sequence[Hang], wait_s: float = 60.0) -> list[str]:
        """Judge the run's hangs from the journal, waiting (up to `wait_s`) for those still pending;
        returns one outcome per hang."""
        deadline = time.time() + wait_s
        while True:
            now = time.time()
            rows = self.rows()
            verdicts = [hang_verdict(h, rows, now) for h in hangs]
            if all(v[0] != "pending" for v in verdicts) or now >= deadline:
                break
            time.sleep(0.2)
        out = []
        for hang, (outcome, bad) in zip(hangs, verdicts, strict=True):
            if outcome == "pending":
                outcome, bad = "unhandled", f"{hang.fault}: still undecided {wait_s:g} s after the SIGSTOP"
            if not outcome.startswith("not judged"):
                self.count("hang")
            if bad:
                self.violation("hang", bad)
            out.append(f"{hang.fault}: {outcome}")
        return out

    def plans(self, settled: bool, since_id: int = 0) -> int:
        """Check the plans; returns how many plans the journal shows started since `since_id`."""
        rows = self.rows()
        entries = [(r[4], r[2], r[8]) for r in rows if r[4]]
        store = self.plan_statuses()
        if self.journal_reader is not None:  # etcd keeps each member's last entries only: the plans it still
            named = {e[0] for e in entries}  # mentions, and every open one
            store = {k: v for k, v in store.items() if k in named or v in OPEN}
        self.count("plans", len(store))
        for bad in plan_violations(entries, store, settled):
            self.violation("plans", bad)
        return len({r[4] for r in rows if r[0] > since_id and r[2] == "plan_started"})
