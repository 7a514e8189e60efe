"""`AmiMessage`: one AMI event or response as our own immutable record, detached from panoramisk.

Conversion happens once, at the boundary (the link's event callback and action results), so the
rest of the agent never sees panoramisk's `Message`. Two of its traps are normalised here: repeated
headers (a `str` for one line, a `list` for several, e.g. `Output`) become tuples read through
`getlist`, and a missing header reads as `''` through `get` (never an attribute lookup that silently
returns `''` for a typo'd name on one path and raises on another).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HeaderValue = str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """Headers keyed by lower-case name; repeated headers as tuples in wire order."""

    headers: Mapping[str, HeaderValue]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, object]]) -> AmiMessage:
        headers: dict[str, HeaderValue] = {}
        for key, value in pairs:
            lkey = key.lower()
            if lkey == "content":  # panoramisk's body slot, always empty with AMI 9
                continue
            headers[lkey] = tuple(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
        return cls(headers)

    @property
    def name(self) -> str:
        """The Event name for events, the Response status for responses."""
        return self.get("event") or self.get("response")

    @property
    def is_event(self) -> bool:
        return "event" in self.headers

    @property
    def action_id(self) -> str:
        return self.get("actionid")

    def get(self, key: str, default: str = "") -> str:
        value = self.headers.get(key.lower())
        if value is None:
            return default
        if isinstance(value, tuple):
            return value[0] if value else default
        return value

    def getlist(self, key: str) -> tuple[str, ...]:
        value = self.headers.get(key.lower())
        if value is None:
            return ()
        return value if isinstance(value, tuple) else (value,)
