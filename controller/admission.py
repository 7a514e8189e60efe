"""Admission helpers for the parts of the controller that start work besides the engine (drills).

The engine admits plans itself (`Engine._admit`); a drill run claims the site here before its guard
runs, and releases the claim when the run ends, so a drill and a plan (or two drills) never start
together. Kept apart from the HTTP routes so the rule is one function, whatever calls it.
"""

from __future__ import annotations

from ccfo.ports import Claim, Work, WorkClaim, WorkKind, WorkRefused


async def claim_drill(claims: WorkClaim, run_id: str, drill: str, who: str) -> tuple[Claim | None, str | None]:
    """The drill run's claim, or None and why not (the work holding the site, named, or the controller
    not acting now)."""
    try:
        return await claims.acquire(Work(WorkKind.DRILL, run_id, drill, who)), None
    except WorkRefused as exc:
        return None, str(exc)
