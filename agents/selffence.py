"""Self-fencing (`fencing.method: self`), for two-host sites without fencing hardware (Pacemaker's sbd
watchdog is the model).

An agent that runs CTI/IVR and has not reached any controller for `fencing.self_fence_after_s` (no report
push answered) stops CTI/IVR itself, and refuses to start them again until a controller answers a push.
The controller's side of the bargain (controller/fencers.py, `SelfFencing`): for an unreachable primary it
waits `self_fence_after_s + self_fence_margin_s` from the host's last report before the standby starts
CTI/IVR. Whatever cut the primary off the controllers (its network, the controllers' host), the primary
has stopped its CTI/IVR by then; the margin covers the agent's check interval and its stop.

The agent's clock is monotonic; nothing here compares clocks across hosts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from agents.services import ServiceManager, ServiceState

log = logging.getLogger("ccfo.agent.selffence")


class SelfFence:
    def __init__(self, services: ServiceManager, critical: Sequence[str], after_s: float, *,
                 clock: Callable[[], float] = time.monotonic, check_s: float = 0.25) -> None:
        self.services, self.critical, self.after_s = services, tuple(critical), after_s
        self.clock, self.check_s = clock, check_s
        self.last_contact = clock()  # the agent's start counts: it has just been installed or restarted
        self.fenced_at: float | None = None

    @property
    def fenced(self) -> bool:
        return self.fenced_at is not None

    def contact(self) -> None:
        """The acting controller answered a report push (Reporter.on_leader; a follower's answer is not
        contact, see agents/reporter.py): the agent is in touch again."""
        self.last_contact = self.clock()
        if self.fenced_at is not None:
            log.warning("a controller answers again after self-fencing %.1f s ago: CTI/IVR may be started again",
                        self.clock() - self.fenced_at)
            self.fenced_at = None

    def refusal(self, action: str, service: str | None) -> str | None:
        """Why a start of a critical service is refused now (None: allowed)."""
        if self.fenced and action in ("start", "restart") and service in self.critical:
            return (f"self-fenced: no controller answered for {self.after_s:g} s; {service} stays stopped until "
                    "a controller answers this agent again")
        return None

    async def check(self) -> None:
        """One check: past the deadline with CTI/IVR running, stop them."""
        if self.clock() - self.last_contact < self.after_s:
            return
        running = [n for n in self.critical if self.services.effective(n).state is not ServiceState.INACTIVE]
        if self.fenced_at is None:
            self.fenced_at = self.clock()
            log.critical("no controller answered for %.1f s (fencing.method self): stopping %s", self.after_s,
                         ", ".join(running) or "nothing (CTI/IVR not running)")
        for name in running:
            try:
                await self.services.stop(name)
            except Exception:  # keep trying the others, and this one at the next check
                log.exception("self-fencing: cannot stop %s", name)

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.check_s)  # the watchdog's own pace, not a synchronisation
