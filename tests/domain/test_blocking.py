"""Tests of the blocking-probability planner: known values, hand-solved chains, model agreement."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccfo.domain.blocking import (
    TransferBlocking,
    TwoClassBlocking,
    erlang_b,
    kaufman_roberts,
    reservation_chain,
    transfer_chain,
)

LOAD = st.floats(min_value=0.0, max_value=30.0, allow_nan=False, allow_infinity=False)
SMALL_HOST = st.integers(min_value=1, max_value=14)


def assert_close(actual: float, expected: float | Fraction, tol: float = 1e-12) -> None:
    assert actual == pytest.approx(float(expected), abs=tol, rel=tol)


# --------------------------------------------------------------------------- Erlang B


@pytest.mark.parametrize(
    ("channels", "erlangs", "expected"),
    [
        (1, 1.0, 0.5),
        (2, 1.0, 0.2),
        (10, 5.0, 0.018384570336648),  # textbook table value 0.018385
        (1, 0.0, 0.0),
        (5, 2.0, 4 / 109),  # (2^5/5!) / sum_k 2^k/k! = (32/120) / (872/120)
    ],
)
def test_erlang_b_known_values(channels: int, erlangs: float, expected: float) -> None:
    assert_close(erlang_b(channels, erlangs), expected)


def test_erlang_b_large_host_heavy_load_does_not_overflow() -> None:
    b = erlang_b(5000, 4800.0)
    assert 0.0 < b < 0.05
    assert erlang_b(500, 1e6) == pytest.approx(1.0 - 500 / 1e6, rel=1e-3)


# --------------------------------------------------------------------------- Kaufman–Roberts


@given(channels=SMALL_HOST, erlangs=LOAD)
@settings(max_examples=60, deadline=None)
def test_kaufman_roberts_without_agents_is_erlang_b(channels: int, erlangs: float) -> None:
    kr = kaufman_roberts(channels, erlangs, 0.0)
    assert_close(kr.ivr_blocking, erlang_b(channels, erlangs), 1e-12)


def test_kaufman_roberts_large_host_heavy_load_is_finite() -> None:
    kr = kaufman_roberts(500, 300.0, 200.0)
    assert 0.0 < kr.ivr_blocking < kr.agent_blocking < 1.0
    extreme = kaufman_roberts(500, 1e5, 1e5)
    assert 0.99 < extreme.ivr_blocking <= extreme.agent_blocking <= 1.0


def test_single_channel_host_never_admits_an_agent_call() -> None:
    assert kaufman_roberts(1, 1.0, 1.0).agent_blocking == 1.0
    assert reservation_chain(1, 1.0, 1.0, 0).agent_blocking == pytest.approx(1.0)


def test_hand_solved_two_channel_host() -> None:
    """C = 2, a1 = 2 (IVR erlangs), a2 = 1 (agent erlangs), unit holding times, no reservation.

    States (x, y): A = (0,0) n=0, B = (1,0) n=1, Cc = (2,0) n=2, E = (0,1) n=2.
    Moves: A->B 2, A->E 1; B->Cc 2, B->A 1 (agent refused: 1+2 > 2); Cc->B 2; E->A 1.
    Balance: Cc: 2 Cc = 2 B; E: E = A; A: 3 A = B + E  =>  B = 2A, Cc = 2A, E = A; sum = 6A.
    pi = (1, 2, 2, 1) / 6.  IVR refused at n = 2: (2 + 1)/6 = 1/2.  Agent refused at n >= 1: 5/6.
    """
    expected = (Fraction(1, 2), Fraction(5, 6))
    for result in (kaufman_roberts(2, 2.0, 1.0), reservation_chain(2, 2.0, 1.0, 0)):
        assert isinstance(result, TwoClassBlocking)
        assert_close(result.ivr_blocking, expected[0])
        assert_close(result.agent_blocking, expected[1])


# --------------------------------------------------------------------------- reservation chain


@pytest.mark.parametrize(
    ("channels", "ivr", "agent"),
    [(2, 1.0, 1.0), (5, 0.0, 2.0), (7, 3.0, 0.0), (10, 3.0, 2.0), (30, 10.0, 8.0), (60, 20.0, 15.0),
     (120, 50.0, 40.0), (40, 100.0, 100.0), (25, 0.01, 0.02)],
)
def test_reservation_chain_without_reserve_matches_kaufman_roberts(channels: int, ivr: float,
                                                                  agent: float) -> None:
    kr = kaufman_roberts(channels, ivr, agent)
    chain = reservation_chain(channels, ivr, agent, 0)
    assert abs(kr.ivr_blocking - chain.ivr_blocking) < 1e-9
    assert abs(kr.agent_blocking - chain.agent_blocking) < 1e-9


@given(channels=SMALL_HOST, ivr=LOAD, agent=LOAD)
@settings(max_examples=60, deadline=None)
def test_reservation_chain_without_reserve_matches_kaufman_roberts_property(channels: int, ivr: float,
                                                                           agent: float) -> None:
    kr = kaufman_roberts(channels, ivr, agent)
    chain = reservation_chain(channels, ivr, agent, 0)
    assert abs(kr.ivr_blocking - chain.ivr_blocking) < 1e-9
    assert abs(kr.agent_blocking - chain.agent_blocking) < 1e-9


def test_hand_solved_reservation_has_no_product_form() -> None:
    """C = 3, R = 1, a1 = a2 = 1: IVR admitted while n <= 1, agents while n <= 1.

    States: A=(0,0) n0, B=(1,0) n1, Cc=(2,0) n2, E=(0,1) n2, F=(1,1) n3 ((3,0) is unreachable).
    Moves: A->B 1, A->E 1; B->Cc 1, B->F 1, B->A 1; Cc->B 2; E->A 1 (IVR refused at n=2); F->E 1, F->B 1.
    Balance: Cc = B/2, F = B/2, E = A + F, 2A = B + E  =>  B = 2A/3, Cc = F = A/3, E = 4A/3.
    pi = (3, 2, 1, 4, 1) / 11; both classes are refused at n >= 2: (1 + 4 + 1)/11 = 6/11.
    """
    result = reservation_chain(3, 1.0, 1.0, 1)
    assert_close(result.ivr_blocking, Fraction(6, 11))
    assert_close(result.agent_blocking, Fraction(6, 11))


@pytest.mark.parametrize(("channels", "ivr", "agent"), [(6, 2.0, 1.0), (12, 4.0, 3.0), (20, 5.0, 6.0),
                                                        (9, 0.5, 8.0)])
def test_reservation_moves_blocking_from_agents_to_ivr_monotonically(channels: int, ivr: float,
                                                                     agent: float) -> None:
    results = [reservation_chain(channels, ivr, agent, r) for r in range(channels)]
    for before, after in pairwise(results):
        assert after.ivr_blocking >= before.ivr_blocking - 1e-12
        assert after.agent_blocking <= before.agent_blocking + 1e-12
    assert results[-1].ivr_blocking > results[0].ivr_blocking
    assert results[2].agent_blocking < results[0].agent_blocking


# --------------------------------------------------------------------------- transfer chain


@pytest.mark.parametrize(("channels", "per_min", "ivr_min"), [(1, 1.0, 1.0), (4, 2.0, 1.5), (15, 3.0, 3.0)])
def test_transfer_chain_without_transfers_is_erlang_b(channels: int, per_min: float, ivr_min: float) -> None:
    result = transfer_chain(channels, per_min, ivr_min, 0.0, 5.0)
    assert isinstance(result, TransferBlocking)
    b = erlang_b(channels, per_min * ivr_min)
    assert_close(result.new_call_blocking, b, 1e-10)
    assert_close(result.mean_ivr_calls, per_min * ivr_min * (1 - b), 1e-10)
    assert result.mean_agent_calls == 0.0


def test_hand_solved_transfer_chain() -> None:
    """C = 2, L = 1/min, M1 = 1 min, P = 1/2, M2 = 1 min, R = 0.

    States: A=(0,0), B=(1,0), Cc=(2,0) (full), E=(0,1) (full).
    Moves: A->B 1; B->Cc 1, B->A 1/2 (ends), B->E 1/2 (transfer granted: 1+0+1 <= 2);
    Cc->B 2 (ends 1, transfer refused 1: 2+0+1 > 2); E->A 1.
    Balance: Cc = B/2, E = B/2, A = B/2 + E = B  =>  pi = (1, 1, 1/2, 1/2) / 3.
    New calls refused in Cc, E: 1/3.  Transfer requests come at x/2: from B (1/3 * 1) granted, from Cc
    (1/6 * 2) refused: refused share 1/2.  E[X] = 1/3 + 2/6 = 2/3, E[Y] = 1/6.
    """
    result = transfer_chain(2, 1.0, 1.0, 0.5, 1.0)
    assert_close(result.new_call_blocking, Fraction(1, 3))
    assert_close(result.transfer_blocking, Fraction(1, 2))
    assert_close(result.mean_ivr_calls, Fraction(2, 3))
    assert_close(result.mean_agent_calls, Fraction(1, 6))


def test_hand_solved_transfer_chain_with_reservation() -> None:
    """C = 2, R = 1, L = 1, M1 = 1, P = 1/2, M2 = 2: new calls admitted only when idle (n + 1 <= 1).

    States: A=(0,0), B=(1,0), E=(0,1); (2,0) unreachable. Moves: A->B 1; B->A 1/2; B->E 1/2 (granted,
    1 + 1 <= 2); E->A 1/2.  Balance: B = A, E = B  =>  pi = (1, 1, 1)/3.
    New calls refused at n >= 1: 2/3; no transfer is ever refused; E[X] = E[Y] = 1/3.
    """
    result = transfer_chain(2, 1.0, 1.0, 0.5, 2.0, reserve=1)
    assert_close(result.new_call_blocking, Fraction(2, 3))
    assert result.transfer_blocking == 0.0
    assert_close(result.mean_ivr_calls, Fraction(1, 3))
    assert_close(result.mean_agent_calls, Fraction(1, 3))


@given(channels=SMALL_HOST, per_min=st.floats(0.0, 8.0), ivr_min=st.floats(0.1, 4.0),
       ratio=st.floats(0.0, 1.0), agent_min=st.floats(0.1, 10.0))
@settings(max_examples=50, deadline=None)
def test_transfer_chain_without_reserve_has_kaufman_roberts_product_form(
        channels: int, per_min: float, ivr_min: float, ratio: float, agent_min: float) -> None:
    """Without reservation the transfer chain solves to KR with a1 = L*M1, a2 = L*P*M2: new calls see
    KR's IVR blocking and a caller who wants an agent is lost (at arrival or at transfer) with KR's agent
    blocking. The split is what KR cannot give."""
    t = transfer_chain(channels, per_min, ivr_min, ratio, agent_min)
    kr = kaufman_roberts(channels, per_min * ivr_min, per_min * ratio * agent_min)
    assert abs(t.new_call_blocking - kr.ivr_blocking) < 1e-9
    if t.mean_ivr_calls > 1e-9:
        end_to_end = 1.0 - (1.0 - t.new_call_blocking) * (1.0 - t.transfer_blocking)
        assert abs(end_to_end - kr.agent_blocking) < 1e-9


# Call-centre regime: short IVR, longer agent calls, IVR calls outnumber agent calls on a full host.
CALL_CENTRE = [(10, 1.0, 2.0, 0.5, 4.0), (30, 4.0, 1.0, 0.6, 5.0), (30, 2.0, 3.0, 0.8, 6.0),
               (60, 6.0, 1.5, 0.5, 8.0)]


@pytest.mark.parametrize(("channels", "per_min", "ivr_min", "ratio", "agent_min"), CALL_CENTRE)
def test_transfers_are_refused_more_often_than_independent_classes_predict(
        channels: int, per_min: float, ivr_min: float, ratio: float, agent_min: float) -> None:
    """The comparison: KR with the same offered loads (a1 = L*M1, a2 = L*P*M2). A transfer needs one
    more channel, so KR's answer for it is the chance that a 1-channel request finds the host full, its
    `ivr_blocking` (time congestion). The real transfer request is made by an IVR caller, at a rate
    proportional to X, so it lands on full states more often than a Poisson arrival does: the true
    refused share is higher (here by about 9 % to 46 %)."""
    t = transfer_chain(channels, per_min, ivr_min, ratio, agent_min)
    kr = kaufman_roberts(channels, per_min * ivr_min, per_min * ratio * agent_min)
    assert t.transfer_blocking > 1.05 * kr.ivr_blocking
    # ... while KR's 2-channel agent blocking also charges the IVR-stage refusals, so it is higher still.
    assert kr.agent_blocking > t.transfer_blocking


def test_transfer_blocking_falls_below_time_congestion_when_agent_calls_dominate() -> None:
    """The ordering above is a property of the regime, not a law: when a full host is mostly agent calls
    (long agent calls, every caller transferred), full states hold few IVR callers to ask."""
    t = transfer_chain(20, 0.5, 1.0, 1.0, 20.0)
    kr = kaufman_roberts(20, 0.5, 0.5 * 20.0)
    assert t.transfer_blocking < kr.ivr_blocking


def test_reservation_protects_real_transfers_more_than_independent_agent_calls() -> None:
    reserved = transfer_chain(30, 4.0, 1.0, 0.6, 5.0, reserve=2)
    open_host = transfer_chain(30, 4.0, 1.0, 0.6, 5.0)
    independent = reservation_chain(30, 4.0, 4.0 * 0.6 * 5.0, 2)
    assert reserved.transfer_blocking < open_host.transfer_blocking / 5
    assert reserved.new_call_blocking > open_host.new_call_blocking
    assert reserved.transfer_blocking < independent.agent_blocking / 5


def test_transfer_chain_idle_host() -> None:
    result = transfer_chain(5, 0.0, 1.0, 0.5, 3.0)
    assert result == TransferBlocking(0.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang_b(0, 1.0), "channels must be at least 1"),
        (lambda: erlang_b(3, -0.1), "erlangs must not be negative"),
        (lambda: erlang_b(3, float("nan")), "erlangs must be a finite number"),
        (lambda: erlang_b(2.5, 1.0), "channels must be an integer"),  # type: ignore[arg-type]
        (lambda: kaufman_roberts(3, 1.0, -1.0), "agent_erlangs must not be negative"),
        (lambda: kaufman_roberts(-1, 1.0, 1.0), "channels must be at least 1"),
        (lambda: reservation_chain(4, -1.0, 1.0, 0), "ivr_erlangs must not be negative"),
        (lambda: reservation_chain(4, 1.0, 1.0, 4), "reserve must be in"),
        (lambda: reservation_chain(4, 1.0, 1.0, -1), "reserve must be in"),
        (lambda: reservation_chain(5000, 1.0, 1.0, 0), "at most"),
        (lambda: transfer_chain(4, -1.0, 1.0, 0.5, 1.0), "arrivals_per_min must not be negative"),
        (lambda: transfer_chain(4, 1.0, 0.0, 0.5, 1.0), "ivr_minutes must be positive"),
        (lambda: transfer_chain(4, 1.0, 1.0, 0.5, -2.0), "agent_minutes must be positive"),
        (lambda: transfer_chain(4, 1.0, 1.0, 1.5, 1.0), "transfer_ratio must be in"),
        (lambda: transfer_chain(4, 1.0, 1.0, -0.5, 1.0), "transfer_ratio must be in"),
        (lambda: transfer_chain(4, 1.0, 1.0, 0.5, 1.0, reserve=7), "reserve must be in"),
        (lambda: transfer_chain(0, 1.0, 1.0, 0.5, 1.0), "channels must be at least 1"),
    ],
)
def test_invalid_input_is_refused(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
