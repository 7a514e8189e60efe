"""A raw-socket AMI client for tests: exact bytes in and out, no library in between.

Used to check the lab server's wire behaviour (framing, order, what is *not* sent) where a client
library would hide it. Every read has a deadline, so a missing message fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

BANNER = b"Asterisk Call Manager/9.0.0\r\n"


@dataclass
class Msg:
    raw: bytes
    fields: list[tuple[str, str]]

    def get(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.fields if k.lower() == key.lower()), default)

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.fields]

    @property
    def name(self) -> str:
        return self.get("Event") or self.get("Response")


def parse_fields(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode().split("\r\n"):
        key, _, value = line.partition(": ")
        out.append((key, value))
    return out


def render(fields: list[tuple[str, str]] | dict[str, str]) -> bytes:
    items = fields.items() if isinstance(fields, dict) else fields
    return "".join(f"{k}: {v}\r\n" for k, v in items).encode() + b"\r\n"


class RawAmi:
    OPEN: ClassVar[set[RawAmi]] = set()  # closed after each test by tests/lab/conftest.py

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = b""  # every byte read, for framing checks
        RawAmi.OPEN.add(self)

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", banner: bool = True) -> RawAmi:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        client = cls(reader, writer)
        if banner:
            line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            client.received += line
            assert line == BANNER, line
        return client

    def send(self, fields: list[tuple[str, str]] | dict[str, str] | bytes) -> None:
        self.writer.write(fields if isinstance(fields, bytes) else render(fields))

    async def read(self, timeout: float = 5.0) -> Msg:
        """The next message (raises asyncio.IncompleteReadError at EOF)."""
        block = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        self.received += block
        return Msg(block, parse_fields(block[:-4]))

    async def read_until(self, pred: Callable[[Msg], bool], timeout: float = 5.0) -> list[Msg]:
        """Messages up to and including the first one matching `pred`."""
        out: list[Msg] = []
        while True:
            msg = await self.read(timeout)
            out.append(msg)
            if pred(msg):
                return out

    async def action(self, fields: dict[str, str], timeout: float = 5.0) -> list[Msg]:
        """Send an action with an ActionID and read through its answer (list answers included)."""
        aid = fields.setdefault("ActionID", f"t-{id(fields):x}")
        self.send(fields)
        msgs = await self.read_until(lambda m: m.get("ActionID") == aid and (
            (m.get("Response") != "" and m.get("EventList") != "start") or m.get("EventList") == "Complete"), timeout)
        return [m for m in msgs if m.get("ActionID") == aid]

    async def login(self, events: str = "off", username: str = "ccfo", secret: str = "ccfo-secret") -> list[Msg]:
        self.send({"Action": "Login", "Username": username, "Secret": secret, "Events": events,
                   "ActionID": "login"})
        first = await self.read()
        assert first.get("Response") == "Success", first.raw
        return [first]

    async def expect_eof(self, timeout: float = 5.0) -> bytes:
        rest = await asyncio.wait_for(self.reader.read(), timeout)
        self.received += rest
        return rest

    async def close(self) -> None:
        RawAmi.OPEN.discard(self)
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
