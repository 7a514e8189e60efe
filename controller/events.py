"""A small in-process event bus for observers (SSE clients, metrics, SNMP forwarding).

Observers can never break the publisher: each subscriber has a bounded queue, and a slow one loses its
oldest events (and is told so) rather than blocking the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ccfo.events")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    data: Any


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._hooks: list[Callable[[Event], Awaitable[None]]] = []
        self._ids = itertools.count(1)
        self._size = queue_size

    def hook(self, callback: Callable[[Event], Awaitable[None]]) -> None:
        self._hooks.append(callback)

    async def publish(self, kind: str, data: Any) -> None:
        event = Event(next(self._ids), kind, data)
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(event)
        for hook in self._hooks:
            try:
                await hook(event)
            except Exception:
                log.exception("event hook failed for %s", kind)

    async def subscribe(self) -> AsyncIterator[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(self._size)
        self._subscribers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
