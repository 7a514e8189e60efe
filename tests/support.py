"""Test helpers shared by the suite: waiting for a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class ConditionTimeout(AssertionError):
    """The awaited condition did not hold in time; the message carries the last observed state."""


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01,
               describe: Callable[[], Any] | None = None) -> Any:
    """Poll `predicate` until it returns a truthy value (returned) or fail with the last state."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            state = describe() if describe else last
            raise ConditionTimeout(f"condition not met within {timeout}s; last observed: {state!r}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], Any | Awaitable[Any]], timeout: float = 5.0,
                           interval: float = 0.01, describe: Callable[[], Any] | None = None) -> Any:
    """Async twin of `wait_until`; the predicate may be a coroutine function."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            state = describe() if describe else last
            raise ConditionTimeout(f"condition not met within {timeout}s; last observed: {state!r}")
        await asyncio.sleep(interval)
