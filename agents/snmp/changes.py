"""Which CCFO-MIB notifications a change between two consecutive host views calls for.

`changes(old, new, layout)` compares two `HostView`s and returns one `Outgoing` per change the MIB
names, with the varbinds its NOTIFICATION-TYPE lists (instance OIDs, typed values). Pure: the responder
sends them; tests check them without a network.

Rules:
* span alarm: ok -> anything else raises; a change between two alarms (yellow -> red) raises again;
  anything -> ok clears. A span that appears in alarm raises; a span that disappears sends nothing.
* D-channel: up -> down is down, down -> up is up; unknown on either side sends nothing (an AMI loss
  already has its own notification).
* service: entering "active" is up; leaving it, or moving between non-active states, is down.
  A new service that is not active is down. unknown -> unknown sends nothing.
* board driver and AMI link: transitions between up and down (unknown counts as not up for the driver).
* role changed: role, duty or mode differ.
* SIP trunk (by name): up -> down is down, down -> up is up; unknown on either side sends nothing.
The first view after start is a baseline: `changes(None, view)` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccfo.snmp.layout import (
    SPAN_ALARM_COL,
    SPAN_DCHANNEL_COL,
    SPAN_DSX1_COL,
    SVC_CHANGE_COL,
    SVC_NAME_COL,
    SVC_STATE_COL,
    TRUNK_CHANNELS_COL,
    TRUNK_NAME_COL,
    TRUNK_STATE_COL,
    Layout,
    Notification,
    Oid,
    Typed,
    host_rows,
    service_rows,
    span_alarm_name,
    span_rows,
    trunk_rows,
)
from ccfo.snmp.view import HostView, ServiceView, SpanView, TrunkView


@dataclass(frozen=True, slots=True)
class Outgoing:
    kind: Notification
    varbinds: tuple[tuple[Oid, Typed], ...]

    def describe(self) -> str:
        return f"{self.kind.name.lower()} " + " ".join(f"{'.'.join(map(str, o))}={t.value!r}" for o, t in self.varbinds)


def changes(old: HostView | None, new: HostView, layout: Layout) -> list[Outgoing]:
    if old is None:
        return []
    out: list[Outgoing] = []
    scalars = dict(host_rows(new, layout))
    name = (layout.host_name, scalars[layout.host_name])
    if (old.role, old.duty, old.mode) != (new.role, new.duty, new.mode):
        out.append(Outgoing(Notification.ROLE_CHANGED, (
            name, *((o, scalars[o]) for o in (layout.host_role, layout.host_duty, layout.host_mode)))))
    if (old.ami_connected, old.ami_hung) != (new.ami_connected, new.ami_hung):  # lost <-> hung is news too
        kind = Notification.AMI_RESTORED if new.ami_connected else Notification.AMI_LOST
        out.append(Outgoing(kind, (name, (layout.ami_link, scalars[layout.ami_link]))))
    if (old.driver_up is True) != (new.driver_up is True):
        kind = Notification.DRIVER_UP if new.driver_up else Notification.DRIVER_DOWN
        out.append(Outgoing(kind, (name, (layout.board_driver, scalars[layout.board_driver]))))
    for span in new.spans:
        out += _span_changes(old.span(span.span), span, name, layout)
    for index, svc in enumerate(new.services, start=1):
        out += _service_changes(old.service(svc.name), svc, index, name, layout)
    before = {t.name: t for t in old.trunks}
    for index, trunk in enumerate(new.trunks[:1024], start=1):
        out += _trunk_changes(before.get(trunk.name), trunk, index, name, layout)
    return out


def _trunk_changes(before: TrunkView | None, after: TrunkView, index: int, name: tuple[Oid, Typed],
                   layout: Layout) -> list[Outgoing]:
    if before is None or before.up is None or after.up is None or before.up == after.up:
        return []
    rows = dict(trunk_rows(index, after, layout))
    kind = Notification.TRUNK_UP if after.up else Notification.TRUNK_DOWN
    cols = (TRUNK_NAME_COL, TRUNK_STATE_COL, TRUNK_CHANNELS_COL)
    return [Outgoing(kind, (name, *((layout.trunk(c, index), rows[layout.trunk(c, index)]) for c in cols)))]


def _span_changes(before: SpanView | None, after: SpanView, name: tuple[Oid, Typed],
                  layout: Layout) -> list[Outgoing]:
    if not 1 <= after.span <= 65535:
        return []
    rows = dict(span_rows(after, layout))
    n = after.span
    alarm, dchan, dsx1 = (layout.span(c, n) for c in (SPAN_ALARM_COL, SPAN_DCHANNEL_COL, SPAN_DSX1_COL))
    out: list[Outgoing] = []
    was = span_alarm_name(before.alarm) if before else "ok"
    now = span_alarm_name(after.alarm)
    if was != now:
        kind = Notification.SPAN_ALARM_CLEARED if now == "ok" else Notification.SPAN_ALARM_RAISED
        out.append(Outgoing(kind, (name, (alarm, rows[alarm]), (dchan, rows[dchan]), (dsx1, rows[dsx1]))))
    was_up = before.dchannel_up if before else None
    if was_up is not None and after.dchannel_up is not None and was_up != after.dchannel_up:
        kind = Notification.DCHANNEL_UP if after.dchannel_up else Notification.DCHANNEL_DOWN
        out.append(Outgoing(kind, (name, (dchan, rows[dchan]), (alarm, rows[alarm]))))
    return out


def _service_changes(before: ServiceView | None, after: ServiceView, index: int, name: tuple[Oid, Typed],
                     layout: Layout) -> list[Outgoing]:
    if index > 1024:
        return []
    was = before.state.lower() if before else None
    now = after.state.lower()
    if was == now or (was is None and now in ("active", "unknown")):
        return []
    rows = dict(service_rows(index, after, layout))
    kind = Notification.SERVICE_UP if now == "active" else Notification.SERVICE_DOWN
    cols = (SVC_NAME_COL, SVC_STATE_COL, SVC_CHANGE_COL)
    return [Outgoing(kind, (name, *((layout.service(c, index), rows[layout.service(c, index)]) for c in cols)))]

