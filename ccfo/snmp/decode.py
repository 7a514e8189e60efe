"""Reading a received notification's varbinds back into named CCFO-MIB fields.

`decode_notification(layout, varbinds)` takes plain (OID, value) pairs (ints, bytes, OID tuples; the
adapter converts pysnmp values first) and returns the notification type and the fields it carries, by
name. Pure: no pysnmp, no I/O. Raises `ValueError` for a notification that is malformed (no
snmpTrapOID.0, or a value of the wrong type); a well-formed notification that is not ours decodes with
`kind=None`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccfo.snmp import layout as L


@dataclass(frozen=True, slots=True)
class DecodedNotification:
    kind: L.Notification | None  # None: not a CCFO-MIB notification (coldStart, another vendor's, ...)
    trap_oid: L.Oid
    host: str | None = None  # ccfoHostName (agent) or ccfoEventHost (controller)
    span: int | None = None
    service: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    trunk: str | None = None  # ccfoTrunkName, in ccfoTrunkDown / ccfoTrunkUp

    @property
    def name(self) -> str:
        return self.kind.name.lower() if self.kind else ".".join(map(str, self.trap_oid))


def _text(v: Any, what: str) -> str:
    if not isinstance(v, bytes | bytearray):
        raise ValueError(f"{what}: expected an OCTET STRING, got {type(v).__name__}")
    return bytes(v).decode("utf-8", "replace")


def _num(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what}: expected a number, got {type(v).__name__}")
    return v


def decode_notification(lay: L.Layout, varbinds: Sequence[tuple[L.Oid, Any]]) -> DecodedNotification:
    trap_oid = next((v for o, v in varbinds if tuple(o) == L.SNMP_TRAP_OID), None)
    if not isinstance(trap_oid, tuple):
        raise ValueError("no snmpTrapOID.0 (or not an OID) in the notification")
    out = DecodedNotification(lay.kind_of(trap_oid), trap_oid)
    if out.kind is None:
        return out
    fields: dict[str, Any] = {}
    host = span = service = None
    scalars: dict[L.Oid, tuple[str, Any]] = {
        lay.host_role: ("role", L.ROLE), lay.host_duty: ("duty", L.DUTY), lay.host_mode: ("mode", L.MODE),
        lay.event(L.EVENT_DUTY): ("duty", L.DUTY),
    }
    texts = {lay.event(L.EVENT_RULE): "rule", lay.event(L.EVENT_ACTION): "action",
             lay.event(L.EVENT_PLAN): "plan_id", lay.event(L.EVENT_TEXT): "text"}
    span_entry, svc_entry, trunk_entry = lay.obj(2, 2, 1), lay.obj(3, 1, 1), lay.obj(2, 3, 1)
    trunk = None
    for raw_oid, value in varbinds:
        oid = tuple(raw_oid)
        where = ".".join(map(str, oid))
        if oid in (lay.host_name, lay.event(L.EVENT_HOST)):
            host = _text(value, where)
        elif oid in scalars:
            name, table = scalars[oid]
            fields[name] = L.decode_enum(table, _num(value, where))
        elif oid in texts:
            fields[texts[oid]] = _text(value, where)
        elif oid == lay.ami_link:
            fields["ami_connected"] = L.decode_updown(_num(value, where))
            fields["ami_hung"] = _num(value, where) == L.AMI_HUNG
        elif oid == lay.board_driver:
            fields["driver_up"] = L.decode_updown(_num(value, where))
        elif oid[:-2] == span_entry and len(oid) == len(span_entry) + 2:
            span = oid[-1]
            _span_field(fields, oid[-2], value, where)
        elif oid[:-2] == svc_entry and len(oid) == len(svc_entry) + 2:
            fields["service_index"] = oid[-1]
            service = _service_field(fields, oid[-2], value, where) or service
        elif oid[:-2] == trunk_entry and len(oid) == len(trunk_entry) + 2:
            fields["trunk_index"] = oid[-1]
            trunk = _trunk_field(fields, oid[-2], value, where) or trunk
    return DecodedNotification(out.kind, trap_oid, host, span, service, fields, trunk)


def _trunk_field(fields: dict[str, Any], column: int, value: Any, where: str) -> str | None:
    if column == L.TRUNK_NAME_COL:
        return _text(value, where)
    if column == L.TRUNK_STATE_COL:
        fields["trunk_up"] = L.decode_updown(_num(value, where))
    elif column == L.TRUNK_CHANNELS_COL:
        fields["channels"] = _num(value, where)
    return None


def _span_field(fields: dict[str, Any], column: int, value: Any, where: str) -> None:
    if column == L.SPAN_ALARM_COL:
        fields["alarm"] = L.decode_enum(L.SPAN_ALARM, _num(value, where))
    elif column == L.SPAN_DCHANNEL_COL:
        fields["dchannel_up"] = L.decode_updown(_num(value, where))
    elif column == L.SPAN_CHANNELS_COL:
        fields["channels"] = _num(value, where)
    elif column == L.SPAN_DSX1_COL:
        fields["dsx1_line_status"] = _num(value, where)


def _service_field(fields: dict[str, Any], column: int, value: Any, where: str) -> str | None:
    if column == L.SVC_NAME_COL:
        return _text(value, where)
    if column == L.SVC_STATE_COL:
        fields["state"] = L.decode_enum(L.SERVICE_STATE, _num(value, where))
    elif column == L.SVC_CHANGE_COL:
        octets = value if isinstance(value, bytes | bytearray) else b""
        if not octets:
            raise ValueError(f"{where}: expected DateAndTime octets")
        fields["last_change"] = L.decode_date(bytes(octets))
    return None
