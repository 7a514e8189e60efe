"""Self-fencing, the controller's side (`fencing.method: self`): the fence step for an unreachable host
waits until that host's agent has certainly stopped its own CTI/IVR.

The agent (agents/selffence.py) stops CTI/IVR once no controller has answered its report pushes for
`self_fence_after_s`. Its last answered push is the controller's last report from it, so the host is
fenced `self_fence_after_s + self_fence_margin_s` after that report; the margin covers the agent's check
interval and the stop itself. Until then the standby's CTI/IVR do not start (the fence step comes first in
every plan that moves them). Safety over speed: a plan with this method fails over no sooner.
"""

from __future__ import annotations

from collections.abc import Callable

from ccfo.ports import Clock, FenceFailed


class SelfFencing:
    def __init__(self, after_s: float, margin_s: float, last_seen: Callable[[str], float | None],
                 clock: Clock) -> None:
        self.after_s, self.margin_s, self.last_seen, self.clock = after_s, margin_s, last_seen, clock
        self.done_text = (f"its agent has stopped its own CTI/IVR by now (fencing.method self: "
                          f"{after_s:g} s without a controller + {margin_s:g} s margin since its last report)")

    @property
    def available(self) -> bool:
        return True

    async def power_off(self, host: str) -> None:
        """Wait until `host`'s agent has fenced itself: last report + after + margin (from now, if the
        controller never heard from it)."""
        seen = self.last_seen(host)
        now = self.clock.now()
        wait = (seen if seen is not None else now) + self.after_s + self.margin_s - now
        if wait > 0:
            await self.clock.sleep(wait)

    async def power_on(self, host: str) -> None:
        raise FenceFailed("fencing.method self cannot power a host on: its agent starts again when a "
                          "controller answers it")

    async def aclose(self) -> None:
        return None
