"""Pre-rendered bursts of complete agent-call event sequences, for the ingestion benchmark.

A real host produces about 16 call-class events per agent call (Newchannel, DAHDIChannel, Newstate,
BridgeCreate/Enter/Leave/Destroy, HangupRequest, Hangup for both legs). Rendering them from one
template per call keeps the server far faster than the client it feeds, so the benchmark measures
the client. Each sequence ends with both legs hung up, so a client's call counts return to where they
were. The channels do not touch the simulated host's state.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from . import wire
from .channels import Channel, bridge_fields, dahdi_channel_fields, hangup_fields

_counter = itertools.count(1)


def _template() -> tuple[str, int]:
    caller = Channel("DAHDI/i1/{n}-{s1}", "{u1}", "{u1}", "from-trunk", "100", "{n}", channo=1, span=1, state=4)
    agent = Channel("DAHDI/i1/2001-{s2}", "{u2}", "{u1}", "from-agents", "s", "2001", channo=2, span=1)
    events: list[tuple[str, list[tuple[str, str]]]] = [
        ("Newchannel", caller.snapshot()), ("DAHDIChannel", dahdi_channel_fields(caller, 1))]
    caller.state = 6
    events.append(("Newstate", caller.snapshot()))
    events += [("Newchannel", agent.snapshot()), ("DAHDIChannel", dahdi_channel_fields(agent, 1))]
    agent.state = 5
    events.append(("Newstate", agent.snapshot()))
    agent.state = 6
    events += [("Newstate", agent.snapshot()), ("BridgeCreate", bridge_fields("{b}", 0))]
    events += [("BridgeEnter", [*bridge_fields("{b}", 1), *agent.snapshot()]),
               ("BridgeEnter", [*bridge_fields("{b}", 2), *caller.snapshot()]),
               ("HangupRequest", [*caller.snapshot(), ("Cause", "16")]),
               ("BridgeLeave", [*bridge_fields("{b}", 1, "native_rtp"), *caller.snapshot()]),
               ("Hangup", hangup_fields(caller, 16)),
               ("BridgeLeave", [*bridge_fields("{b}", 0, "native_rtp"), *agent.snapshot()]),
               ("BridgeDestroy", bridge_fields("{b}", 0, "native_rtp")),
               ("Hangup", hangup_fields(agent, 16))]
    text = b"".join(wire.render_event(name, "call", fields) for name, fields in events).decode()
    return text, len(events)


TEMPLATE, EVENTS_PER_CALL = _template()


def blast_payloads(calls: int, chunk_calls: int = 500) -> Iterator[tuple[bytes, int]]:
    """Yield (bytes, number of events) chunks that together hold `calls` agent-call sequences."""
    epoch = int(time.time())
    remaining = calls
    while remaining > 0:
        n = min(chunk_calls, remaining)
        parts = []
        for _ in range(n):
            i = next(_counter)
            parts.append(TEMPLATE.format(n=f"139{i:08d}", s1=f"{i:x}", s2=f"{i:x}b", u1=f"{epoch}.{2 * i}",
                                         u2=f"{epoch}.{2 * i + 1}", b=f"blast-{i:012d}"))
        yield "".join(parts).encode(), n * EVENTS_PER_CALL
        remaining -= n
