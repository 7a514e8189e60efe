"""A virtual clock for the `Clock` port (ccfo.ports): time moves only when a test says so.

The engine and the executor read and wait on time only through their clock, so with this one a test
can let a debounce elapse, hold a plan in its drain step, or time a step out, without sleeping:
`advance(s)` moves time and wakes every sleeper whose time has come. `sleepers` says how many are
waiting (a test waits for the executor to reach its timed wait before advancing past it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.mono + seconds, next(self._seq), wake))
        await wake

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self.mono:
            _, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                wake.set_result(None)

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, wake in self._sleepers if not wake.done())
