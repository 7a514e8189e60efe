"""Our two subclasses of panoramisk 1.4 classes: a tolerant protocol parser and a Manager that obeys the link.

Why subclass instead of using panoramisk as is (see `shared/reference/asterisk-client-libraries.md`):

* `SafeAMIProtocol` replaces only `data_received`. panoramisk decodes each TCP read on its own (a
  multi-byte character split across reads is silently lost), drops lines it cannot parse without a
  trace, and lets any exception while handling one message kill the connection. Ours decodes
  incrementally, logs malformed input with the raw text and skips it, and isolates each message.
  Responses, events that belong to a pending action (list items, OriginateResponse) and Shutdown go
  through panoramisk's `handle_message` as usual; every other event goes straight to the link's
  `event_sink` as an `AmiMessage`, skipping panoramisk's per-event case-insensitive dict and glob
  dispatch, which roughly doubles ingestion (bench/ami_ingest.py).
* `LinkManager` never reconnects by itself (panoramisk retries every 2 s with no backoff and cannot
  be stopped by `close()`), never replays actions after a reconnect (its `awaiting_actions` list
  re-sends unanswered Originate/DBPut/Command on the next FullyBooted), and leaves keepalive to the
  link's own Ping with a deadline (panoramisk's ping never checks the reply).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Callable
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from agents.ratelimit import LogBudget

from .message import AmiMessage

log = logging.getLogger(__name__)
_BANNER = "Asterisk Call Manager/"
MAX_PENDING_TEXT = 4 << 20  # 4 MiB without a message end: drop the buffer rather than grow forever


class SafeAMIProtocol(AMIProtocol):
    """panoramisk's protocol with a parser that survives garbage and split UTF-8 sequences."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""
        self._banner_pending = True
        self.event_sink: Callable[[AmiMessage], None] | None = None
        self._budget = LogBudget()  # a peer sending garbage must not flood the log

    def data_received(self, data: bytes) -> None:
        text = self._text + self._decoder.decode(data)
        held_cr = text.endswith("\r")  # keep a CR whose LF is still in flight
        if held_cr:
            text = text[:-1]
        text = text.replace("\r\n", "\n")
        if self._banner_pending:
            if "\n" not in text and len(text) < 256:
                self._text = text + ("\r" if held_cr else "")
                return
            self._banner_pending = False
            if text.startswith(_BANNER):
                banner, _, text = text.partition("\n")
                self.version = banner[len(_BANNER):].strip()
        blocks = text.split("\n\n")
        rest = blocks.pop()
        if len(rest) > MAX_PENDING_TEXT:
            if (more := self._budget.take()) is not None:
                log.warning("AMI: %d bytes without a message end; discarding them: %r...%s", len(rest), rest[:200],
                            more)
            rest = ""
        self._text = rest + ("\r" if held_cr else "")
        for block in blocks:
            self._handle_block(block)

    def _handle_block(self, block: str) -> None:
        block = block.strip("\n")
        if not block:
            return  # a stray CRLF between messages (seen after SIPshowpeer errors)
        headers, lower, bad = _parse(block)
        if bad and (more := self._budget.take()) is not None:
            log.warning("AMI: skipped %d malformed line(s): %r%s", len(bad), bad[:5], more)
        event, response, action_id = lower.get("event"), lower.get("response"), lower.get("actionid")
        # Repeated (in any letter case) Event, Response or ActionID headers are not AMI: panoramisk would
        # index its pending actions with a list, or call .lower() on one.
        if not isinstance(response if event is None else event, str) or isinstance(response, tuple) \
                or isinstance(action_id, tuple):
            if headers and (more := self._budget.take()) is not None:
                log.warning("AMI: skipped a message with no single Event/Response/ActionID header: %r%s",
                            block[:500], more)
            return
        ami = AmiMessage(lower)
        try:
            sink = self.event_sink
            if sink is not None and event is not None and event != "Shutdown" and action_id not in self.responses:
                sink(ami)  # an event no action waits for: straight to the link
                return
            message = Message(headers, "")
            message.ccfo = ami  # spares the link a second pass over panoramisk's dict
            self.handle_message(message)
        except Exception:
            if (more := self._budget.take()) is not None:
                log.exception("AMI: handling a message failed; skipped: %r%s", block[:500], more)


def _parse(block: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(headers as panoramisk keys them, the same keyed lower-case with repeats as tuples, bad lines)."""
    pairs = [line.split(": ", 1) for line in block.split("\n")]
    if min(map(len, pairs)) == 2:  # the usual case: well-formed, then one C-level pass each
        simple = dict(pairs)
        simple_lower = {k.lower(): v for k, v in pairs}
        if len(simple) == len(simple_lower) == len(pairs):
            return simple, simple_lower, []
    headers: dict[str, Any] = {}
    lower: dict[str, Any] = {}
    spelling: dict[str, str] = {}  # a header repeated in another letter case is the same header
    bad: list[str] = []
    for line in block.split("\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":") and " " not in line:
                key, value = line[:-1], ""
            else:
                bad.append(line)
                continue
        lkey = key.lower()
        key = spelling.setdefault(lkey, key)
        old = headers.get(key)
        if old is None:
            headers[key] = value
            lower[lkey] = value
        elif isinstance(old, list):
            old.append(value)
            lower[lkey] = (*lower[lkey], value)
        else:
            headers[key] = [old, value]
            lower[lkey] = (old, value)
    return headers, lower, bad


class LinkManager(Manager):
    """A panoramisk Manager for exactly one connection; the link creates a fresh one per attempt."""

    def __init__(self, on_lost: Callable[[LinkManager, object], None],
                 on_event: Callable[[AmiMessage], None] | None = None, **config: Any) -> None:
        config.setdefault("protocol_factory", SafeAMIProtocol)
        super().__init__(**config)
        self._on_lost = on_lost
        self._on_event = on_event

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the link awaits the same task and handles the error (no self-scheduled retry)
        super().connection_made(f)
        self._stop_pinger()
        if isinstance(self.protocol, SafeAMIProtocol):
            self.protocol.event_sink = self._on_event

    def login(self, future: asyncio.Future[Any]) -> bool:
        if future.cancelled() or future.exception() is not None:
            self.authenticated_future = None
            self.authenticated = False
            return False
        result = bool(super().login(future))
        self._stop_pinger()
        return result

    def ping(self) -> None:
        """Disabled: panoramisk's keepalive ignores the reply; the link runs a Ping with a deadline."""

    def _stop_pinger(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None

    def connection_lost(self, exc: object) -> None:
        """Report the loss to the link instead of scheduling panoramisk's reconnect-and-replay."""
        self._connected = False
        self.awaiting_actions.clear()
        self._stop_pinger()
        self._on_lost(self, exc)
