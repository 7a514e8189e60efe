"""The simulated telephony host behind one lab AMI server: spans, board driver, fax channels, calls.

It keeps the state a real Asterisk + chan_dahdi + DAHDI driver would have and emits the AMI events a
real one emits when that state changes (through the `emit` callback, already in wire order). It owns
no sockets and no event loop: delays are asked of the `schedule` callback, so the server can track
them. Fault semantics follow `shared/reference/ami-dahdi-pri.md`: a D-channel change raises no event,
span alarms are reported per `reportalarms`, a stopped driver leaves every channel `Not Open`.
SIP trunks (`trunks`: name, driver pjsip|sip, channel limit) carry calls too, on `PJSIP/NAME-...` or
`SIP/NAME-...` channels, once the spans have no free bearer (a SIP-only host has no span); a trunk made
unreachable takes no new call (the calls it carries stay up, as a failed qualify leaves dialogs alone).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from .channels import (
    ALARM_BITS,
    NOTOPEN,
    UNKNOWN,
    Call,
    Channel,
    LabTrunk,
    Span,
    alarm_text,
    bridge_fields,
    dahdi_channel_fields,
    hangup_fields,
    layout_spans,
)
from .sip_actions import device_code

Emit = Callable[[str, str, list[tuple[str, str]]], None]
Schedule = Callable[[float, Callable[[], None]], None]
REPORT_ALARMS = ("channels", "spans", "all", "none")


class LabError(Exception):
    """A lab control request that cannot be carried out; `status` is the HTTP status to answer with."""

    status = 400


class NoCapacity(LabError):
    status = 409


class UnknownCall(LabError):
    status = 404


class TelephonyHost:
    """State of one host; every mutator emits the matching AMI events before returning."""

    def __init__(self, spans: list[tuple[int, int]], fax_channels: int = 4, *, reportalarms: str = "all",
                 chan_dahdi_loaded: bool = True, driver_running: bool = True, time_scale: float = 1.0,
                 emit: Emit | None = None, schedule: Schedule | None = None,
                 trunks: list[tuple[str, str, int]] | None = None) -> None:
        if reportalarms not in REPORT_ALARMS:
            raise LabError(f"reportalarms must be one of {REPORT_ALARMS}")
        self.spans: dict[int, Span] = {s.number: s for s in layout_spans(spans)}
        last = max((s.first + s.timeslots - 1 for s in self.spans.values()), default=0)
        self.fax_channels = list(range(last + 1, last + 1 + fax_channels))
        self.fax_span = max(self.spans, default=0) + 1
        self.trunks: dict[str, LabTrunk] = {n: LabTrunk(n, d, c) for n, d, c in (trunks or [])}
        for trunk in self.trunks.values():
            if trunk.driver not in ("pjsip", "sip") or trunk.channels < 1:
                raise LabError(f"trunk {trunk.name}: driver must be pjsip or sip and channels >= 1")
        self._chan_seq = itertools.count(1)
        self.reportalarms = reportalarms
        self.chan_dahdi_loaded = chan_dahdi_loaded
        self.driver_running = driver_running
        self.time_scale = time_scale
        self.emit: Emit = emit or (lambda name, klass, fields: None)
        self.schedule: Schedule = schedule or (lambda delay, fn: None)
        self.channels: dict[str, Channel] = {}
        self.busy: dict[int, Channel] = {}
        self.calls: dict[str, Call] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.dnd: set[int] = set()
        self.missing_extensions: set[str] = {"999"}
        self.noanswer_numbers: set[str] = set()
        self.processed_calls = 0
        self._uid = itertools.count()
        self._call_no = itertools.count(1)
        self._fax_seq: dict[int, int] = {}
        self.local_seq = itertools.count(1)

    # ----------------------------------------------------------------- queries
    def board_up(self) -> bool:
        return self.chan_dahdi_loaded and self.driver_running

    def span_healthy(self, span: Span) -> bool:
        return self.board_up() and span.alarm == 0 and span.dchannel_up

    def channel_alarm(self, channo: int) -> int:
        """The mask chan_dahdi reports for a channel: the span's first, `Not Open` with no driver."""
        if not self.driver_running:
            return NOTOPEN
        for span in self.spans.values():
            if channo in span.bearer_channels:
                return span.alarm
        return 0

    def span_of(self, channo: int) -> Span | None:
        return next((s for s in self.spans.values() if channo in s.bearer_channels), None)

    def new_uniqueid(self) -> str:
        return f"{int(time.time())}.{next(self._uid)}"

    def get_call(self, call_id: str) -> Call:
        try:
            return self.calls[call_id]
        except KeyError:
            raise UnknownCall(f"no such call: {call_id}") from None

    def counts(self) -> dict[str, int]:
        kinds = [c.kind for c in self.calls.values()]
        return {k: kinds.count(k) for k in ("ivr", "agent", "fax", "probe")}

    def trunk_busy(self, trunk: LabTrunk) -> int:
        return sum(1 for name in self.channels if name.startswith(trunk.prefix))

    def free_bearers(self) -> int:
        spans = sum(1 for s in self.spans.values() if self.span_healthy(s)
                    for c in s.bearer_channels if c not in self.busy)
        return spans + sum(t.channels - self.trunk_busy(t) for t in self.trunks.values() if t.reachable)

    # ----------------------------------------------------------------- SIP trunks
    def trunk(self, name: str) -> LabTrunk:
        try:
            return self.trunks[name]
        except KeyError:
            raise LabError(f"no such trunk: {name} (trunks: {', '.join(self.trunks) or 'none'})") from None

    def set_trunk(self, name: str, up: bool) -> None:
        """A trunk's far end answers its qualify again (up) or stops answering (down): chan_sip raises
        PeerStatus (Reachable/Unreachable), res_pjsip DeviceStateChange and ContactStatus; the list actions
        show the new state."""
        trunk = self.trunk(name)
        if trunk.reachable == up:
            return
        trunk.reachable = up
        if trunk.driver == "sip":
            self.emit("PeerStatus", "system", [("ChannelType", "SIP"), ("Peer", f"SIP/{trunk.name}"),
                                               ("PeerStatus", "Reachable" if up else "Unreachable"),
                                               ("Time", "12") if up else ("Time", "-1")])
        else:
            self.emit("DeviceStateChange", "call", [("Device", f"PJSIP/{trunk.name}"),
                                                    ("State", device_code(trunk, self.trunk_busy(trunk) > 0))])
            self.emit("ContactStatus", "system", [("URI", f"sip:{trunk.name}@192.0.2.1:5060"),
                                                  ("ContactStatus", "Reachable" if up else "Unreachable"),
                                                  ("AOR", trunk.name), ("EndpointName", trunk.name),
                                                  ("RoundtripUsec", "12000" if up else "0")])

    def _trunk_channel(self, address: str, *, exten: str, context: str, caller: str, linked: Channel | None,
                       state: int) -> Channel:
        trunk = next((t for t in self.trunks.values() if t.reachable and self.trunk_busy(t) < t.channels), None)
        if trunk is None:
            raise NoCapacity("no free bearer channel on any healthy span or reachable trunk")
        uid = self.new_uniqueid()
        return self.add_channel(Channel(
            name=f"{trunk.prefix}{next(self._chan_seq):08x}", uniqueid=uid,
            linkedid=linked.linkedid if linked else uid, context=context, exten=exten, caller_num=caller,
            state=state, dnid=address if linked else exten))

    # ----------------------------------------------------------------- spans and driver
    def _alarm_events(self, channels: list[int], span: int | None, mask: int) -> None:
        """Alarm (per channel) and SpanAlarm (from the span's first channel) as handle_alarms() orders them."""
        per_chan = self.reportalarms in ("channels", "all")
        per_span = self.reportalarms in ("spans", "all") and span is not None
        for i, channo in enumerate(channels):
            if per_chan:
                if mask:
                    self.emit("Alarm", "system", [("DAHDIChannel", str(channo)), ("Alarm", alarm_text(mask))])
                else:
                    self.emit("AlarmClear", "system", [("DAHDIChannel", str(channo))])
            if per_span and i == 0:
                if mask:
                    self.emit("SpanAlarm", "system", [("Span", str(span)), ("Alarm", alarm_text(mask))])
                else:
                    self.emit("SpanAlarmClear", "system", [("Span", str(span))])

    def _span(self, number: int) -> Span:
        try:
            return self.spans[int(number)]
        except (KeyError, ValueError):
            raise LabError(f"no such span: {number}") from None

    def set_span_alarm(self, number: int, alarm: str) -> None:
        """Raise (`red`, `yellow`, `blue`, `los`, ...) or clear (`clear`/`ok`) a span alarm."""
        span = self._span(number)
        name = alarm.strip().lower()
        if name in ("clear", "ok", "none"):
            mask = 0
        elif name in ALARM_BITS and name != "notopen":
            mask = ALARM_BITS[name]
        else:
            raise LabError(f"unknown alarm {alarm!r}; use one of {sorted(ALARM_BITS)} or clear")
        if mask == span.alarm:
            return
        span.alarm = mask
        if self.board_up():
            self._alarm_events(span.bearer_channels, span.number, mask)
            if mask:
                self._drop_calls_on({span.number}, cause=38)

    def set_dchannel(self, number: int, up: bool) -> None:
        """Bring a PRI D-channel up or down. chan_dahdi raises no AMI event for this (only PRIShowSpans shows it)."""
        span = self._span(number)
        if span.dchannel_up == up:
            return
        span.dchannel_up = up
        if not up and self.board_up():
            self._drop_calls_on({span.number}, cause=38)

    def stop_driver(self) -> None:
        """Stop the DAHDI driver: board calls drop, every channel and span reports `Not Open`."""
        if not self.driver_running:
            return
        if self.chan_dahdi_loaded:
            self._drop_calls_on(set(self.spans), cause=38, fax=True)
        self.driver_running = False
        if self.chan_dahdi_loaded:
            for span in self.spans.values():
                self._alarm_events(span.bearer_channels, span.number, NOTOPEN)
            self._alarm_events(self.fax_channels, self.fax_span if self.fax_channels else None, NOTOPEN)

    def start_driver(self) -> None:
        """Start the driver again: chan_dahdi re-announces each span's own alarm state (clear or not)."""
        if self.driver_running:
            return
        self.driver_running = True
        if self.chan_dahdi_loaded:
            for span in self.spans.values():
                self._alarm_events(span.bearer_channels, span.number, span.alarm)
            self._alarm_events(self.fax_channels, self.fax_span if self.fax_channels else None, 0)

    # ----------------------------------------------------------------- channels
    def _alloc_bearer(self, span_no: int | None = None) -> tuple[Span, int]:
        spans = [self._span(span_no)] if span_no is not None else list(self.spans.values())
        for span in spans:
            if self.span_healthy(span):
                for channo in span.bearer_channels:
                    if channo not in self.busy:
                        return span, channo
        where = f"span {span_no}" if span_no is not None else "any healthy span"
        raise NoCapacity(f"no free bearer channel on {where}")

    def add_channel(self, chan: Channel) -> Channel:
        self.channels[chan.name] = chan
        if chan.channo:
            self.busy[chan.channo] = chan
        self.processed_calls += 1
        self.emit("Newchannel", "call", chan.snapshot())
        if chan.channo and chan.tech == "DAHDI":
            span = chan.span if chan.span is not None else self.fax_span
            self.emit("DAHDIChannel", "call", dahdi_channel_fields(chan, span))
        return chan

    def bearer_channel(self, address: str, *, exten: str, context: str, caller: str = UNKNOWN,
                       span_no: int | None = None, linked: Channel | None = None, state: int = 0) -> Channel:
        """A new PRI bearer channel named like chan_dahdi does: `DAHDI/i<span>/<address>-<seq hex>`.

        `address` is the caller's number for an inbound call and the dialled number for an outbound one.
        """
        try:
            span, channo = self._alloc_bearer(span_no)
        except NoCapacity:
            if span_no is not None or not self.trunks:
                raise
            return self._trunk_channel(address, exten=exten, context=context, caller=caller, linked=linked,
                                       state=state)
        uid = self.new_uniqueid()
        return self.add_channel(Channel(
            name=f"DAHDI/i{span.number}/{address}-{span.next_seq():x}", uniqueid=uid,
            linkedid=linked.linkedid if linked else uid, context=context, exten=exten, caller_num=caller,
            channo=channo, span=span.number, state=state, dnid=address if linked else exten))

    def set_state(self, chan: Channel, state: int) -> None:
        chan.state = state
        self.emit("Newstate", "call", chan.snapshot())

    def release(self, chan: Channel) -> None:
        self.channels.pop(chan.name, None)
        if chan.channo and self.busy.get(chan.channo) is chan:
            del self.busy[chan.channo]

    # ----------------------------------------------------------------- calls
    def new_call_id(self, kind: str) -> str:
        return f"{kind}-{next(self._call_no)}"

    def start_ivr_call(self, span: int | None = None, caller: str = "13800000000", exten: str = "100") -> str:
        """An inbound PRI call answered by the IVR: one bearer channel, alone."""
        chan = self.bearer_channel(caller, exten=exten, context="from-trunk", caller=caller, span_no=span,
                                   state=4)
        chan.priority, chan.application, chan.app_data = 2, "AGI", "agi://127.0.0.1:4573/ivr"
        self.set_state(chan, 6)
        call = Call(self.new_call_id("ivr"), "ivr", [chan])
        self.calls[call.call_id] = call
        return call.call_id

    def transfer_to_agent(self, call_id: str, agent: str = "2001", span: int | None = None) -> None:
        """Dial an agent over the board and bridge both legs (c3's event order)."""
        call = self.get_call(call_id)
        if call.kind != "ivr":
            raise LabError(f"call {call_id} is a {call.kind} call, only ivr calls can be transferred")
        caller = call.legs[0]
        leg = self.bearer_channel(agent, exten="s", context="from-agents", caller=agent, span_no=span,
                                  linked=caller)
        leg.connected_num, leg.connected_name = caller.caller_num, caller.caller_name
        caller.connected_num = agent
        caller.application, caller.app_data = "Dial", f"DAHDI/g1/{agent},30"
        leg.application, leg.app_data = "AppDial", "(Outgoing Line)"
        self.set_state(leg, 5)
        self.set_state(leg, 6)
        bridge = f"{int(time.time()):08x}-ccf0-4ab0-8000-{next(self._uid):012x}"
        self.emit("BridgeCreate", "call", bridge_fields(bridge, 0))
        for n, chan in enumerate((leg, caller), start=1):
            chan.bridge = bridge
            self.emit("BridgeEnter", "call", [*bridge_fields(bridge, n), *chan.snapshot()])
        call.kind, call.bridge = "agent", bridge
        call.legs.append(leg)

    def start_agent_call(self, caller: str = "13800000000", agent: str = "2001") -> str:
        if self.free_bearers() < 2:
            raise NoCapacity("an agent call needs two free bearer (or trunk) channels")
        call_id = self.start_ivr_call(caller=caller)
        self.transfer_to_agent(call_id, agent)
        return call_id

    def start_fax_call(self, caller: str = "13900000000") -> str:
        """An inbound fax on the fax board, answered by ReceiveFAX."""
        if not self.board_up():
            raise NoCapacity("the board driver is not running")
        channo = next((c for c in self.fax_channels if c not in self.busy), None)
        if channo is None:
            raise NoCapacity("all fax channels are busy")
        self._fax_seq[channo] = seq = self._fax_seq.get(channo, 0) + 1
        uid = self.new_uniqueid()
        chan = self.add_channel(Channel(f"DAHDI/{channo}-{seq:x}", uid, uid, "fax-in", "s", caller,
                                        channo=channo, state=4))
        chan.priority, chan.application, chan.app_data = 2, "ReceiveFAX", f"/var/spool/fax/{uid}.tif"
        self.set_state(chan, 6)
        call = Call(self.new_call_id("fax"), "fax", [chan])
        self.calls[call.call_id] = call
        return call.call_id

    def end_call(self, call_id: str) -> None:
        """The caller hangs up (HangupRequest, then the bridge unwinds, then Hangup)."""
        self.teardown(self.get_call(call_id), cause=16, request="HangupRequest", request_cause=16)

    def teardown(self, call: Call, *, cause: int, request: str, request_cause: int) -> None:
        self.calls.pop(call.call_id, None)
        if call.bridge and len(call.legs) == 2:
            caller, agent = call.legs
            self.emit(request, "call", [*caller.snapshot(), ("Cause", str(request_cause))])
            self.emit("BridgeLeave", "call", [*bridge_fields(call.bridge, 1, "native_rtp"), *caller.snapshot()])
            caller.bridge = ""
            self.emit("Hangup", "call", hangup_fields(caller, cause))
            self.emit("BridgeLeave", "call", [*bridge_fields(call.bridge, 0, "native_rtp"), *agent.snapshot()])
            agent.bridge = ""
            self.emit("BridgeDestroy", "call", bridge_fields(call.bridge, 0, "native_rtp"))
            self.emit("Hangup", "call", hangup_fields(agent, cause))
        else:
            for chan in call.legs:
                self.emit(request, "call", [*chan.snapshot(), ("Cause", str(request_cause))])
                self.emit("Hangup", "call", hangup_fields(chan, cause))
        for chan in call.legs:
            self.release(chan)

    def _drop_calls_on(self, spans: set[int], *, cause: int, fax: bool = False) -> None:
        for call in list(self.calls.values()):
            if any(c.span in spans or (fax and c.channo in self.fax_channels) for c in call.legs):
                self.teardown(call, cause=cause, request="SoftHangupRequest", request_cause=cause)

    def hangup_all(self, *, shutdown: bool = False) -> None:
        """Every call ends, e.g. on `core stop now` (i3: SoftHangupRequest cause 4, Hangup cause 0)."""
        for call in list(self.calls.values()):
            if shutdown:
                self.teardown(call, cause=0, request="SoftHangupRequest", request_cause=4)
            else:
                self.teardown(call, cause=16, request="SoftHangupRequest", request_cause=16)

    def set_calls(self, ivr: int, agent: int) -> None:
        """Adjust to exactly `ivr` IVR-only and `agent` agent calls, checking capacity before adding any."""
        if ivr < 0 or agent < 0:
            raise LabError("call counts must be >= 0")
        by_kind = {k: [c for c in self.calls.values() if c.kind == k] for k in ("ivr", "agent")}
        for kind, want in (("agent", agent), ("ivr", ivr)):
            for call in by_kind[kind][want:]:
                self.end_call(call.call_id)
        need = max(0, ivr - len(by_kind["ivr"])) + 2 * max(0, agent - len(by_kind["agent"]))
        if need > self.free_bearers():
            raise NoCapacity(f"need {need} free bearer channels, {self.free_bearers()} free")
        for _ in range(agent - len(by_kind["agent"])):
            self.start_agent_call()
        for _ in range(ivr - len(by_kind["ivr"])):
            self.start_ivr_call()
