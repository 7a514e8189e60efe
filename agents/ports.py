"""What the agent's actions, report and runtime need from the AMI side, as Protocols.

`agents.ami.AmiMonitor` is the real implementation (the only importer of panoramisk); tests use small
fakes. Keeping the contract here lets services, files, actions and the API be built and tested without
a telephony link, and keeps panoramisk out of everything but agents.ami.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class SpanView(Protocol):
    span: int
    alarm: Any  # "ok" or the alarm name (str or StrEnum)
    dchannel: Any  # True when the D-channel is up (or "up" / "down" / "unknown")
    channels: int
    healthy: bool


class CallsView(Protocol):
    ivr: int
    agent: int
    fax: int


class AmiSnapshotView(Protocol):
    """The AMI monitor's frozen view: when `connected` is False, spans/calls/channels mean nothing."""

    connected: bool
    last_ok: float | None
    error: str | None
    driver: Any  # the board driver as AMI sees it: "up" / "down" / "unknown"
    spans: Sequence[SpanView]
    calls: CallsView
    channels_available: int
    channels_free: int


class AmiPort(Protocol):
    def snapshot(self) -> AmiSnapshotView: ...

    async def db_put(self, family: str, key: str, value: str) -> Any: ...

    async def line_test(self, number: str, context: str, timeout_s: float) -> Any:
        """Originate a test call to `number` in `context`; the result has `ok` (bool) and `reason`."""
        ...
