"""CCFO-MIB's OID layout and value codings, shared by the agent's responder and the controller's manager.

`agents/mib/CCFO-MIB.txt` is the contract; this module is its numeric twin (tests check the two agree
through `snmptranslate`). It turns a `HostView` into typed (OID, value) rows and back, and names the
notifications. Pure: no pysnmp here (the adapters convert `Typed` values to pysnmp types), no I/O, so
the controller can import it without pulling in the agent.

Layout under ccfoMIB = 1.3.6.1.4.1.<enterprise>.1 (enterprise 32473 unless the site sets its own):
  .0.N                notifications (agent 1..13, controller 20..24)
  .1.1.{1..5}.0       host: name, role, duty, mode, AMI link
  .1.2.1.0            board driver
  .1.2.2.1.C.<span>   span table: 2 alarm, 3 D-channel, 4 bearer channels, 5 dsx1LineStatus bit map
  .1.2.3.1.C.<i>      SIP trunk table: 2 name, 3 driver, 4 state, 5 channels
  .1.3.1.1.C.<i>      service table: 2 name, 3 state, 4 last change (DateAndTime)
  .1.4.{1..8}.0       capacity: C, X, Y, fax calls, free, reserve, X+2Y, fax channels
  .1.5.{1..6}         controller event objects (accessible-for-notify)
Standard objects also served: system group 1.3.6.1.2.1.1 and DS1-MIB dsx1LineStatus.<span>.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, NamedTuple

from ccfo.snmp.view import HostView, ServiceView, SpanView, TrunkView

Oid = tuple[int, ...]
DOC_ENTERPRISE = 32473  # RFC 5612: reserved for documentation
PRODUCT_ARC = 1  # ccfoMIB ::= { enterprises <enterprise> 1 }

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME = (*SYSTEM, 1, 0), (*SYSTEM, 2, 0), (*SYSTEM, 3, 0)
SYS_CONTACT, SYS_NAME, SYS_LOCATION, SYS_SERVICES = (*SYSTEM, 4, 0), (*SYSTEM, 5, 0), (*SYSTEM, 6, 0), (*SYSTEM, 7, 0)
SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
DSX1_LINE_STATUS = (1, 3, 6, 1, 2, 1, 10, 18, 6, 1, 10)  # DS1-MIB (RFC 4805) dsx1LineStatus column


class Typed(NamedTuple):
    """A value with its SNMP base type; the adapters map `kind` to the pysnmp class."""

    kind: Literal["int", "gauge", "str", "octets", "oid", "ticks"]
    value: int | str | bytes | Oid


class Notification(IntEnum):
    """CCFO-MIB notification types, by their arc under ccfoNotifications."""

    SPAN_ALARM_RAISED = 1
    SPAN_ALARM_CLEARED = 2
    DCHANNEL_DOWN = 3
    DCHANNEL_UP = 4
    SERVICE_DOWN = 5
    SERVICE_UP = 6
    DRIVER_DOWN = 7
    DRIVER_UP = 8
    AMI_LOST = 9
    AMI_RESTORED = 10
    ROLE_CHANGED = 11
    TRUNK_DOWN = 12
    TRUNK_UP = 13
    DECISION = 20
    PLAN_STARTED = 21
    PLAN_FINISHED = 22
    PLAN_FAILED = 23
    SITE_ROLE_CHANGED = 24


# Enumerations: text in the view <-> INTEGER on the wire; "unknown" is the fallback of each.
ROLE = {"primary": 1, "standby": 2, "unknown": 3}
DUTY = {"primary": 1, "standby": 2, "takeover": 3, "out": 4, "unknown": 5}
MODE = {"automatic": 1, "supervised": 2, "manual": 3, "maintenance": 4, "unknown": 5}
SERVICE_STATE = {"active": 1, "inactive": 2, "failed": 3, "activating": 4, "deactivating": 5, "unknown": 6,
                 "hung": 7}  # hung came later: after unknown, so the older numbers stay what they were
AMI_HUNG = 4  # ccfoAmiLink (CcfoAmiLinkState): up(1), down(2) = lost, unknown(3), hung(4)
SPAN_ALARM = {"ok": 1, "red": 2, "yellow": 3, "blue": 4, "recovering": 5, "loopback": 6, "not_open": 7,
              "los": 8, "unknown": 9}
UP, DOWN, UNKNOWN = 1, 2, 3
_ALARM_ALIASES = {"no alarm": "ok", "none": "ok", "red alarm": "red", "yellow alarm": "yellow",
                  "blue alarm": "blue", "not open": "not_open", "notopen": "not_open", "unknown alarm": "unknown"}
# dsx1LineStatus bits (RFC 4805): 1 noAlarm, 2 rcvFarEndLOF, 8 rcvAIS, 32 lossOfFrame, 64 lossOfSignal,
# 128 loopbackState, 4096 otherFailure.
DSX1 = {"ok": 1, "yellow": 2, "blue": 8, "red": 32, "los": 64, "loopback": 128}
DSX1_OTHER_FAILURE = 4096


def encode_enum(table: Mapping[str, int], text: str) -> int:
    return table.get(str(text).strip().lower(), table["unknown"])


def decode_enum(table: Mapping[str, int], number: int) -> str:
    return next((name for name, n in table.items() if n == number), "unknown")


def span_alarm_name(text: str) -> str:
    """Normalise an alarm text (ours or chan_dahdi's) to the view's vocabulary."""
    t = str(text).strip().lower()
    t = _ALARM_ALIASES.get(t, t)
    return t if t in SPAN_ALARM else "unknown"


def dsx1_line_status(alarm: str) -> int:
    return DSX1.get(span_alarm_name(alarm), DSX1_OTHER_FAILURE)


def encode_updown(flag: bool | None) -> int:
    return UNKNOWN if flag is None else (UP if flag else DOWN)


def decode_updown(number: int) -> bool | None:
    return {UP: True, DOWN: False}.get(number)


def encode_date(epoch: float | None) -> bytes:
    """SNMPv2-TC DateAndTime, 11 octets in UTC; epoch 0 stands for 'not known'."""
    t = dt.datetime.fromtimestamp(max(0.0, epoch or 0.0), tz=dt.UTC)
    return struct.pack(">HBBBBBBcBB", t.year, t.month, t.day, t.hour, t.minute, t.second,
                       t.microsecond // 100_000, b"+", 0, 0)


def decode_date(octets: bytes) -> float | None:
    if len(octets) not in (8, 11):
        raise ValueError(f"DateAndTime must be 8 or 11 octets, got {len(octets)}")
    year, month, day, hour, minute, sec, deci = struct.unpack(">HBBBBBB", octets[:8])
    offset = dt.timedelta(0)
    if len(octets) == 11:
        sign = -1 if octets[8:9] == b"-" else 1
        offset = sign * dt.timedelta(hours=octets[9], minutes=octets[10])
    t = dt.datetime(year, month, day, hour, minute, sec, deci * 100_000, tzinfo=dt.timezone(offset))
    epoch = t.timestamp()
    return None if epoch == 0 else epoch


@dataclass(frozen=True, slots=True)
class Layout:
    """Every OID of CCFO-MIB for one enterprise number."""

    enterprise: int = DOC_ENTERPRISE

    @property
    def root(self) -> Oid:
        return (1, 3, 6, 1, 4, 1, self.enterprise, PRODUCT_ARC)

    def notification(self, kind: Notification) -> Oid:
        return (*self.root, 0, int(kind))

    def kind_of(self, trap_oid: Oid) -> Notification | None:
        prefix = (*self.root, 0)
        if len(trap_oid) != len(prefix) + 1 or tuple(trap_oid[:-1]) != prefix:
            return None
        try:
            return Notification(trap_oid[-1])
        except ValueError:
            return None

    def obj(self, *arcs: int) -> Oid:
        return (*self.root, 1, *arcs)

    # scalars (instance OIDs, with the .0)
    @property
    def host_name(self) -> Oid:
        return self.obj(1, 1, 0)

    @property
    def host_role(self) -> Oid:
        return self.obj(1, 2, 0)

    @property
    def host_duty(self) -> Oid:
        return self.obj(1, 3, 0)

    @property
    def host_mode(self) -> Oid:
        return self.obj(1, 4, 0)

    @property
    def ami_link(self) -> Oid:
        return self.obj(1, 5, 0)

    @property
    def board_driver(self) -> Oid:
        return self.obj(2, 1, 0)

    def span(self, column: int, span: int) -> Oid:
        return self.obj(2, 2, 1, column, span)

    def service(self, column: int, index: int) -> Oid:
        return self.obj(3, 1, 1, column, index)

    def trunk(self, column: int, index: int) -> Oid:
        return self.obj(2, 3, 1, column, index)

    def capacity(self, arc: int) -> Oid:
        return self.obj(4, arc, 0)

    def event(self, arc: int) -> Oid:
        return self.obj(5, arc, 0)


# span table columns, service table columns, capacity arcs, event arcs
SPAN_ALARM_COL, SPAN_DCHANNEL_COL, SPAN_CHANNELS_COL, SPAN_DSX1_COL = 2, 3, 4, 5
SVC_NAME_COL, SVC_STATE_COL, SVC_CHANGE_COL = 2, 3, 4
TRUNK_NAME_COL, TRUNK_DRIVER_COL, TRUNK_STATE_COL, TRUNK_CHANNELS_COL = 2, 3, 4, 5
TRUNK_DRIVER = {"pjsip": 1, "sip": 2}
CAPACITY_FIELDS = ("channels", "ivr_calls", "agent_calls", "fax_calls", "free", "reserve", "used", "fax_channels")
EVENT_HOST, EVENT_RULE, EVENT_ACTION, EVENT_PLAN, EVENT_DUTY, EVENT_TEXT = 1, 2, 3, 4, 5, 6


def _i(n: int) -> Typed:
    return Typed("int", int(n))


def _g(n: int) -> Typed:
    return Typed("gauge", max(0, min(int(n), 2**32 - 1)))


def _s(text: str, limit: int = 255) -> Typed:
    return Typed("str", str(text)[:limit])


def host_rows(view: HostView, layout: Layout) -> list[tuple[Oid, Typed]]:
    """Host, board and capacity scalars."""
    rows = [
        (layout.host_name, _s(view.host, 64)),
        (layout.host_role, _i(encode_enum(ROLE, view.role))),
        (layout.host_duty, _i(encode_enum(DUTY, view.duty))),
        (layout.host_mode, _i(encode_enum(MODE, view.mode))),
        (layout.ami_link, _i(AMI_HUNG if view.ami_hung and not view.ami_connected
                             else encode_updown(view.ami_connected))),
        (layout.board_driver, _i(encode_updown(view.driver_up))),
    ]
    rows += [(layout.capacity(arc), _g(getattr(view, f))) for arc, f in enumerate(CAPACITY_FIELDS, start=1)]
    return rows


def span_rows(span: SpanView, layout: Layout) -> list[tuple[Oid, Typed]]:
    n = span.span
    return [
        (layout.span(SPAN_ALARM_COL, n), _i(encode_enum(SPAN_ALARM, span_alarm_name(span.alarm)))),
        (layout.span(SPAN_DCHANNEL_COL, n), _i(encode_updown(span.dchannel_up))),
        (layout.span(SPAN_CHANNELS_COL, n), _g(span.channels)),
        (layout.span(SPAN_DSX1_COL, n), _i(dsx1_line_status(span.alarm))),
    ]


def service_rows(index: int, svc: ServiceView, layout: Layout) -> list[tuple[Oid, Typed]]:
    return [
        (layout.service(SVC_NAME_COL, index), _s(svc.name, 64)),
        (layout.service(SVC_STATE_COL, index), _i(encode_enum(SERVICE_STATE, svc.state))),
        (layout.service(SVC_CHANGE_COL, index), Typed("octets", encode_date(svc.last_change))),
    ]


def trunk_rows(index: int, trunk: TrunkView, layout: Layout) -> list[tuple[Oid, Typed]]:
    return [
        (layout.trunk(TRUNK_NAME_COL, index), _s(trunk.name, 80)),
        (layout.trunk(TRUNK_DRIVER_COL, index), _i(TRUNK_DRIVER.get(trunk.driver, TRUNK_DRIVER["pjsip"]))),
        (layout.trunk(TRUNK_STATE_COL, index), _i(encode_updown(trunk.up))),
        (layout.trunk(TRUNK_CHANNELS_COL, index), _g(trunk.channels)),
    ]


def view_rows(view: HostView, layout: Layout) -> list[tuple[Oid, Typed]]:
    """Every CCFO-MIB object and DS1-MIB dsx1LineStatus instance for `view`, sorted by OID.

    Spans with a number outside 1..65535 and services or trunks past the 1024th are left out (the MIB's ranges).
    """
    rows = host_rows(view, layout)
    for span in view.spans:
        if 1 <= span.span <= 65535:
            rows += span_rows(span, layout)
            rows.append(((*DSX1_LINE_STATUS, span.span), _i(dsx1_line_status(span.alarm))))
    for index, svc in enumerate(view.services[:1024], start=1):
        rows += service_rows(index, svc, layout)
    for index, trunk in enumerate(view.trunks[:1024], start=1):
        rows += trunk_rows(index, trunk, layout)
    rows.sort(key=lambda r: r[0])
    return rows


def parse_view(values: Mapping[Oid, int | bytes], layout: Layout) -> HostView:
    """The inverse of `view_rows`: rebuild a HostView from polled values (ints and octet strings).

    Missing objects read as unknown / 0; a value of the wrong type raises ValueError.
    """

    def num(oid: Oid, default: int = 0) -> int:
        v = values.get(oid, default)
        if isinstance(v, bytes | bytearray):
            raise ValueError(f"{'.'.join(map(str, oid))}: expected a number, got octets")
        return int(v)

    def text(oid: Oid) -> str:
        v = values.get(oid, b"")
        if not isinstance(v, bytes | bytearray):
            raise ValueError(f"{'.'.join(map(str, oid))}: expected octets, got {type(v).__name__}")
        return bytes(v).decode("utf-8", "replace")

    span_prefix, svc_prefix = layout.obj(2, 2, 1, SPAN_ALARM_COL), layout.obj(3, 1, 1, SVC_NAME_COL)
    span_numbers = sorted(o[-1] for o in values if o[:-1] == span_prefix)
    indexes = sorted(o[-1] for o in values if o[:-1] == svc_prefix)
    spans = tuple(
        SpanView(n, decode_enum(SPAN_ALARM, num(layout.span(SPAN_ALARM_COL, n), 9)),
                 decode_updown(num(layout.span(SPAN_DCHANNEL_COL, n), UNKNOWN)),
                 num(layout.span(SPAN_CHANNELS_COL, n)))
        for n in span_numbers
    )
    services = tuple(
        ServiceView(text(layout.service(SVC_NAME_COL, i)),
                    decode_enum(SERVICE_STATE, num(layout.service(SVC_STATE_COL, i), 6)),
                    _date_or_none(values.get(layout.service(SVC_CHANGE_COL, i))))
        for i in indexes
    )
    trunk_prefix = layout.obj(2, 3, 1, TRUNK_NAME_COL)
    drivers = {v: k for k, v in TRUNK_DRIVER.items()}
    trunks = tuple(
        TrunkView(text(layout.trunk(TRUNK_NAME_COL, i)),
                  drivers.get(num(layout.trunk(TRUNK_DRIVER_COL, i), 1), "pjsip"),
                  decode_updown(num(layout.trunk(TRUNK_STATE_COL, i), UNKNOWN)),
                  num(layout.trunk(TRUNK_CHANNELS_COL, i)))
        for i in sorted(o[-1] for o in values if o[:-1] == trunk_prefix)
    )
    capacity = {f: num(layout.capacity(arc)) for arc, f in enumerate(CAPACITY_FIELDS, start=1)}
    return HostView(
        host=text(layout.host_name), role=decode_enum(ROLE, num(layout.host_role, 3)),
        duty=decode_enum(DUTY, num(layout.host_duty, 5)), mode=decode_enum(MODE, num(layout.host_mode, 5)),
        services=services, spans=spans, driver_up=decode_updown(num(layout.board_driver, UNKNOWN)),
        ami_connected=decode_updown(num(layout.ami_link, UNKNOWN)) is True,
        ami_hung=num(layout.ami_link, UNKNOWN) == AMI_HUNG, trunks=trunks, **capacity,
    )


def _date_or_none(v: int | bytes | None) -> float | None:
    if not isinstance(v, bytes | bytearray):
        return None
    return decode_date(bytes(v))
