"""Proposal bookkeeping as a pure decision: withdraw, supersede, never twice, not what was declined."""

from __future__ import annotations

from ccfo.domain.proposals import (
    SUPERSEDED_WHY,
    Declined,
    ForgetDeclined,
    OpenProposal,
    Propose,
    Supersede,
    Withdraw,
    reconcile,
    situation,
)
from ccfo.domain.rules import Decision, evaluate
from ccfo.domain.state import Mode
from tests.domain.factories import (
    NOW,
    active,
    board_down,
    documented_policy,
    example_site,
    normal_state,
    svc_down,
)

SITE = example_site()


def decide(*faults, mode: Mode = Mode.SUPERVISED) -> Decision:
    return evaluate(SITE, normal_state(mode), active(*faults), documented_policy(), NOW)


def cti_crash() -> Decision:
    return decide(svc_down("ipc-a", "cti"))


def proposal_of(d: Decision, id: str = "p1", by_controller: bool = True) -> OpenProposal:
    assert d.plan is not None
    return OpenProposal(id, d.plan.steps, by_controller)


def test_a_new_situation_is_proposed():
    d = cti_crash()
    assert reconcile(d, (), None) == (Propose(d.plan, "primary-cti-ivr-fault", d.reason),)


def test_the_same_plan_is_not_proposed_twice():
    d = cti_crash()
    assert reconcile(d, (proposal_of(d),), None) == ()


def test_an_operators_open_proposal_of_the_same_plan_also_counts():
    d = cti_crash()
    assert reconcile(d, (proposal_of(d, by_controller=False),), None) == ()


def test_proposals_are_withdrawn_when_the_situation_clears():
    open_ = (proposal_of(cti_crash(), "p1"), proposal_of(decide(board_down("ipc-a")), "p2"))
    clear = decide()
    changes = reconcile(clear, open_, None)
    assert changes == (Withdraw("p1", "the situation cleared: all clear"),
                       Withdraw("p2", "the situation cleared: all clear"))


def test_an_operators_proposal_stays_theirs_to_reject():
    assert reconcile(decide(), (proposal_of(cti_crash(), by_controller=False),), None) == ()


def test_a_newer_different_plan_supersedes_the_controllers_proposal():
    board = decide(board_down("ipc-a"))
    both = decide(board_down("ipc-a"), svc_down("ipc-a", "cti"))  # rule 2 outranks rule 1
    changes = reconcile(both, (proposal_of(board, "old"),), None)
    assert changes == (Supersede("old", SUPERSEDED_WHY), Propose(both.plan, "primary-cti-ivr-fault", both.reason))


def test_a_declined_plan_is_not_proposed_again_in_the_same_situation():
    d = cti_crash()
    assert reconcile(d, (), Declined(situation(d), d.plan.steps)) == ()


def test_a_declined_plan_comes_back_once_the_situation_changes():
    first = cti_crash()
    declined = Declined(situation(first), first.plan.steps)
    changed = decide(svc_down("ipc-a", "cti"), svc_down("ipc-a", "ivr"))
    changes = reconcile(changed, (), declined)
    assert changes[0] == ForgetDeclined() and isinstance(changes[1], Propose)


def test_reports_and_executions_leave_the_proposals_alone():
    for mode in (Mode.MANUAL, Mode.MAINTENANCE, Mode.AUTOMATIC):
        d = decide(svc_down("ipc-a", "cti"), mode=mode)
        assert d.plan is not None
        assert reconcile(d, (proposal_of(cti_crash()),), None) == (), mode
