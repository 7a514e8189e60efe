"""Blocking-probability planner for a telephony host whose calls hold one or two channels.

What this module holds: pure functions that say how often calls are refused on a host with `C`
channels, where a call still in the IVR holds 1 channel and a call talking to a human agent holds 2
(the inbound leg plus the agent leg), so `X + 2Y <= C`.

Why two models exist:

* `kaufman_roberts` (and `reservation_chain`, its exact-chain twin with trunk reservation) treats
  IVR calls and agent calls as two *independent* Poisson classes of 1 and 2 channels. That is the
  textbook planning answer, cheap for any size of host.
* A real caller is not two independent calls: it arrives as a 1-channel IVR call and *grows* to 2
  channels when it is transferred. Its transfer request needs one more channel, comes from inside
  the host, and comes at a rate proportional to the number of IVR calls up, i.e. most often exactly
  when the host is full. So the share of transfers refused is the *call* congestion
  `E[X; full] / E[X]`, not the time congestion `P(full)` that an independent class sees: in the
  call-centre regime (IVR calls outnumber agent calls when the host is full) the independent-class
  model understates transfer blocking, and it cannot say that the refusal comes *after* the caller
  sat through the IVR. `transfer_chain` solves the real (X, Y) chain.

What the two models share (checked in the tests): without reservation the transfer chain has the
same product-form distribution as Kaufman–Roberts with `a1 = L*M1`, `a2 = L*P*M2`, so its
new-call blocking equals KR's IVR blocking and `1 - (1 - new)(1 - transfer)` equals KR's agent
blocking; KR's agent blocking therefore *overstates* the transfer step alone (it charges the IVR
refusals too). With reservation neither chain has a product form, and reservation protects real
transfers far better than the independent-class chain suggests.

The exact chains are solved by linear level reduction: ordering the states by `y`, every transition
changes `y` by at most one, so the generator is block tridiagonal and the stationary distribution
costs about `C**4 / 8` flops instead of a dense `(C**2 / 4)**3` solve.

What it must not do: no I/O, no clock, no asyncio, no yaml, no scipy. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# The exact chains have about C**2 / 4 states; beyond this the solve takes minutes, not seconds.
MAX_CHAIN_CHANNELS = 1000

# A move of the chain: (next x, next y, rate).
_Move = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class TwoClassBlocking:
    """Time congestion seen by each class (PASTA: equal to the fraction of its arrivals refused)."""

    ivr_blocking: float
    agent_blocking: float


@dataclass(frozen=True, slots=True)
class TransferBlocking:
    """Outcome of the transfer chain: refusals of new calls and of transfers, and mean occupancy."""

    new_call_blocking: float
    transfer_blocking: float
    mean_ivr_calls: float
    mean_agent_calls: float


# --------------------------------------------------------------------------- validation


def _check_channels(channels: int, *, limit: int | None = None) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise ValueError(f"channels must be an integer, got {channels!r}")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if limit is not None and channels > limit:
        raise ValueError(f"channels must be at most {limit} for the exact chain, got {channels}")


def _check_finite(name: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    _check_finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _check_positive(name: str, value: float) -> None:
    _check_finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _check_ratio(name: str, value: float) -> None:
    _check_finite(name, value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_reserve(reserve: int, channels: int) -> None:
    if isinstance(reserve, bool) or not isinstance(reserve, int):
        raise ValueError(f"reserve must be an integer, got {reserve!r}")
    if reserve < 0 or reserve >= channels:
        raise ValueError(f"reserve must be in [0, channels) = [0, {channels}), got {reserve}")


# --------------------------------------------------------------------------- product-form models


def erlang_b(channels: int, erlangs: float) -> float:
    """Erlang B blocking of `erlangs` offered to `channels` servers (recursion, never overflows)."""
    _check_channels(channels)
    _check_non_negative("erlangs", erlangs)
    b = 1.0
    for k in range(1, channels + 1):
        b = erlangs * b / (k + erlangs * b)
    return b


def kaufman_roberts(channels: int, ivr_erlangs: float, agent_erlangs: float) -> TwoClassBlocking:
    """Complete-sharing blocking of independent 1-channel (IVR) and 2-channel (agent) Poisson classes.

    Kaufman–Roberts recursion `j q(j) = a1 q(j-1) + 2 a2 q(j-2)` over the occupancy `j`, rescaled
    whenever a term exceeds 1 so that large hosts under heavy load neither overflow nor lose the
    ratio between terms (terms that underflow to 0 are negligible against the largest one).
    """
    _check_channels(channels)
    _check_non_negative("ivr_erlangs", ivr_erlangs)
    _check_non_negative("agent_erlangs", agent_erlangs)
    q = np.zeros(channels + 1)
    q[0] = 1.0
    for j in range(1, channels + 1):
        q[j] = (ivr_erlangs * q[j - 1] + (2.0 * agent_erlangs * q[j - 2] if j >= 2 else 0.0)) / j
        if q[j] > 1.0:
            q[: j + 1] /= q[j]
    total = float(q.sum())
    ivr = float(q[channels]) / total
    agent = float(q[channels] + q[channels - 1]) / total if channels >= 2 else 1.0
    return TwoClassBlocking(ivr_blocking=ivr, agent_blocking=agent)


# --------------------------------------------------------------------------- exact chains


def _build_blocks(channels: int, moves: Callable[[int, int], list[_Move]]
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Generator blocks by level y: within (A), up (U: y -> y+1) and down (D: y -> y-1)."""
    top = channels // 2
    sizes = [channels - 2 * y + 1 for y in range(top + 1)]
    within = [np.zeros((n, n)) for n in sizes]
    up = [np.zeros((sizes[y], sizes[y + 1])) for y in range(top)]
    down = [np.zeros((0, 0))] + [np.zeros((sizes[y], sizes[y - 1])) for y in range(1, top + 1)]
    for y in range(top + 1):
        for x in range(sizes[y]):
            for x2, y2, rate in moves(x, y):
                if rate <= 0.0:
                    continue
                if x2 < 0 or y2 < 0 or x2 + 2 * y2 > channels:
                    raise AssertionError(f"move ({x},{y}) -> ({x2},{y2}) leaves the state space")
                within[y][x, x] -= rate
                if y2 == y:
                    within[y][x, x2] += rate
                elif y2 == y + 1:
                    up[y][x, x2] += rate
                elif y2 == y - 1:
                    down[y][x, x2] += rate
                else:
                    raise AssertionError(f"move ({x},{y}) -> ({x2},{y2}) skips a level")
    return within, up, down


