"""The in-process `WorkClaim` (ccfo.ports): one piece of work at a time on this controller.

Every start of a plan (operator submit, approve, resume, the engine's automatic plans, checklist steps)
and of a drill claims the site here first; the engine releases a plan's claim when the plan has ended,
the drill manager a drill's when the run has ended. `acquire` contains no await, so on the one event
loop the check and the claim are a single step: of N requests arriving together exactly one wins and
the others are refused naming it (issue 19: the old check in the engine and its assignment were
separated by the store and journal writes, and four switchovers ran at once).

A drill holds the outer claim; the plans it starts (and the controller's own plans during it) claim
inside it, one at a time. A controller cluster replaces this class with an etcd transaction behind the
same port; nothing that calls it changes.

No work is claimed unless the controller acts now (`Leadership.is_acting()`: always for a single
controller; for a cluster member, while it holds the leader key): a follower refuses with NotActing,
naming who leads. The check is in the claim, the one function every start of work goes through.
"""

from __future__ import annotations

import itertools

from ccfo.ports import Claim, Leadership, NotActing, Work, WorkBusy
from controller.leadership import SoleController


class LocalWorkClaim:
    def __init__(self, leadership: Leadership | None = None) -> None:
        self.leadership: Leadership = leadership or SoleController()
        self._outer: Claim | None = None
        self._inner: Claim | None = None
        self._tokens = itertools.count(1)

    async def acquire(self, work: Work, *, within: Claim | None = None) -> Claim:
        # No await in this method: check and claim are one step for the event loop.
        if not self.leadership.is_acting():
            raise NotActing(self.leadership.describe())
        if within is not None and within == self._outer:
            if self._inner is not None:
                raise WorkBusy(self._inner.work)
            self._inner = Claim(work, next(self._tokens), within)
            return self._inner
        if self._outer is not None:
            raise WorkBusy((self._inner or self._outer).work)
        self._outer = Claim(work, next(self._tokens))
        return self._outer

    async def release(self, claim: Claim) -> None:
        if claim == self._inner:
            self._inner = None
        elif claim == self._outer:  # a plan still running inside an ended drill keeps the site
            self._outer, self._inner = self._inner, None

    def holders(self) -> tuple[Work, ...]:
        return tuple(c.work for c in (self._outer, self._inner) if c is not None)

    def current(self) -> Claim | None:
        return self._outer
