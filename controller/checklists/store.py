"""The journal is the checklists' store: every run event is one `checklist_event` journal entry.

The mapping between a run event and a journal row lives here and nowhere else: `status` holds the event
kind, `actor` who, `reason` the note or reason, `duration_s` a finished step's real duration, `data`
the run id, step, phase, outcome and the event's own data (plus a `text` sentence for `ccfo journal`).
`replay` folds the entries back into runs; an entry that does not fit is reported and skipped, never
fatal, so one damaged row cannot stop the controller. Not async: callers use asyncio.to_thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from controller.checklists.machine import RunState
from controller.checklists.model import Event, EventKind, InvalidEvent, describe
from controller.journal import EntryKind, Journal, JournalEntry

log = logging.getLogger("ccfo.checklists")
KIND = EntryKind.CHECKLIST_EVENT.value


def to_row(e: Event, duration_s: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"run": e.run, "event": e.kind.value, "text": describe(e)}
    for key in ("step", "phase", "outcome"):
        if getattr(e, key) is not None:
            data[key] = getattr(e, key)
    if e.data:
        data["data"] = dict(e.data)
    return {"ts": e.at, "actor": e.actor, "reason": e.note, "status": e.kind.value, "duration_s": duration_s,
            "data": data}


def from_row(entry: JournalEntry) -> Event:
    d = entry.data
    try:
        return Event(str(d["run"]), EventKind(d["event"]), entry.ts, entry.actor or "?", d.get("step"), d.get("phase"),
                     entry.reason, d.get("outcome"), d.get("data") or {})
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidEvent(f"journal entry {entry.id}: not a checklist event: {exc}") from exc


class ChecklistJournal:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def append(self, e: Event, duration_s: float | None = None) -> JournalEntry:
        return self.journal.append(KIND, **to_row(e, duration_s))

    def events(self) -> list[Event]:
        """Every checklist event, oldest first; entries that are not events are logged and skipped."""
        out = []
        for entry in self.journal.query(kinds=KIND, limit=None, newest_first=False):
            try:
                out.append(from_row(entry))
            except InvalidEvent as exc:
                log.error("skipping %s; raw data: %r", exc, entry.data)
        return out


def replay(events: Iterable[Event]) -> tuple[dict[str, RunState], list[str]]:
    """Fold events into runs, in order. Returns the runs and one line per event that did not fit."""
    runs: dict[str, RunState] = {}
    problems: list[str] = []
    for e in events:
        try:
            if e.kind is EventKind.RUN_STARTED:
                if e.run in runs:
                    raise InvalidEvent(f"run {e.run} started twice")
                runs[e.run] = RunState.begin(e)
            elif e.run not in runs:
                raise InvalidEvent(f"{e.kind.value} for unknown run {e.run}")
            else:
                runs[e.run] = runs[e.run].apply(e)
        except InvalidEvent as exc:
            problems.append(str(exc))
    return runs, problems
