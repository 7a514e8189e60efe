"""A budget for warning lines about bad input, so a peer sending garbage cannot flood the log.

Malformed input is logged and skipped (the design's rule), but a broken or hostile peer can send a
million malformed messages; one line each buries everything else and fills the disk. `LogBudget` lets
`burst` lines through per `window_s`, counts what it holds back, and says how many on the next line it
lets through, so the log keeps both the evidence and its volume.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogBudget:
    def __init__(self, burst: int = 10, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self.clock = burst, window_s, clock
        self._start = -window_s
        self._used = 0
        self.suppressed = 0  # held back since the last line let through

    def take(self) -> str | None:
        """None: stay silent. Otherwise log, appending the returned suffix (empty, or the count held back)."""
        now = self.clock()
        if now - self._start >= self.window_s:
            self._start, self._used = now, 0
        if self._used >= self.burst:
            self.suppressed += 1
            return None
        self._used += 1
        held, self.suppressed = self.suppressed, 0
        return f" ({held} similar line(s) held back)" if held else ""
