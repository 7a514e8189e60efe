"""The steady call load of a drill: a SIPp UAC at a low rate through the site's SIP front, for the whole
drill, as callers would reach the call center. Nothing here follows the active host: the front (Kamailio,
routed by the controller) decides where each call goes, so the figures are what a caller would see.

One SIPp process per phase (the drill, then the way back): entering a phase starts a new process and the
old one soft-exits (SIGUSR1) so its calls in progress end and its statistics and call log are complete.
The figures of a phase are the sums of its processes' own statistics, plus the fate of every call from
the call log (drills.sipp.CallFates): refused (never answered), cut (answered, not ended by the IVR's
BYE), held (answered after the front held it).

What it must not do: keep a process running after `stop()`, or send SIGUSR1 twice (drills.sipp).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from drills.sipp import CallFates, Sip, SippError, SippOutcome, SippProcess, SippStats

log = logging.getLogger("ccfo.drills.load")


@dataclass
class Segment:
    phase: str
    proc: SippProcess
    outcome: SippOutcome | None = None
    host: str = "front"


def phase_figures(rate: float, segs: list[Segment]) -> dict[str, Any]:
    total = sum((s.outcome.stats for s in segs if s.outcome), SippStats())
    fates = sum((s.outcome.fates for s in segs if s.outcome), CallFates())
    by: dict[str, int] = {}
    for endpoint in fates.answered.values():
        by[endpoint] = by.get(endpoint, 0) + 1
    return {"rate_cps": rate, "attempted": total.attempted, "succeeded": total.succeeded,
            "failed": total.failed, "setup_ms": total.setup_ms, "responses": dict(total.responses),
            "calls_refused": fates.refused(total.attempted), "calls_cut": fates.cut, "calls_held": len(fates.held),
            "answered_by": by,
            "segments": [{"phase": s.phase, "host": s.host, "started": s.proc.started,
                          "stat_file": s.proc.files["csv"], "call_log": s.proc.files["calls"],
                          "exit_code": s.outcome.returncode if s.outcome else None,
                          **(s.outcome.stats.to_dict() if s.outcome else {})} for s in segs]}


class Load:
    """A UAC at `rate_cps` through the SIP front, for the whole drill; one SIPp process per phase."""

    def __init__(self, sip: Sip, rate_cps: float, budget_s: float) -> None:
        if sip.plan.front is None:
            raise SippError("the steady load needs the site's SIP front (drills.yaml sip.front, or the lab's)")
        self.sip, self.rate, self.budget_s = sip, rate_cps, budget_s
        self.segments: list[Segment] = []
        self.phase = "drill"
        self.stopped = False
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments and self.segments[-1].proc.running else None

    async def enter(self, phase: str) -> None:
        """Run the load in `phase`: start it, or rotate to a new process when the phase changes."""
        async with self._lock:
            if self.stopped:
                return
            cur = self.current
            if cur is not None and cur.phase == phase:
                return
            if cur is not None:
                cur.proc.soft_stop()
            self.phase = phase
            proc = self.sip.uac_front(f"load-{phase}", self.sip.plan.ext_inbound, "uac_inbound.xml", calls=0,
                                      rate=self.rate, timeout_s=self.budget_s)
            await proc.start()
            self.segments.append(Segment(phase, proc))
            log.info("steady load (%s): %g calls/s through the front %s:%d", phase, self.rate, *self.sip.plan.front)

    async def stop(self) -> None:
        async with self._lock:
            self.stopped = True
            for seg in self.segments:
                seg.proc.soft_stop()
            for seg in self.segments:
                if seg.outcome is None:
                    seg.outcome = await seg.proc.wait(timeout_s=20.0 + self.sip.plan.hold_s)

    def figures(self, phase: str | None = None) -> dict[str, Any]:
        return phase_figures(self.rate, [s for s in self.segments if phase is None or s.phase == phase])
