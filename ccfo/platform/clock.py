"""The system clock behind the `Clock` port (ccfo.ports): wall time, monotonic time and asyncio's sleep.

The engine and the executor read time only through a Clock, so tests swap in a virtual one; this is
the one the daemons run on. What it must not do: hold state (one instance serves the whole process).
"""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
