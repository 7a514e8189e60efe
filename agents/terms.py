"""Fencing tokens: the highest leader term this agent has seen, and the refusal of older terms.

With controller HA (site.yaml `cluster:`) every action carries the leader's term (the etcd create
revision of the leader key, growing with each leadership). An agent accepts an action whose term is at
least the highest it has seen and refuses a lower one (HTTP 409 naming both terms): a deposed leader
that was paused and resumes cannot make this agent act. Once a term has been seen, an action without a
term is refused too (a controller outside the cluster must not act behind the leader's back); delete
the state file to go back to single-controller mode.

The highest term is kept in one small JSON file written atomically (temp + fsync + rename) BEFORE the
action runs, so an agent restart does not forget it.

A term alone cannot stop a leader that was frozen between its check and its send (a SIGSTOP, a VM pause)
and whose successor has not acted on this agent yet: the action also carries the end of the leader's
acting window (`valid_until`, Unix time), and one that arrives later is refused the same way (409).

A file that exists but cannot be read stops the agent at start-up (it cannot know which terms are stale).
A write that fails is logged as an error and the in-memory value keeps refusing stale terms while the
process lives.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from ccfo.platform.jsonfile import write_json_atomic

log = logging.getLogger("ccfo.agent.terms")

class TermFileError(RuntimeError):
    """The term file exists but cannot be read: the agent does not know which terms are stale."""


class StaleTerm(ValueError):
    """The action's term is older than the highest this agent has seen (or it has none after a term)."""

    def __init__(self, got: int | None, highest: int) -> None:
        self.got = got
        self.highest = highest
        if got is None:
            msg = f"action without a leader term refused: this agent has seen term {highest} (controller HA)"
        else:
            msg = f"stale leader term {got} refused: this agent has seen term {highest} (a newer leader)"
        super().__init__(msg)


class LapsedLease(StaleTerm):
    """The action arrived after the end of its leader's acting window: that leader may have been frozen
    between deciding and sending, and a successor may lead already."""

    def __init__(self, got: int | None, highest: int, late_s: float) -> None:
        ValueError.__init__(self, f"action of leader term {got} refused: it arrived {late_s:.3f} s after that "
                                  f"leader's acting window ended (its lease may have lapsed; a newer leader may act)")
        self.got, self.highest, self.late_s = got, highest, late_s


class TermStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.highest: int | None = None
        self._write_lock = threading.Lock()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            value = raw["highest_term"]
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"highest_term must be a positive integer, got {value!r}")
            self.highest = value
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TermFileError(f"cannot read the leader term file {path}: {exc} (delete it only if no "
                                f"controller cluster manages this agent)") from exc

    def admit(self, term: int | None) -> bool:
        """Accept `term` or raise StaleTerm; True when it is a new highest term (save it before acting).
        No term is accepted only while no term has ever been seen (single-controller mode)."""
        if term is None:
            if self.highest is not None:
                raise StaleTerm(None, self.highest)
            return False
        if self.highest is not None and term < self.highest:
            raise StaleTerm(term, self.highest)
        if self.highest is None or term > self.highest:
            self.highest = term
            return True
        return False

    def in_time(self, term: int | None, valid_until: float | None, now: float) -> None:
        """Refuse (LapsedLease) an action that arrives after its leader's acting window (`valid_until`, on the
        leader's wall clock, compared with ours: safe while our clock is behind the leader's by less than
        its safety margin, docs/ha.md)."""
        if valid_until is not None and now > valid_until:
            raise LapsedLease(term, max(self.highest or 0, term or 0), now - valid_until)

    def save(self) -> None:
        """Write the highest term to the file (blocking: call through asyncio.to_thread)."""
        if self.path is None or self.highest is None:
            return
        with self._write_lock:
            data = {"version": 1, "highest_term": self.highest}
            try:
                write_json_atomic(self.path, data)
            except OSError as exc:
                log.error("could not save the leader term %d to %s: %s (kept in memory)", self.highest,
                          self.path, exc)
