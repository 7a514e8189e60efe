"""Fixtures for the lab tests: a started lab AMI server on 127.0.0.1, port 0, with fast timings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

from lab.ami import LabAmiServer

from .amiclient import RawAmi

FAST = {"login_fail_delay_s": 0.05, "time_scale": 0.01, "restart_delay_s": 0.05}


@pytest_asyncio.fixture
async def make_lab() -> AsyncIterator[Callable[..., Awaitable[LabAmiServer]]]:
    """Factory: `await make_lab(**kwargs)` starts a server; all are closed after the test."""
    started: list[LabAmiServer] = []

    async def make(**kwargs: Any) -> LabAmiServer:
        lab = LabAmiServer("127.0.0.1", 0, **{**FAST, **kwargs})
        await lab.start()
        started.append(lab)
        return lab

    yield make
    for lab in started:
        await lab.close()


@pytest_asyncio.fixture
async def lab(make_lab: Callable[..., Awaitable[LabAmiServer]]) -> LabAmiServer:
    return await make_lab()


@pytest_asyncio.fixture(autouse=True)
async def close_raw_clients() -> AsyncIterator[None]:
    """Close every raw AMI client a test opened (they hold sockets even after the server's EOF)."""
    yield
    for client in list(RawAmi.OPEN):
        await client.close()
