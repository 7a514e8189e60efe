"""The X+2Y channel-capacity model, per host, and what the site can carry in each scenario.

An IVR-only call holds one channel; a caller transferred to a human agent holds two (the caller's leg
and the agent's leg sit on the same board). On a host with C usable channels: ``X + 2Y <= C``. The
rule is per host because both legs of an agent call must be on one board: 60 + 30 channels do not make
one pool of 90 for agent calls. Channels reserved for transfers may be used by agent transfers only.
C comes from two sources, counted alike: the bearer channels of healthy PRI spans and the channel limits
of SIP trunks that are up (`live_channels`). With no live data at all (AMI down) admission follows the
host's explicit per-kind policy (`admit_unknown`). Pure: no I/O; callers pass live counts in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ccfo.domain.site import CapacityPolicy, DirectionLimits, Host, Role, Site


class CallKind(StrEnum):
    IVR = "ivr"  # a new caller entering the IVR: 1 channel
    AGENT = "agent"  # transferring an IVR caller to an agent: +1 channel (the caller already holds one)
    FAX = "fax"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class HostLoad:
    """Live calls on one host. Direction counts are channels (not calls) per direction."""

    ivr_calls: int = 0
    agent_calls: int = 0
    fax_calls: int = 0
    inbound_channels: int = 0
    outbound_channels: int = 0

    def channels_used(self, policy: CapacityPolicy) -> int:
        return self.ivr_calls * policy.channels_per_ivr_call + self.agent_calls * policy.channels_per_agent_call


@dataclass(frozen=True, slots=True)
class Admission:
    admit: bool
    reason: str


def admit(
    channels: int,
    load: HostLoad,
    kind: CallKind,
    policy: CapacityPolicy,
    *,
    fax_channels: int = 0,
    direction: Direction | None = None,
    limits: DirectionLimits | None = None,
) -> Admission:
    """Can this host take one more call of `kind` now?

    A new IVR call needs ``X + 2Y + 1 <= C - reserve``; a transfer to an agent turns an IVR call into an
    agent call and needs ``X + 2Y + 1 <= C`` (it may use the reserve). Fax has its own pool.
    """
    used = load.channels_used(policy)
    if kind is CallKind.FAX:
        if load.fax_calls + 1 > fax_channels:
            return Admission(False, f"fax pool full ({load.fax_calls}/{fax_channels})")
        return Admission(True, f"fax {load.fax_calls + 1}/{fax_channels}")
    if kind is CallKind.IVR:
        extra = policy.channels_per_ivr_call
        limit = channels - policy.reserve_for_transfers
        what = f"C - reserve = {channels} - {policy.reserve_for_transfers}"
    else:
        extra = policy.channels_per_agent_call - policy.channels_per_ivr_call
        limit = channels
        what = f"C = {channels}"
    if used + extra > limit:
        return Admission(
            False,
            f"no room: X + 2Y = {load.ivr_calls} + 2*{load.agent_calls} = {used}, "
            f"+{extra} would exceed {what}",
        )
    refused = _direction_refusal(load, extra, direction, limits or DirectionLimits())
    if refused:
        return Admission(False, refused)
    return Admission(True, f"X + 2Y = {used} + {extra} <= {limit}")


@dataclass(frozen=True, slots=True)
class UnknownPolicy:
    """Per call kind: admit (True) or refuse (False) when the live capacity cannot be known (AMI down)."""

    ivr: bool = True
    agent: bool = True
    fax: bool = True

    def admits(self, kind: CallKind) -> bool:
        return bool(getattr(self, kind.value))


def admit_unknown(kind: CallKind, policy: UnknownPolicy, why: str, *, source: str = "ami_down policy") -> Admission:
    """The answer when C, X and Y cannot be known (`why`, e.g. "AMI down (connection refused)"): the
    configured policy for this kind decides, and the reason says why there was no figure to judge by."""
    verdict = "admitted" if policy.admits(kind) else "refused"
    return Admission(policy.admits(kind), f"{why}: live calls unknown; {kind.value} {verdict} by the {source}")


def live_channels(healthy_span_channels: Iterable[int], up_trunk_channels: Iterable[int]) -> int:
    """C now: the bearer channels of the healthy spans plus the channel limits of the trunks that are up."""
    return sum(healthy_span_channels) + sum(up_trunk_channels)


def _direction_refusal(load: HostLoad, extra: int, direction: Direction | None,
                       limits: DirectionLimits) -> str | None:
    if (direction is Direction.INBOUND and limits.inbound_max is not None
            and load.inbound_channels + extra > limits.inbound_max):
        return f"inbound limit {limits.inbound_max} reached ({load.inbound_channels} in use)"
    if (direction is Direction.OUTBOUND and limits.outbound_max is not None
            and load.outbound_channels + extra > limits.outbound_max):
        return f"outbound limit {limits.outbound_max} reached ({load.outbound_channels} in use)"
    return None


def max_ivr_calls(channels: int, agent_calls: int, policy: CapacityPolicy) -> int | None:
    """How many IVR calls fit beside `agent_calls` on one host (None: the agent calls alone don't fit)."""
    if channels <= 0:
        return None if agent_calls > 0 else 0
    if agent_calls * policy.channels_per_agent_call > channels:
        return None
    room = channels - policy.reserve_for_transfers - agent_calls * policy.channels_per_agent_call
    return max(0, room // policy.channels_per_ivr_call)


def max_agent_calls(channels: int, policy: CapacityPolicy) -> int:
    return max(0, channels) // policy.channels_per_agent_call


class Scenario(StrEnum):
    NORMAL = "normal"
    PRIMARY_DOWN = "primary-down"
    STANDBY_DOWN = "standby-down"


@dataclass(frozen=True, slots=True)
class HostCapacity:
    channels: int
    max_ivr_calls: int  # with no agent calls
    max_agent_calls: int  # with no IVR calls
    in_service: bool
    agent_calls: int = 0  # agent calls placed here in the best fit
    ivr_calls_that_fit: int | None = None  # beside those agent calls (None: no fit)


@dataclass(frozen=True, slots=True)
class SiteCapacity:
    scenario: str
    agent_calls: int
    max_ivr_calls: int | None  # None: the agent calls do not fit at all
    max_agent_calls: int
    hosts: Mapping[str, HostCapacity]
    placement: Mapping[str, int] = field(default_factory=dict)  # agent calls per host in the best fit

    @property
    def channels(self) -> int:
        return sum(h.channels for h in self.hosts.values())


def host_channels(host: Host, down_spans: Iterable[int] = (), down_trunks: Iterable[str] = ()) -> int:
    """Bearer channels of the host's spans that are not down plus the channels of its trunks that are not."""
    down, gone = set(down_spans), set(down_trunks)
    return live_channels((s.channels for s in host.board.spans if s.number not in down),
                         (t.channels for t in host.trunks if t.name not in gone))


def scenario_channels(site: Site, scenario: Scenario, down_spans: Mapping[str, Iterable[int]],
                      down_trunks: Mapping[str, Iterable[str]] | None = None) -> dict[str, int]:
    """Usable channels per host under a named scenario plus explicit span and trunk outages."""
    out: dict[str, int] = {}
    for host in site.hosts:
        gone = (scenario is Scenario.PRIMARY_DOWN and host.role is Role.PRIMARY) or (
            scenario is Scenario.STANDBY_DOWN and host.role is Role.STANDBY
        )
        out[host.id] = 0 if gone else host_channels(host, down_spans.get(host.id, ()),
                                                    (down_trunks or {}).get(host.id, ()))
    return out


def site_capacity(channels: Mapping[str, int], agent_calls: int, policy: CapacityPolicy,
                  scenario: str = "normal") -> SiteCapacity:
    """Best placement of `agent_calls` across hosts, maximising the IVR calls that still fit.

    A small dynamic programme over hosts: with two or three hosts and at most a few hundred calls it is
    instant, and unlike a greedy fill it stays exact when the reserve makes marginal costs uneven.
    """
    names = list(channels)
    hosts = {
        n: HostCapacity(c, max_ivr_calls(c, 0, policy) or 0, max_agent_calls(c, policy), c > 0)
        for n, c in channels.items()
    }
    total_agents = sum(h.max_agent_calls for h in hosts.values())
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    for name in names:
        nxt: dict[int, tuple[int, tuple[int, ...]]] = {}
        for used, (ivr, place) in best.items():
            for y in range(min(hosts[name].max_agent_calls, agent_calls - used), -1, -1):  # ties: earlier hosts
                fit = max_ivr_calls(channels[name], y, policy)
                if fit is None:
                    continue
                cand = (ivr + fit, (*place, y))
                if used + y not in nxt or cand[0] > nxt[used + y][0]:
                    nxt[used + y] = cand
        best = nxt
    if agent_calls < 0 or agent_calls not in best:
        return SiteCapacity(scenario, agent_calls, None, total_agents, hosts)
    ivr, place = best[agent_calls]
    placed = {
        n: replace(hosts[n], agent_calls=y, ivr_calls_that_fit=max_ivr_calls(channels[n], y, policy))
        for n, y in zip(names, place, strict=True)
    }
    return SiteCapacity(scenario, agent_calls, ivr, total_agents, placed, {n: placed[n].agent_calls for n in names})
