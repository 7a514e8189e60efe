"""The agent's pure AMI host model: X/Y/fax counting, span layout, alarms and driver state, no sockets.

The event streams come from the lab's simulated host (its `emit` hook), so the model is checked
against the same events a lab or real Asterisk would send, in the same order.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.ami import AmiMessage, CallCounts, DriverState, HostModel
from lab.ami.host import LabError, TelephonyHost


def msg(**headers: str) -> AmiMessage:
    return AmiMessage.from_pairs(headers.items())


def wired(model: HostModel, **kwargs: object) -> TelephonyHost:
    """A lab host whose events feed `model` directly."""
    def emit(name: str, _klass: str, fields: list[tuple[str, str]]) -> None:
        model.apply_event(AmiMessage.from_pairs([("Event", name), *fields]))

    return TelephonyHost([(1, 30), (2, 30)], 4, emit=emit, **kwargs)  # type: ignore[arg-type]


def pri_spans(*rows: tuple[int, int, str, str]) -> list[AmiMessage]:
    return [msg(Event="PRIShowSpans", Span=str(s), DChannel=str(d), Order="Primary", Active="Yes", Alarm=a, Up=u)
            for s, d, a, u in rows]


def test_layout_is_inferred_from_dchannel_positions() -> None:
    model = HostModel()
    model.reconcile_pri_spans(pri_spans((1, 16, "No", "Yes"), (2, 47, "No", "No"), (3, 86, "No", "Yes")))
    assert [(s.first, s.last, s.bearer) for s in model.spans.values()] == [(1, 31, 30), (32, 62, 30), (63, 86, 23)]
    status = model.spans_status()
    assert [(s.span, s.healthy, s.dchannel) for s in status] == [(1, True, True), (2, False, False), (3, True, True)]
    assert model.span_of(47) is model.spans[2] and model.span_of(63) is model.spans[3]


def test_configured_span_sizes_win_over_inference() -> None:
    model = HostModel(span_channels={1: 23})
    model.reconcile_pri_spans(pri_spans((1, 24, "No", "Yes")))
    assert model.spans[1].bearer == 23 and model.spans[1].last == 24


def test_alarm_texts_map_to_states() -> None:
    model = HostModel()
    model.reconcile_pri_spans(pri_spans((1, 16, "No", "Yes"), (2, 47, "No", "Yes")))
    for text, state in (("Red Alarm", "red"), ("Yellow Alarm", "yellow"), ("Blue Alarm", "blue"),
                        ("Recovering", "recovering"), ("Loopback", "loopback"), ("Unknown Alarm", "unknown")):
        assert model.apply_event(msg(Event="SpanAlarm", Span="1", Alarm=text))
        assert model.spans[1].alarm == state
    assert model.apply_event(msg(Event="AlarmClear", DAHDIChannel="5"))
    assert model.spans[1].alarm == "ok"
    assert model.apply_event(msg(Event="Alarm", DAHDIChannel="40", Alarm="Red Alarm")) and model.spans[2].alarm == "red"
    assert not model.apply_event(msg(Event="SpanAlarm", Span="9", Alarm="Red Alarm"))  # not a PRI span we know
    assert not model.apply_event(msg(Event="Alarm", DAHDIChannel="junk", Alarm="Red Alarm"))


def test_driver_state_from_events_and_lists() -> None:
    model = HostModel()
    assert model.driver is DriverState.UNKNOWN
    model.reconcile_pri_spans(pri_spans((1, 16, "No", "Yes"), (2, 47, "No", "Yes")))
    assert model.driver is DriverState.UP
    model.apply_event(msg(Event="SpanAlarm", Span="1", Alarm="Not Open"))
    assert model.driver is DriverState.UP  # one span not open is a span fault, not the driver
    model.apply_event(msg(Event="SpanAlarm", Span="2", Alarm="Not Open"))
    assert model.driver is DriverState.DOWN
    model.apply_event(msg(Event="SpanAlarmClear", Span="1"))
    assert model.driver is DriverState.UP
    model.reconcile_pri_spans([])
    model.reconcile_dahdi_channels([msg(Event="DAHDIShowChannels", DAHDIChannel=str(c), Alarm="Not Open")
                                    for c in (1, 2, 3)])
    assert model.driver is DriverState.DOWN and not any(s.dchannel for s in model.spans.values())
    model.chan_dahdi_missing()
    assert model.driver_detail == "chan_dahdi not loaded"


def test_reconcile_channels_classifies_fax_by_application() -> None:
    model = HostModel(fax_regex=None)
    model.reconcile_channels([
        msg(Event="CoreShowChannel", Channel="DAHDI/i1/1-1", Application="AGI", BridgeId=""),
        msg(Event="CoreShowChannel", Channel="DAHDI/i1/2-2", Application="Dial", BridgeId="b1"),
        msg(Event="CoreShowChannel", Channel="DAHDI/i2/3-1", Application="AppDial", BridgeId="b1"),
        msg(Event="CoreShowChannel", Channel="DAHDI/63-1", Application="ReceiveFAX", BridgeId=""),
        msg(Event="CoreShowChannel", Channel="SIP/agent1-0001", Application="AppDial", BridgeId="b2"),
        msg(Event="CoreShowChannel", Channel="DAHDI/i1/4-3", Application="Dial", BridgeId="b2"),
    ])
    # the last one is bridged with a non-board channel: it still holds only one board channel (X)
    assert model.counts() == CallCounts(ivr=2, agent=1, fax=1)


OPS = st.lists(st.tuples(st.sampled_from(["ivr", "agent", "fax", "transfer", "end", "red", "clear", "driver"]),
                         st.integers(min_value=0, max_value=40)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_event_driven_counts_match_the_lab_host(ops: list[tuple[str, int]]) -> None:
    model = HostModel()
    model.reconcile_pri_spans(pri_spans((1, 16, "No", "Yes"), (2, 47, "No", "Yes")))
    host = wired(model)
    for op, n in ops:
        ids = sorted(host.calls)
        try:
            if op == "ivr":
                host.start_ivr_call()
            elif op == "agent":
                host.start_agent_call()
            elif op == "fax":
                host.start_fax_call()
            elif op == "transfer" and ids:
                host.transfer_to_agent(ids[n % len(ids)])
            elif op == "end" and ids:
                host.end_call(ids[n % len(ids)])
            elif op in ("red", "clear"):
                host.set_span_alarm(1 + n % 2, op)
            elif op == "driver":
                (host.start_driver if not host.driver_running else host.stop_driver)()
        except LabError:
            pass  # no capacity, not an IVR call, ...: the host refused, nothing was emitted
        truth = host.counts()
        assert model.counts() == CallCounts(truth["ivr"], truth["agent"], truth["fax"])
        healthy = sum(s.channels for s in model.spans_status() if s.healthy)
        assert healthy == sum(s.bearer for s in host.spans.values() if host.span_healthy(s))


def test_configured_spans_asterisk_does_not_report_are_unknown_not_dropped() -> None:
    model = HostModel(span_channels={1: 30, 2: 30})
    assert model.spans_status() == (), "nothing is claimed before Asterisk has been asked"
    model.reconcile_pri_spans(pri_spans((1, 16, "No", "Yes")))  # span 2 is configured, Asterisk lists only 1
    status = model.spans_status()
    assert [(s.span, s.alarm, s.dchannel, s.channels, s.healthy) for s in status] == [
        (1, "ok", True, 30, True), (2, "unknown", None, 30, False)]
    model.reconcile_pri_spans([])  # no PRI span running at all: both still shown
    assert [(s.span, s.healthy) for s in model.spans_status()] == [(1, False), (2, False)]