def _stationary(channels: int, moves: Callable[[int, int], list[_Move]]) -> list[np.ndarray]:
    """Stationary distribution, one array per level y (index x), by linear level reduction.

    Going down from the top level, `S_y` is the generator of the chain watched only while it is in
    levels >= y, restricted to level y; `pi_y = pi_{y-1} R_y` with `R_y = U_{y-1} (-S_y)^-1`. The
    censored level-0 chain gives `pi_0`; levels above are scaled by logarithms so that no level
    overflows when the load is heavy.
    """
    within, up, down = _build_blocks(channels, moves)
    top = len(within) - 1
    s = within[top]
    ratios: list[np.ndarray] = [np.zeros((0, 0))] * (top + 1)
    for y in range(top, 0, -1):
        ratios[y] = np.linalg.solve(-s.T, up[y - 1].T).T
        s = within[y - 1] + ratios[y] @ down[y]
    # pi_0 S_0 = 0 with sum(pi_0) = 1: replace one (redundant) balance equation by the normalisation.
    system = s.copy()
    system[:, 0] = 1.0
    rhs = np.zeros(system.shape[0])
    rhs[0] = 1.0
    levels = [np.clip(np.linalg.solve(system.T, rhs), 0.0, None)]
    log_scales = [0.0]
    for y in range(1, top + 1):
        raw = np.clip(levels[-1] @ ratios[y], 0.0, None)
        peak = float(raw.max())
        if peak <= 0.0 or not math.isfinite(log_scales[-1]):
            levels.append(np.zeros_like(raw))
            log_scales.append(-math.inf)
            continue
        levels.append(raw / peak)
        log_scales.append(log_scales[-1] + math.log(peak))
    biggest = max(log_scales)
    weighted = [lv * math.exp(ls - biggest) for lv, ls in zip(levels, log_scales, strict=True)]
    total = sum(float(lv.sum()) for lv in weighted)
    return [lv / total for lv in weighted]


def _mass(pi: list[np.ndarray], where: Callable[[np.ndarray, int], np.ndarray]) -> float:
    """Sum of pi over the states (x, y) for which `where(x_array, y)` holds (or of its weights)."""
    return float(sum(float(np.sum(lv * where(np.arange(lv.size), y))) for y, lv in enumerate(pi)))


