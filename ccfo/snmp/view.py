"""What the SNMP responder serves: one frozen picture of the host, built by the agent from its live model.

The agent (AMI model, service backends, controller state) folds what it knows into a `HostView`; the
responder reads it through a callable on every request and compares consecutive views to find the
changes its notifications name. The controller's SNMP poller parses an agent's MIB back into the same
type. Pure values, no pysnmp, no I/O.

Field vocabularies (strings, so the domain's StrEnums can be passed as they are; anything else reads as
"unknown" on the wire):
* role: primary | standby                         (the host's designed role)
* duty: primary | standby | takeover | out        (what it is doing now)
* mode: automatic | supervised | manual | maintenance
* service state: active | inactive | failed | activating | deactivating | hung | unknown
* span alarm: ok | red | yellow | blue | recovering | loopback | not_open | los | unknown
* trunk: driver pjsip | sip, state up | down | unknown
  (chan_dahdi's texts such as "Red Alarm" and "No Alarm" are accepted too)
"""

from __future__ import annotations

from dataclasses import dataclass

from ccfo.domain.capacity import HostLoad
from ccfo.domain.site import CapacityPolicy


@dataclass(frozen=True, slots=True)
class ServiceView:
    name: str
    state: str
    last_change: float | None = None  # epoch seconds (UTC); None: not known


@dataclass(frozen=True, slots=True)
class SpanView:
    span: int
    alarm: str
    dchannel_up: bool | None  # None: not known (no AMI link, or not a PRI span)
    channels: int


@dataclass(frozen=True, slots=True)
class TrunkView:
    name: str
    driver: str  # pjsip | sip
    up: bool | None  # None: not known (no AMI link, or not listed since it connected)
    channels: int


@dataclass(frozen=True, slots=True)
class HostView:
    host: str
    role: str
    duty: str
    mode: str
    services: tuple[ServiceView, ...] = ()
    spans: tuple[SpanView, ...] = ()
    driver_up: bool | None = None  # None: not known
    ami_connected: bool = False
    ami_hung: bool = False  # not connected because Asterisk stopped answering (ccfoAmiLink hung(4), not down(2))
    channels: int = 0  # C: usable bearer channels now
    ivr_calls: int = 0  # X
    agent_calls: int = 0  # Y
    fax_calls: int = 0
    free: int = 0  # C - (X + 2Y), floored at 0
    reserve: int = 0  # channels kept back for agent transfers
    used: int = 0  # X + 2Y (per the capacity policy)
    fax_channels: int = 0
    trunks: tuple[TrunkView, ...] = ()  # the host's SIP trunks, in configuration order

    def service(self, name: str) -> ServiceView | None:
        return next((s for s in self.services if s.name == name), None)

    def span(self, number: int) -> SpanView | None:
        return next((s for s in self.spans if s.span == number), None)


def capacity_fields(channels: int, load: HostLoad, policy: CapacityPolicy, fax_channels: int = 0) -> dict[str, int]:
    """The view's capacity fields from the live load, with the capacity core's X+2Y (`channels_used`).

    Usage: `HostView(host, role, duty, mode, ..., **capacity_fields(c, load, policy, fax))`.
    """
    used = load.channels_used(policy)
    return {"channels": channels, "ivr_calls": load.ivr_calls, "agent_calls": load.agent_calls,
            "fax_calls": load.fax_calls, "free": max(0, channels - used), "reserve": policy.reserve_for_transfers,
            "used": used, "fax_channels": fax_channels}
