"""The fault campaign's cluster invariants (`ccfo lab campaign --controllers 3`), judged from the lab itself.

Like lab.campaign_check, it never asks a controller. It reads:
* the agents' own records: each agent's `actions.json` (every action it ran, with the leader term it came
  with and when it started) and `term.json` (the highest term it has seen), under the agent's state dir;
* etcd directly, over its JSON gateway: the journal entries the leaders published
  (`/ccfo/<site>/journal/<member>/<id>`, in etcd's revision order: the site's one journal) and the plan
  records (`/ccfo/<site>/plans/<id>`);
* each member's local journal copy (SQLite, read-only): its own entries and the replicas it stored.

Invariants added to the single controller's:
* stale term: an agent never ran an action with a term lower than one it had run before (its actions in
  start order have non-decreasing terms) nor one below the highest term it had persisted then;
* one leader acting: across all agents, no action of a lower term started after an action of a higher
  term had started (a deposed leader never acts once its successor has). Actions of an older term still
  running when a newer term's first action started are counted (`overlaps`), not judged: demoting stops
  a leader from starting steps, it does not abort the one an agent is running;
* journal across leader changes: every entry published on etcd before a leader change (kill, pause,
  partition) is, after it, still on etcd unchanged (unless trimmed by the bounded history) and in every
  member's local copy, identical; every entry a killed member had in its own file is still there after
  its restart.

The functions at the top are pure (observations in, sentences out) and unit-tested on synthetic data.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ccfo.clients.etcd_model import Get, KeyValue, RangeResult

# --------------------------------------------------------------------------- pure invariant functions


@dataclass(frozen=True, slots=True)
class Act:
    """One action an agent ran: its id, its leader term (None: sent without one), start and end (Unix time)."""

    host: str
    action_id: str
    term: int | None
    started: float
    ended: float
    what: str = ""

    @classmethod
    def from_result(cls, host: str, result: Mapping[str, Any]) -> Act:
        return cls(host, str(result["action_id"]), result.get("term"), float(result["started"]),
                   float(result.get("ended") or result["started"]), str(result.get("action", "")))


def stale_term_violations(host: str, acts: Sequence[Act], highest_before: int | None = None) -> list[str]:
    """One agent's actions (any order): in start order, every term at least every earlier one, and at least
    `highest_before` (the term the agent had persisted before these actions)."""
    out: list[str] = []
    highest = highest_before
    for act in sorted(acts, key=lambda a: (a.started, a.action_id)):
        if highest is not None and (act.term is None or act.term < highest):
            out.append(f"{host} ran {act.what} {act.action_id} with term {act.term} after it had seen term {highest}")
        if act.term is not None and (highest is None or act.term > highest):
            highest = act.term
    return out


def acting_violations(acts: Iterable[Act]) -> tuple[list[str], int]:
    """Across every agent: no action of a lower term starts after an action of a higher term started.
    Returns the violations and how many older-term actions were still running when a newer term began."""
    termed = sorted((a for a in acts if a.term is not None), key=lambda a: (a.started, a.action_id))
    out: list[str] = []
    top: Act | None = None  # the highest-term action started so far
    first_of: dict[int, float] = {}
    for act in termed:
        assert act.term is not None
        first_of.setdefault(act.term, act.started)
        if top is not None and top.term is not None and act.term < top.term:
            out.append(f"{act.host} ran {act.what} {act.action_id} of term {act.term} at {act.started:.3f}, "
                       f"{act.started - top.started:.3f} s after {top.host} ran {top.action_id} of term {top.term}")
        if top is None or (top.term or 0) < act.term:
            top = act
    overlaps = sum(1 for a in termed for t, begun in first_of.items()
                   if a.term is not None and t > a.term and a.started < begun < a.ended)
    return out, overlaps


def published_loss(before: Mapping[str, str], after: Mapping[str, str], trimmed_upto: Mapping[str, int]) -> list[str]:
    """Entries published on etcd (`key -> document`) before a leader change that are gone or changed after.
    A key `.../MEMBER/ID` with ID up to `trimmed_upto[MEMBER]` left by the bounded history is not a loss
    (journalsync trims a member's ids up to its last published id - KEEP, inclusive)."""
    out = []
    for key, doc in before.items():
        now = after.get(key)
        if now is None:
            member, _, ident = key.rstrip("/").rpartition("/")
            if int(ident) <= trimmed_upto.get(member.rpartition("/")[2], 0):
                continue
            out.append(f"journal entry {key} published before the leader change is gone from etcd")
        elif now != doc:
            out.append(f"journal entry {key} changed on etcd across the leader change")
    return out


_FIELDS = ("ts", "kind", "host", "plan_id", "step", "actor", "reason", "status", "duration_s")


def entry_fields(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be identical between an entry on etcd and its copy in a member's file (not the id: each
    file numbers its own rows; `data` compared as decoded JSON)."""
    return (*(doc.get(f) for f in _FIELDS), json.dumps(doc.get("data") or {}, sort_keys=True))


def copy_gaps(member: str, published: Mapping[str, Mapping[str, Any]],
              copy: Mapping[str, tuple[Any, ...]]) -> list[str]:
    """Entries published on etcd missing or different in `member`'s local copy (`key -> entry_fields`)."""
    out = []
    for key, doc in published.items():
        have = copy.get(key)
        if have is None:
            out.append(f"{member}'s journal lacks {key} ({doc.get('kind')})")
        elif have != entry_fields(doc):
            out.append(f"{member}'s copy of {key} differs: {have!r} vs {entry_fields(doc)!r}")
    return out


# --------------------------------------------------------------------------- observations


def read_acts(host: str, state_dir: Path) -> list[Act]:
    """The actions an agent stored (its last 1000: read after every run, so none is missed)."""
    try:
        raw = json.loads((state_dir / "actions.json").read_text())
    except (OSError, ValueError):
        return []
    return [Act.from_result(host, item["result"]) for item in raw.get("results", ())
            if isinstance(item, dict) and "result" in item]


def read_highest_term(state_dir: Path) -> int | None:
    try:
        value = json.loads((state_dir / "term.json").read_text())["highest_term"]
        return int(value)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class EtcdView:
    """Read-only ranges over etcd's JSON gateway, trying each endpoint in turn (a member may be down or cut)."""

    def __init__(self, endpoints: Sequence[str], site: str, timeout: float = 2.0) -> None:
        self.endpoints, self.site = list(endpoints), site
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _range(self, prefix: str) -> tuple[KeyValue, ...]:
        body = Get(prefix, prefix=True).to_json()["request_range"]  # the etcd client's own request encoding
        errors = []
        for url in list(self.endpoints):
            try:
                r = self.http.post(f"{url}/v3/kv/range", json=body)
                r.raise_for_status()
                data = r.json()
                if url != self.endpoints[0]:  # a member down or cut: ask the one that answered first next time
                    self.endpoints.remove(url)
                    self.endpoints.insert(0, url)
                return RangeResult.from_json(data).kvs
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                errors.append(f"{url}: {exc}")
        raise EtcdViewError("no etcd endpoint answered: " + "; ".join(errors))

    def journal(self) -> list[tuple[str, int, str]]:
        """The published journal: (key, mod revision, document) in revision order."""
        kvs = self._range(f"/ccfo/{self.site}/journal/")
        return sorted(((kv.key, kv.mod_revision, kv.value.decode(errors="replace")) for kv in kvs),
                      key=lambda x: x[1])

    def journal_rows(self, after_revision: int = 0) -> list[tuple[Any, ...]]:
        """The published journal as lab.campaign_check reads a SQLite one (id, ts, kind, host, plan_id, step,
        actor, reason, status, duration_s, data), the id being the etcd revision: one global order."""
        rows = []
        for _key, rev, text in self.journal():
            if rev <= after_revision:
                continue
            with contextlib.suppress(ValueError, KeyError):
                d = json.loads(text)
                rows.append((rev, d["ts"], d["kind"], d.get("host"), d.get("plan_id"), d.get("step"), d.get("actor"),
                             d.get("reason"), d.get("status"), d.get("duration_s"),
                             json.dumps(d.get("data") or {})))
        return rows

    def plans(self) -> dict[str, str]:
        """The plan records' {id: status}."""
        out = {}
        for kv in self._range(f"/ccfo/{self.site}/plans/"):
            with contextlib.suppress(ValueError, KeyError):
                rec = json.loads(kv.value)
                out[str(rec["id"])] = str(rec["status"])
        return out


class EtcdViewError(RuntimeError):
    """No etcd member answered the checker."""


def read_copy(path: Path, member: str, site: str) -> dict[str, tuple[Any, ...]]:
    """A member's local journal as `etcd key -> entry_fields`: its replicas under their keys, its own
    entries under the key it publishes them at (`/ccfo/<site>/journal/<member>/<id, 12 digits>`)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as conn:
        rows = conn.execute("SELECT e.id, r.key, e.ts, e.kind, e.host, e.plan_id, e.step, e.actor, e.reason, "
                            "e.status, e.duration_s, e.data FROM entries e LEFT JOIN replicas r ON r.entry_id = e.id"
                            ).fetchall()
    out = {}
    for row in rows:
        key = row[1] or f"/ccfo/{site}/journal/{member}/{row[0]:012d}"
        data = json.loads(row[11]) if row[11] else {}
        out[key] = (*row[2:11], json.dumps(data or {}, sort_keys=True))
    return out
