"""Pure parts of the SNMP code: rows <-> view, change detection, notification decoding, secrets."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.snmp.changes import changes
from ccfo.domain.capacity import HostLoad
from ccfo.domain.site import CapacityPolicy
from ccfo.snmp import layout as L
from ccfo.snmp.decode import decode_notification
from ccfo.snmp.security import NotifyTarget, Secret, V3User, engine_id_for
from ccfo.snmp.view import HostView, ServiceView, SpanView, TrunkView, capacity_fields
from tests.snmp.conftest import sample_view

LAY = L.Layout()


def as_polled(view: HostView, lay: L.Layout = LAY) -> dict[L.Oid, int | bytes]:
    return {o: (t.value.encode() if t.kind == "str" else t.value) for o, t in L.view_rows(view, lay)}  # type: ignore


names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
views = st.builds(
    HostView,
    host=names, role=st.sampled_from(["primary", "standby"]),
    duty=st.sampled_from(["primary", "standby", "takeover", "out"]),
    mode=st.sampled_from(["automatic", "supervised", "manual", "maintenance"]),
    services=st.lists(st.builds(ServiceView, name=names, state=st.sampled_from(list(L.SERVICE_STATE)),
                                last_change=st.one_of(st.none(), st.integers(1, 2**31).map(float))),
                      max_size=8).map(tuple),
    spans=st.lists(st.integers(1, 64), unique=True, max_size=4).flatmap(lambda ns: st.tuples(*(
        st.builds(SpanView, span=st.just(n), alarm=st.sampled_from(list(L.SPAN_ALARM)),
                  dchannel_up=st.one_of(st.none(), st.booleans()), channels=st.integers(0, 31)) for n in ns))),
    driver_up=st.one_of(st.none(), st.booleans()), ami_connected=st.booleans(),
    channels=st.integers(0, 120), ivr_calls=st.integers(0, 120), agent_calls=st.integers(0, 60),
    fax_calls=st.integers(0, 4), free=st.integers(0, 120), reserve=st.integers(0, 10), used=st.integers(0, 240),
    fax_channels=st.integers(0, 8),
    trunks=st.lists(st.builds(TrunkView, name=names, driver=st.sampled_from(["pjsip", "sip"]),
                              up=st.one_of(st.none(), st.booleans()), channels=st.integers(1, 10000)),
                    max_size=4).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(views)
def test_rows_parse_back_to_the_same_view(view: HostView) -> None:
    # the MIB table is ordered by span number; the view may list spans in any order
    assert L.parse_view(as_polled(view), LAY) == replace(view, spans=tuple(sorted(view.spans, key=lambda s: s.span)))


def test_trunks_are_a_table_in_configuration_order() -> None:
    view = sample_view(trunks=(TrunkView("carrier-1", "pjsip", True, 30), TrunkView("old", "sip", None, 10)))
    rows = dict(L.view_rows(view, LAY))
    assert rows[LAY.trunk(L.TRUNK_NAME_COL, 1)].value == "carrier-1"
    assert rows[LAY.trunk(L.TRUNK_DRIVER_COL, 2)].value == 2 and rows[LAY.trunk(L.TRUNK_STATE_COL, 2)].value == 3
    assert (rows[LAY.trunk(L.TRUNK_CHANNELS_COL, 1)].kind, rows[LAY.trunk(L.TRUNK_CHANNELS_COL, 1)].value) == (
        "gauge", 30)
    assert LAY.trunk(L.TRUNK_STATE_COL, 1) == (*LAY.root, 1, 2, 3, 1, 4, 1)


def test_rows_are_sorted_and_carry_the_standard_dsx1_line_status() -> None:
    view = sample_view(spans=(SpanView(1, "Red Alarm", False, 30), SpanView(2, "yellow", True, 30),
                              SpanView(3, "blue", None, 30), SpanView(4, "recovering", True, 30)))
    rows = L.view_rows(view, LAY)
    assert [o for o, _ in rows] == sorted(o for o, _ in rows)
    got = {o[-1]: t.value for o, t in rows if o[:-1] == L.DSX1_LINE_STATUS}
    assert got == {1: 32, 2: 2, 3: 8, 4: 4096}  # red: lossOfFrame, yellow: rcvFarEndLOF, blue: rcvAIS, other
    assert dict(rows)[LAY.span(L.SPAN_ALARM_COL, 1)].value == L.SPAN_ALARM["red"]


def test_date_and_time_round_trip_and_unknown() -> None:
    assert L.decode_date(L.encode_date(1795427911.3)) == pytest.approx(1795427911.3, abs=0.01)
    assert L.decode_date(L.encode_date(None)) is None
    with pytest.raises(ValueError):
        L.decode_date(b"\x07")


def test_parse_view_rejects_a_wrong_type() -> None:
    polled = as_polled(sample_view())
    polled[LAY.host_role] = b"primary"
    with pytest.raises(ValueError, match="expected a number"):
        L.parse_view(polled, LAY)


def kinds(old: HostView | None, new: HostView) -> list[L.Notification]:
    return [o.kind for o in changes(old, new, LAY)]


def test_first_view_is_a_baseline() -> None:
    assert kinds(None, sample_view(spans=(SpanView(1, "red", False, 30),))) == []


def test_span_alarm_raise_change_and_clear() -> None:
    ok = sample_view()
    red = sample_view(spans=(SpanView(1, "ok", True, 30), SpanView(2, "red", True, 30)))
    yellow = sample_view(spans=(SpanView(1, "ok", True, 30), SpanView(2, "yellow", True, 30)))
    assert kinds(ok, red) == [L.Notification.SPAN_ALARM_RAISED]
    assert kinds(red, yellow) == [L.Notification.SPAN_ALARM_RAISED]
    assert kinds(yellow, ok) == [L.Notification.SPAN_ALARM_CLEARED]
    assert kinds(ok, ok) == []
    out = changes(ok, red, LAY)[0]
    binds = dict(out.varbinds)
    assert binds[LAY.host_name].value == "ipc-a"
    assert binds[LAY.span(L.SPAN_ALARM_COL, 2)].value == L.SPAN_ALARM["red"]
    assert binds[LAY.span(L.SPAN_DSX1_COL, 2)].value == 32


def test_dchannel_service_driver_ami_and_role_changes() -> None:
    base = sample_view()
    assert kinds(base, sample_view(spans=(SpanView(1, "ok", False, 30), SpanView(2, "ok", True, 30)))) == [
        L.Notification.DCHANNEL_DOWN]
    assert kinds(base, sample_view(spans=(SpanView(1, "ok", None, 30), SpanView(2, "ok", True, 30)))) == []
    svc = replace(base, services=(ServiceView("cti", "failed", 1.0), *base.services[1:]))
    assert kinds(base, svc) == [L.Notification.SERVICE_DOWN]
    assert kinds(svc, base) == [L.Notification.SERVICE_UP]
    inactive_to_failed = replace(base, services=(*base.services[:2], ServiceView("kcxp", "failed", None)))
    assert kinds(base, inactive_to_failed) == [L.Notification.SERVICE_DOWN]
    assert kinds(base, replace(base, driver_up=False)) == [L.Notification.DRIVER_DOWN]
    assert kinds(replace(base, driver_up=None), base) == [L.Notification.DRIVER_UP]
    assert kinds(base, replace(base, ami_connected=False)) == [L.Notification.AMI_LOST]
    assert kinds(replace(base, ami_connected=False), base) == [L.Notification.AMI_RESTORED]
    assert kinds(base, replace(base, duty="out")) == [L.Notification.ROLE_CHANGED]
    assert kinds(base, replace(base, mode="maintenance")) == [L.Notification.ROLE_CHANGED]
    assert kinds(base, replace(base, ivr_calls=3, free=57)) == []  # capacity moves are polled, not notified


def test_trunk_down_and_up_are_notified_with_their_row() -> None:
    up = sample_view(trunks=(TrunkView("carrier-1", "pjsip", True, 30), TrunkView("old", "sip", True, 10)))
    down = replace(up, trunks=(up.trunks[0], TrunkView("old", "sip", False, 10)))
    unknown = replace(up, trunks=(up.trunks[0], TrunkView("old", "sip", None, 10)))
    assert kinds(up, down) == [L.Notification.TRUNK_DOWN] and kinds(down, up) == [L.Notification.TRUNK_UP]
    assert kinds(up, unknown) == [] and kinds(unknown, down) == []  # unknown says nothing about the line
    out = changes(up, down, LAY)[0]
    binds = [(L.SNMP_TRAP_OID, LAY.notification(out.kind))]
    binds += [(o, t.value.encode() if t.kind == "str" else t.value) for o, t in out.varbinds]
    got = decode_notification(LAY, binds)
    assert (got.kind, got.host, got.trunk) == (L.Notification.TRUNK_DOWN, "ipc-a", "old")
    assert got.fields == {"trunk_index": 2, "trunk_up": False, "channels": 10}


def test_decode_what_changes_sends() -> None:
    base = sample_view()
    red = sample_view(spans=(SpanView(1, "ok", True, 30), SpanView(2, "red", False, 30)))
    for out in changes(base, red, LAY):
        binds = [(L.SNMP_TRAP_OID, LAY.notification(out.kind))]
        binds += [(o, t.value.encode() if t.kind == "str" else t.value) for o, t in out.varbinds]
        got = decode_notification(LAY, binds)
        assert got.kind is out.kind and got.host == "ipc-a" and got.span == 2
        assert got.fields["alarm"] == "red" and got.fields["dchannel_up"] is False
    svc = changes(base, replace(base, services=(ServiceView("cti", "failed", 1795427999.0), *base.services[1:])),
                  LAY)[0]
    binds = [(L.SNMP_TRAP_OID, LAY.notification(svc.kind))]
    binds += [(o, t.value.encode() if t.kind == "str" else t.value) for o, t in svc.varbinds]
    got = decode_notification(LAY, binds)
    assert (got.service, got.fields["state"], got.fields["last_change"]) == ("cti", "failed", 1795427999.0)


def test_decode_foreign_and_malformed() -> None:
    cold_start = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
    assert decode_notification(LAY, [(L.SNMP_TRAP_OID, cold_start)]).kind is None
    with pytest.raises(ValueError, match="snmpTrapOID"):
        decode_notification(LAY, [(LAY.host_name, b"ipc-a")])
    with pytest.raises(ValueError, match="expected an OCTET STRING"):
        decode_notification(LAY, [(L.SNMP_TRAP_OID, LAY.notification(L.Notification.AMI_LOST)), (LAY.host_name, 7)])


def test_secrets_never_print() -> None:
    user = V3User("ccfo", Secret("super-secret-auth"), Secret("super-secret-priv"))
    target = NotifyTarget("nms", "127.0.0.1", 162, "inform", user=user)
    for text in (repr(user), str(user), repr(target), target.describe(), repr(Secret("x" * 9))):
        assert "super-secret" not in text and "xxxxxxxxx" not in text
    with pytest.raises(ValueError, match="shorter than 8"):
        V3User("ccfo", Secret("short"), Secret("long-enough"))
    with pytest.raises(ValueError, match="exactly one"):
        NotifyTarget("nms", "127.0.0.1")


def test_secret_from_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "key"
    path.write_text("from-a-file-123\n")
    assert Secret.from_file(path).reveal() == "from-a-file-123"
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        Secret.from_file(path)


def test_engine_id_format() -> None:
    eid = engine_id_for(32473, "ipc-a")
    assert eid.hex() == "80007ed904" + b"ipc-a".hex()


def test_capacity_fields_use_the_capacity_core() -> None:
    fields = capacity_fields(30, HostLoad(26, 2, 1), CapacityPolicy(reserve_for_transfers=2), 4)
    assert fields == {"channels": 30, "ivr_calls": 26, "agent_calls": 2, "fax_calls": 1, "free": 0, "reserve": 2,
                      "used": 30, "fax_channels": 4}
    view = HostView("ipc-b", "standby", "takeover", "automatic", **capacity_fields(30, HostLoad(40, 0),
                                                                                   CapacityPolicy()))
    assert (view.used, view.free) == (40, 0)  # over-full (a span went down under load): free floors at 0


def test_hung_service_and_hung_ami_have_their_own_values_and_notifications() -> None:
    view = sample_view(services=(ServiceView("cti", "hung", 1795427911.0), ServiceView("ivr", "inactive", None)),
                       ami_connected=False, ami_hung=True)
    rows = dict(L.view_rows(view, LAY))
    assert rows[LAY.ami_link].value == 4 and L.SERVICE_STATE["hung"] == 7
    assert rows[LAY.service(L.SVC_STATE_COL, 1)].value == 7
    assert rows[LAY.service(L.SVC_STATE_COL, 2)].value == L.SERVICE_STATE["inactive"]
    back = L.parse_view(as_polled(view), LAY)
    assert back.ami_hung and not back.ami_connected and back.service("cti").state == "hung"  # type: ignore[union-attr]
    lost = replace(view, ami_hung=False)
    assert dict(L.view_rows(lost, LAY))[LAY.ami_link].value == L.DOWN
    assert not L.parse_view(as_polled(lost), LAY).ami_hung
    out = changes(lost, view, LAY)  # lost -> hung: a notification whose varbind says hung(4)
    assert [o.kind for o in out] == [L.Notification.AMI_LOST]
    assert dict(out[0].varbinds)[LAY.ami_link].value == 4
