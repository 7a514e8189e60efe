"""Results of executed actions by action_id, so a repeated request returns the first result, not a rerun.

Bounded (oldest dropped first) and optionally persisted to one small JSON file (temp + fsync + rename),
so an agent restart does not turn a controller's retry into a second stop or repoint. A file that cannot
be read is logged and ignored (the agent must still start); one that cannot be written is logged, and the
in-memory copy keeps working.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccfo.platform.jsonfile import write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    fingerprint: str  # what was asked (action and its arguments), to refuse an id reused for another request
    result: dict[str, Any]


class ResultStore:
    def __init__(self, max_entries: int = 1000, path: Path | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.path = path
        self._items: OrderedDict[str, Stored] = OrderedDict()
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, action_id: str) -> Stored | None:
        return self._items.get(action_id)

    def put(self, action_id: str, fingerprint: str, result: dict[str, Any]) -> None:
        self._items[action_id] = Stored(fingerprint, result)
        self._items.move_to_end(action_id)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            for item in raw["results"][-self.max_entries:]:
                self._items[item["action_id"]] = Stored(item["fingerprint"], item["result"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable action results file %s: %s", path, exc)

    def save(self) -> None:
        """Write the store to its file (blocking: call through asyncio.to_thread)."""
        if self.path is None:
            return
        data = {"version": 1, "results": [{"action_id": k, "fingerprint": v.fingerprint, "result": v.result}
                                          for k, v in self._items.items()]}
        try:
            write_json_atomic(self.path, data, separators=(",", ":"))
        except OSError as exc:
            log.warning("could not save action results to %s: %s", self.path, exc)
