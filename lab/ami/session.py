"""One AMI client connection to the lab server: framing, login gate, per-session event mask, dispatch.

Behaves like an Asterisk 20 manager session: the banner first and nothing else until a successful
Login; actions before Login get `Permission denied` and the socket stays open; actions run one at a
time in arrival order (a sync Originate blocks its own session, as on a real Asterisk); a failed
Login is answered after a delay and the socket is closed. It holds no telephony state.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from typing import TYPE_CHECKING

from . import wire

if TYPE_CHECKING:
    from .server import LabAmiServer

log = logging.getLogger(__name__)
MAX_INPUT = 1 << 20  # a client that sends a megabyte without an empty line is dropped


class AmiSession:
    """State of one connection; `server` owns it and broadcasts events through `deliver`."""

    def __init__(self, server: LabAmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.username = ""
        self.mask = 0
        self.closed = False
        self.session_id = f"0x{id(self):x}"
        self._held: list[bytes] = []
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"
        self.local = f"IPV4/TCP/{local[0]}/{local[1]}"

    # ----------------------------------------------------------------- output
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.server.frozen:
            self._held.append(data)
            return
        if self._held:
            data = b"".join([*self._held, data])
            self._held.clear()
        self.writer.write(data)

    def flush_held(self) -> None:
        if self._held and not self.closed:
            self.writer.write(b"".join(self._held))
            self._held.clear()

    def deliver(self, event_bit: int, data: bytes) -> None:
        """Write a rendered event if this session is logged in and its mask takes the event's class."""
        if self.authenticated and self.mask & event_bit:
            self.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    def abort(self) -> None:
        """Drop the TCP connection without a FIN handshake courtesy (like a killed process)."""
        self.closed = True
        self.writer.transport.abort()

    # ----------------------------------------------------------------- input
    async def run(self) -> None:
        self.writer.write(wire.BANNER)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        buf = ""
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                buf += decoder.decode(data)
                buf = buf.replace("\r\n", "\n")
                while "\n\n" in buf and not self.closed:
                    block, buf = buf.split("\n\n", 1)
                    if block.strip():
                        await self.handle(block)
                if len(buf) > MAX_INPUT:
                    log.warning("lab AMI: dropping session %s: oversized message", self.remote)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close()

    async def handle(self, block: str) -> None:
        await self.server.unfrozen()
        headers = wire.parse_request(block)
        action = wire.header(headers, "Action")
        action_id = wire.header(headers, "ActionID")
        self.server.actions_received[action.lower() or "<none>"] += 1
        if not action:
            self.write(wire.error("Missing action in request", action_id))
            return
        name = action.lower()
        if not self.authenticated and name not in ("login", "logoff", "challenge"):
            self.write(wire.error("Permission denied", action_id))
            return
        if name in self.server.stalled_actions:
            log.info("lab AMI: stalling %s (no answer)", action)
            return
        handler = self.server.action_handler(name)
        if handler is not None and not self.server.permitted(name):
            self.write(wire.error("Permission denied", action_id))
            return
        if handler is None:
            self.write(wire.error(
                f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.",
                action_id))
            return
        await handler(self, headers, action_id)
