"""Coverage-guided fuzzing (atheris/libFuzzer) of the agent's AMI parser and host model, in process.

Run through `python -m bench.fuzz_ami --atheris RUNS` (which starts this in its own interpreter). Each input is
fed to a fresh `SafeAMIProtocol` after the banner, in up to three reads cut where the input says, with two
actions pending (a Ping and a list action) so responses and list items can match them; the events the
parser hands on are applied to a `HostModel`. A crash is an exception out of the parser or the model, or an
error the parser's own guard had to log.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import atheris

with atheris.instrument_imports():
    from panoramisk import actions

    from agents.ami.message import AmiMessage
    from agents.ami.model import HostModel
    from agents.ami.protocol import SafeAMIProtocol


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage()[:500])


class _Factory:
    forgetable_actions = ("ping", "login")

    def __init__(self, model: HostModel) -> None:
        self.awaiting_actions: list[object] = []
        self.model = model

    def dispatch(self, message: object) -> None:
        self.model.apply_event(AmiMessage.from_pairs(message.items()))  # type: ignore[attr-defined]

    def connection_lost(self, exc: object) -> None:
        pass


class _Transport:
    def close(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass


ERRORS = _Errors()
logging.getLogger("agents").addHandler(ERRORS)
logging.getLogger("agents").setLevel(logging.ERROR)
asyncio.set_event_loop(asyncio.new_event_loop())  # panoramisk's actions create futures


def one_input(data: bytes) -> None:
    model = HostModel(span_channels={1: 30, 2: 30})
    proto = SafeAMIProtocol()
    proto.connection_made(_Transport())
    proto.factory = _Factory(model)
    proto.event_sink = model.apply_event
    for action in (actions.Action({"Action": "Ping", "ActionID": "ccfo-1"}),
                   actions.Action({"Action": "PRIShowSpans", "ActionID": "ccfo-2"}, as_list=False)):
        proto.responses[action.id] = action
    a, b = (data[0] * len(data)) // 256 if data else 0, (data[-1] * len(data)) // 256 if data else 0
    cuts = sorted((a, b))
    proto.data_received(b"Asterisk Call Manager/9.0.0\r\n" + data[: cuts[0]])
    proto.data_received(data[cuts[0]: cuts[1]])
    proto.data_received(data[cuts[1]:] + b"\r\n\r\n")
    model.counts()
    model.spans_status()
    if ERRORS.seen:
        seen, ERRORS.seen = ERRORS.seen, []
        raise RuntimeError(f"the parser's guard caught an exception: {seen[0]}")


TOKENS = ["Event: ", "Response: ", "ActionID: ", "ActionID: ccfo-1", "ActionID: ccfo-2", "\r\n", "\r\n\r\n", "\n\n",
          "Success", "Error", "Follows", "Goodbye", "EventList: start", "EventList: Complete", "ListItems: ",
          "will follow", "successfully queued", "Shutdown", "FullyBooted", "Newchannel", "Hangup", "BridgeEnter",
          "BridgeLeave", "Alarm", "AlarmClear", "SpanAlarm", "SpanAlarmClear", "PRIShowSpans", "PRIShowSpansComplete",
          "Channel: DAHDI/i1/1-1", "Channel: DAHDI/1-1", "BridgeUniqueid: ", "DAHDIChannel: ", "Span: ", "Up: Yes",
          "Order: Primary", "DChannel: 16", "Alarm: Red Alarm", "Alarm: No Alarm", "Application: ReceiveFAX"]


def main() -> None:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as f:
        for token in TOKENS:  # libFuzzer's format: printable bytes as they are, the rest as \xNN
            f.write('"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}"
                                  for b in token.encode()) + '"\n')
    atheris.Setup([*sys.argv, f"-dict={f.name}"], one_input)
    atheris.Fuzz()
