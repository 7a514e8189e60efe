"""The steady call load of a drill: a SIPp UAC at a low rate against the active host's IVR, for the whole
drill, following the active host like the front PBX follows the inbound routing.

One SIPp process per segment: a new segment starts when the controller's active host changes or the drill
enters a new phase (the way back), and the old one soft-exits (SIGUSR1) so its calls in progress end and
its statistics file is complete. The figures of a phase are the sums of its segments' own statistics.

What it must not do: keep a segment running after `stop()`, or send SIGUSR1 twice (drills.sipp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from drills.sipp import Sip, SippOutcome, SippProcess, SippStats

log = logging.getLogger("ccfo.drills.load")



@dataclass
class Segment:
    phase: str
    host: str
    proc: SippProcess
    outcome: SippOutcome | None = None


class Load:
    """A UAC at `rate_cps` against the active host's IVR, for the whole drill. A new segment (a new SIPp
    process) starts when the active host changes or the drill enters a new phase; the old one soft-exits."""

    def __init__(self, sip: Sip, rate_cps: float, budget_s: float) -> None:
        self.sip, self.rate, self.budget_s = sip, rate_cps, budget_s
        self.segments: list[Segment] = []
        self.phase = "drill"
        self.stopped = False
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments and self.segments[-1].proc.running else None

    async def _start(self, host: str) -> None:
        proc = self.sip.uac(f"load-{self.phase}-{host}", host, self.sip.plan.ext_inbound, "uac_inbound.xml",
                            calls=0, rate=self.rate, timeout_s=self.budget_s)
        await proc.start()
        self.segments.append(Segment(self.phase, host, proc))
        log.info("steady load (%s): %g calls/s to %s", self.phase, self.rate, host)

    async def follow(self, host: str | None, phase: str | None = None) -> None:
        """Keep the load on `host` (the active host) in `phase`; rotate the segment when either changes."""
        if host is None or host not in self.sip.plan.endpoints:
            return
        async with self._lock:
            if self.stopped:
                return
            cur = self.current
            if cur is not None and cur.host == host and (phase is None or phase == cur.phase):
                return
            if cur is not None:
                cur.proc.soft_stop()
            self.phase = phase or self.phase
            await self._start(host)

    async def stop(self) -> None:
        async with self._lock:
            self.stopped = True
            for seg in self.segments:
                seg.proc.soft_stop()
            for seg in self.segments:
                if seg.outcome is None:
                    seg.outcome = await seg.proc.wait(timeout_s=20.0)

    def figures(self, phase: str | None = None) -> dict[str, Any]:
        segs = [s for s in self.segments if phase is None or s.phase == phase]
        total = sum((s.outcome.stats for s in segs if s.outcome), SippStats())
        return {"rate_cps": self.rate, "attempted": total.attempted, "succeeded": total.succeeded,
                "failed": total.failed, "setup_ms": total.setup_ms, "responses": dict(total.responses),
                "segments": [{"phase": s.phase, "host": s.host, "started": s.proc.started,
                              "stat_file": s.proc.files["csv"],
                              "exit_code": s.outcome.returncode if s.outcome else None,
                              **(s.outcome.stats.to_dict() if s.outcome else {})} for s in segs]}


async def follow_active(load: Load, status: Callable[[], Awaitable[dict[str, Any]]], interval_s: float = 0.2) -> None:
    """Background task: point the load at the controller's active host as it changes."""
    while True:
        with contextlib.suppress(Exception):
            await load.follow((await status()).get("active_host"))
        await asyncio.sleep(interval_s)
