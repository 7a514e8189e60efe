"""Live model of one telephony host as seen over AMI: spans, board driver, board channels, bridges.

Pure state and rules, no I/O and no clock: `apply_event` folds one AMI event in, the `reconcile_*`
methods replace parts of the state with a list action's answer, `counts`/`spans_status` read it out.
Rules (DESIGN.md section 2, X+2Y):

* a board channel (name matches `board_regex`, default `^DAHDI/`) that is not bridged with another
  board channel is one IVR call (X); two board channels in one bridge are one agent call (Y);
* fax channels (name matches `fax_regex`, or Application ReceiveFAX/SendFAX) are counted apart;
  the default fax regex `^DAHDI/\\d+-` matches chan_dahdi's naming of non-PRI ports (PRI bearer
  channels are named `DAHDI/i<span>/...`), which on these hosts is the fax board;
* a span is healthy when its alarm is `ok` and its D-channel is up; channels are available only while
  the driver is up.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from .message import AmiMessage

ALARM_FROM_TEXT = {
    "no alarm": "ok", "none": "ok", "red alarm": "red", "yellow alarm": "yellow", "blue alarm": "blue",
    "recovering": "recovering", "loopback": "loopback", "not open": "notopen", "unknown alarm": "unknown",
}
FAX_APPS = frozenset({"receivefax", "sendfax"})


class DriverState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SpanStatus:
    """One PRI span. `dchannel` is True when its D-channel (layer 2) is up."""

    span: int
    alarm: str
    dchannel: bool | None  # None: not known (a configured span Asterisk does not report)
    channels: int
    healthy: bool


@dataclass(frozen=True, slots=True)
class CallCounts:
    ivr: int
    agent: int
    fax: int


@dataclass
class _Span:
    number: int
    first: int
    last: int
    bearer: int
    alarm: str = "unknown"
    dchannel: bool = False


@dataclass
class _Chan:
    board: bool
    fax: bool
    bridge: str = ""


def _alarm(text: str) -> str:
    return ALARM_FROM_TEXT.get(text.strip().lower(), "unknown")


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class HostModel:
    """Mutable model; every mutator returns True when something a snapshot shows may have changed."""

    def __init__(self, board_regex: str = r"^DAHDI/", fax_regex: str | None = r"^DAHDI/\d+-",
                 span_channels: Mapping[int, int] | None = None) -> None:
        self._board = re.compile(board_regex)
        self._fax = re.compile(fax_regex) if fax_regex else None
        self._span_channels = dict(span_channels or {})
        self.spans: dict[int, _Span] = {}
        self.channels: dict[str, _Chan] = {}
        self.driver = DriverState.UNKNOWN
        self.driver_detail = "not polled yet"
        self._pri_running = False  # set by the PRIShowSpans pass, read by the DAHDIShowChannels pass
        self._spans_listed = False  # PRIShowSpans has answered once: configured spans it lacks are unknown

    # ----------------------------------------------------------------- channels
    def _classify(self, name: str, app: str = "") -> _Chan:
        board = bool(self._board.search(name))
        fax = board and (app.lower() in FAX_APPS or bool(self._fax and self._fax.search(name)))
        return _Chan(board, fax)

    def apply_event(self, msg: AmiMessage) -> bool:
        handler = _HANDLERS.get(msg.get("event"))
        return handler(self, msg) if handler else False

    def _newchannel(self, msg: AmiMessage) -> bool:
        name = msg.get("channel")
        if not name or name in self.channels:
            return False
        chan = self.channels[name] = self._classify(name)
        return chan.board

    def _hangup(self, msg: AmiMessage) -> bool:
        chan = self.channels.pop(msg.get("channel"), None)
        return bool(chan and chan.board)

    def _bridge(self, msg: AmiMessage, enter: bool) -> bool:
        name = msg.get("channel")
        chan = self.channels.get(name)
        if chan is None:
            if not enter:
                return False
            chan = self.channels[name] = self._classify(name)
        chan.bridge = msg.get("bridgeuniqueid") if enter else ""
        return chan.board

    # ----------------------------------------------------------------- alarms
    def span_of(self, channo: int) -> _Span | None:
        return next((s for s in self.spans.values() if s.first <= channo <= s.last), None)

    def _set_alarm(self, span: _Span | None, alarm: str) -> bool:
        if span is None or span.alarm == alarm:
            return False
        span.alarm = alarm
        if alarm == "notopen" and all(s.alarm == "notopen" for s in self.spans.values()):
            self.driver, self.driver_detail = DriverState.DOWN, "DAHDI driver not running (channels Not Open)"
        elif alarm != "notopen" and self.driver is DriverState.DOWN and self.driver_detail.startswith("DAHDI driver"):
            self.driver, self.driver_detail = DriverState.UP, ""
        return True

    def _channel_alarm(self, msg: AmiMessage, clear: bool) -> bool:
        channo = _int(msg.get("dahdichannel"))
        span = self.span_of(channo) if channo is not None else None
        return self._set_alarm(span, "ok" if clear else _alarm(msg.get("alarm")))

    def _span_alarm(self, msg: AmiMessage, clear: bool) -> bool:
        number = _int(msg.get("span"))
        span = self.spans.get(number) if number is not None else None
        return self._set_alarm(span, "ok" if clear else _alarm(msg.get("alarm")))

    # ----------------------------------------------------------------- reconciliation with list answers
    def reconcile_channels(self, items: Iterable[AmiMessage]) -> None:
        """CoreShowChannels: the channel table is exactly the listed channels."""
        table: dict[str, _Chan] = {}
        for item in items:
            name = item.get("channel")
            if name:
                chan = table[name] = self._classify(name, item.get("application"))
                chan.bridge = item.get("bridgeid")
        self.channels = table

    def reconcile_pri_spans(self, items: Iterable[AmiMessage]) -> None:
        """PRIShowSpans: span layout and D-channel state; the only source for D-channel up/down."""
        seen: dict[int, AmiMessage] = {}
        for item in items:
            number = _int(item.get("span"))
            if number is not None and item.get("order", "Primary") in ("Primary", ""):
                seen[number] = item
        self._pri_running = bool(seen)
        self._spans_listed = True
        if not seen:
            for span in self.spans.values():
                span.dchannel = False
            return
        base = 0
        layout: dict[int, _Span] = {}
        for number in sorted(seen):
            item = seen[number]
            dchan = _int(item.get("dchannel")) or base + 16
            bearer = self._span_channels.get(number)
            if bearer is None:
                bearer = {16: 30, 24: 23}.get(dchan - base, max(1, dchan - base - 1))
            timeslots = 31 if bearer == 30 else bearer + 1
            old = self.spans.get(number)
            span = _Span(number, base + 1, base + timeslots, bearer, old.alarm if old else "unknown")
            span.dchannel = item.get("up") == "Yes"
            in_alarm = item.get("alarm") == "Yes"
            if not in_alarm and span.alarm in ("unknown", "notopen"):
                span.alarm = "ok"
            elif in_alarm and span.alarm == "ok":
                span.alarm = "unknown"
            layout[number] = span
            base += timeslots
        self.spans = layout
        self.driver, self.driver_detail = DriverState.UP, ""

    def reconcile_dahdi_channels(self, items: Iterable[AmiMessage]) -> None:
        """DAHDIShowChannels: each span's alarm text (from its first listed channel); driver state."""
        rows = [(n, item) for item in items if (n := _int(item.get("dahdichannel"))) is not None]
        for span in self.spans.values():
            first = next((item for n, item in rows if span.first <= n <= span.last), None)
            if first is not None:
                span.alarm = _alarm(first.get("alarm"))
        if self._pri_running:
            return
        if rows and all(_alarm(item.get("alarm")) == "notopen" for _, item in rows):
            self.driver, self.driver_detail = DriverState.DOWN, "DAHDI driver not running (channels Not Open)"
            for span in self.spans.values():
                span.alarm = "notopen"
        elif not rows:
            self.driver, self.driver_detail = DriverState.DOWN, "no DAHDI channels (driver not loaded?)"
        else:
            self.driver, self.driver_detail = DriverState.UP, "no PRI spans running"

    def chan_dahdi_missing(self) -> None:
        """chan_dahdi is not loaded: no board at all as far as Asterisk is concerned."""
        self.driver, self.driver_detail = DriverState.DOWN, "chan_dahdi not loaded"
        for span in self.spans.values():
            span.dchannel = False

    # ----------------------------------------------------------------- read-outs
    def counts(self) -> CallCounts:
        voice_bridges: Counter[str] = Counter()
        voice = fax = 0
        for chan in self.channels.values():
            if not chan.board:
                continue
            if chan.fax:
                fax += 1
                continue
            voice += 1
            if chan.bridge:
                voice_bridges[chan.bridge] += 1
        agent = sum(n // 2 for n in voice_bridges.values())
        return CallCounts(ivr=voice - 2 * agent, agent=agent, fax=fax)

    def spans_status(self) -> tuple[SpanStatus, ...]:
        """Every span Asterisk reports, and, once it has been asked (PRIShowSpans), every configured span
        it does not report, as unknown: a span missing from Asterisk is out of service, not absent."""
        up = self.driver is DriverState.UP
        out = {s.number: SpanStatus(s.number, s.alarm, s.dchannel, s.bearer, up and s.alarm == "ok" and s.dchannel)
               for s in self.spans.values()}
        if self._spans_listed:
            for number, channels in self._span_channels.items():
                out.setdefault(number, SpanStatus(number, "unknown", None, channels, False))
        return tuple(out[n] for n in sorted(out))


_HANDLERS = {
    "Newchannel": HostModel._newchannel,
    "Hangup": HostModel._hangup,
    "BridgeEnter": lambda m, e: m._bridge(e, True),
    "BridgeLeave": lambda m, e: m._bridge(e, False),
    "Alarm": lambda m, e: m._channel_alarm(e, False),
    "AlarmClear": lambda m, e: m._channel_alarm(e, True),
    "SpanAlarm": lambda m, e: m._span_alarm(e, False),
    "SpanAlarmClear": lambda m, e: m._span_alarm(e, True),
}
