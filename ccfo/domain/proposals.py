"""Proposal bookkeeping as a decision: which proposals to propose, withdraw or supersede this cycle.

In supervised mode (and under hold-down or per-rule approval) the engine proposes the plan a rule
prescribes and waits for an operator. What to do with the proposals already open is itself a decision,
made here purely from the cycle's Decision, the open proposals and what an operator declined:

* withdraw the controller's proposals when the situation has cleared (an approval must not run a
  failover nobody needs any more); operators' own proposals stay theirs to reject;
* supersede the controller's proposals that a newer, different plan replaces;
* never propose twice the same plan, nor the plan an operator rejected in this very situation; once
  the situation changes (another decision), the rejection is forgotten and the plan may come back;
* a proposal carries the site's footing (duties, boards, databases) it was built on: a plan built for
  other roles must never run, so an approval on another footing is refused (`changed_footing`). This
  covers what reconcile cannot see: a proposal that outlives a hold-down, or an operator's switchover
  that ran while it waited, leaves the decision without a plan, yet its steps are for the old roles.

The engine carries the returned changes out (store, journal, events) in order and decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ccfo.domain.plan import Plan, Step
from ccfo.domain.rules import Decision, Disposition
from ccfo.domain.state import SiteState


@dataclass(frozen=True, slots=True)
class OpenProposal:
    """A proposal waiting for an operator: its id, its steps, and whether the controller made it."""

    id: str
    steps: tuple[Step, ...]
    by_controller: bool = True


@dataclass(frozen=True, slots=True)
class Declined:
    """The steps of a plan an operator rejected, and the situation (see `situation`) it was rejected in."""

    situation: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Propose:
    plan: Plan
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The situation that called for the proposal has cleared."""

    plan_id: str
    why: str


@dataclass(frozen=True, slots=True)
class Supersede:
    """A newer, different plan replaces the proposal."""

    plan_id: str
    why: str


@dataclass(frozen=True, slots=True)
class ForgetDeclined:
    """The situation changed: a rejected plan may be proposed again."""


Change = Propose | Withdraw | Supersede | ForgetDeclined

SUPERSEDED_WHY = "the situation changed; a new plan was proposed"
FOOTING_KEY = "footing"


def footing(state: SiteState) -> str:
    """The part of the site state a plan's steps are built from: each host's duty and board, the active
    database and the database sites marked down (not the mode nor the automatic-action clock)."""
    hosts = ",".join(f"{h}={s.duty.value}{'/isolated' if s.board_isolated else ''}"
                     for h, s in sorted(state.hosts.items()))
    return f"{hosts}|db={state.active_db}|down={','.join(sorted(state.down_db_sites))}"


def on_footing(plan: Plan, state: SiteState) -> Plan:
    """The plan stamped with the footing it is proposed on."""
    return replace(plan, meta={**plan.meta, FOOTING_KEY: footing(state)})


def changed_footing(plan: Plan, state: SiteState) -> str | None:
    """Why the proposed plan must not run on this state (None: it may). A plan without a stamp (proposed
    by an older version) is judged by reconcile alone."""
    then = plan.meta.get(FOOTING_KEY)
    if then is None or then == footing(state):
        return None
    return f"the site changed since this plan was proposed (proposed on {then}; now {footing(state)})"


def situation(decision: Decision) -> str:
    """What identifies a situation for a rejection: the decision's action, disposition and sentence."""
    return f"{decision.action.value}|{decision.disposition.value}|{decision.reason}"


def reconcile(decision: Decision, open_proposals: tuple[OpenProposal, ...],
              declined: Declined | None) -> tuple[Change, ...]:
    """The changes to the open proposals that this cycle's decision calls for, in the order to apply them."""
    changes: list[Change] = []
    if declined is not None and declined.situation != situation(decision):
        changes.append(ForgetDeclined())
        declined = None
    mine = [p for p in open_proposals if p.by_controller]
    if decision.plan is None:
        if decision.disposition is Disposition.NONE:
            changes += [Withdraw(p.id, f"the situation cleared: {decision.reason}") for p in mine]
        return tuple(changes)
    if decision.disposition is not Disposition.PROPOSE:
        return tuple(changes)
    steps = decision.plan.steps
    if declined is not None and declined.steps == steps:
        return tuple(changes)  # an operator rejected this very plan for this very situation
    changes += [Supersede(p.id, SUPERSEDED_WHY) for p in mine if p.steps != steps]
    if not any(p.steps == steps for p in open_proposals):
        changes.append(Propose(decision.plan, decision.rule or "rule", decision.reason))
    return tuple(changes)