def reservation_chain(channels: int, ivr_erlangs: float, agent_erlangs: float,
                      reserve: int) -> TwoClassBlocking:
    """Independent IVR (1 channel) and agent (2 channels) classes with the last `reserve` channels
    kept for agent calls: IVR admitted while `x + 2y + 1 <= C - R`, agents while `x + 2y + 2 <= C`.

    Holding times have mean 1, so the loads in erlangs are the arrival rates. Blocking is the
    stationary mass of the states where the class is refused (PASTA). With `reserve=0` this is the
    Kaufman–Roberts model, solved without the product form.
    """
    _check_channels(channels, limit=MAX_CHAIN_CHANNELS)
    _check_non_negative("ivr_erlangs", ivr_erlangs)
    _check_non_negative("agent_erlangs", agent_erlangs)
    _check_reserve(reserve, channels)
    ivr_limit = channels - reserve

    def moves(x: int, y: int) -> list[_Move]:
        n = x + 2 * y
        out: list[_Move] = [(x - 1, y, float(x)), (x, y - 1, float(y))]
        if n + 1 <= ivr_limit:
            out.append((x + 1, y, ivr_erlangs))
        if n + 2 <= channels:
            out.append((x, y + 1, agent_erlangs))
        return out

    pi = _stationary(channels, moves)
    ivr = _mass(pi, lambda x, y: x + 2 * y + 1 > ivr_limit)
    agent = _mass(pi, lambda x, y: x + 2 * y + 2 > channels)
    return TwoClassBlocking(ivr_blocking=ivr, agent_blocking=agent)


def transfer_chain(channels: int, arrivals_per_min: float, ivr_minutes: float, transfer_ratio: float,
                   agent_minutes: float, reserve: int = 0) -> TransferBlocking:
    """Exact chain of callers who start in the IVR (1 channel) and may grow to an agent call (2).

    New calls arrive at `arrivals_per_min` and are admitted while `x + 2y + 1 <= C - R`. An IVR call
    lasts `ivr_minutes` on average (exponential); at its end it asks for an agent with probability
    `transfer_ratio`. The transfer is granted while `x + 2y + 1 <= C` (`(x, y) -> (x-1, y+1)`),
    otherwise the caller hears "all lines busy" and is released. Agent calls last `agent_minutes`.

    `transfer_blocking` is the refused share of transfer requests: requests arrive at rate
    `x * transfer_ratio / ivr_minutes`, so it is `E[X; refused] / E[X]` (the ratio cancels; with
    `transfer_ratio = 0` it is the share that *would* be refused). 0 when no IVR call is ever up.
    """
    _check_channels(channels, limit=MAX_CHAIN_CHANNELS)
    _check_non_negative("arrivals_per_min", arrivals_per_min)
    _check_positive("ivr_minutes", ivr_minutes)
    _check_positive("agent_minutes", agent_minutes)
    _check_ratio("transfer_ratio", transfer_ratio)
    _check_reserve(reserve, channels)
    new_limit = channels - reserve
    ivr_end, agent_end = 1.0 / ivr_minutes, 1.0 / agent_minutes

    def moves(x: int, y: int) -> list[_Move]:
        n = x + 2 * y
        granted = n + 1 <= channels
        asks = x * ivr_end * transfer_ratio
        out: list[_Move] = [(x - 1, y, x * ivr_end * (1.0 - transfer_ratio) + (0.0 if granted else asks)),
                            (x, y - 1, y * agent_end)]
        if granted:
            out.append((x - 1, y + 1, asks))
        if n + 1 <= new_limit:
            out.append((x + 1, y, arrivals_per_min))
        return out

    pi = _stationary(channels, moves)
    new_blocking = _mass(pi, lambda x, y: x + 2 * y + 1 > new_limit)
    mean_x = _mass(pi, lambda x, y: x)
    refused_x = _mass(pi, lambda x, y: x * (x + 2 * y + 1 > channels))
    return TransferBlocking(
        new_call_blocking=new_blocking,
        transfer_blocking=refused_x / mean_x if mean_x > 0.0 else 0.0,
        mean_ivr_calls=mean_x,
        mean_agent_calls=_mass(pi, lambda x, y: np.full(x.shape, y)),
    )
