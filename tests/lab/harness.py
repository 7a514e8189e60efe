"""A lab AMI server with the real agent-side `AmiMonitor` attached, for the agent tests.

Both run in the test's event loop and talk over a real TCP socket on 127.0.0.1 (port 0). Timings
default to values that keep tests fast; every periodic behaviour (polling, Ping) is off unless a test
turns it on, so what a test observes is caused by what it did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents.ami import AmiMonitor
from lab.ami import LabAmiServer
from tests.support import async_wait_until

FAST_LAB = {"login_fail_delay_s": 0.05, "time_scale": 0.01, "restart_delay_s": 0.05}
FAST_MONITOR = {"reconcile_interval_s": 3600.0, "action_timeout_s": 2.0, "connect_timeout_s": 2.0,
                "ping_interval_s": 3600.0, "ping_timeout_s": 1.0, "backoff_initial_s": 0.02, "backoff_max_s": 0.2}


@asynccontextmanager
async def monitored_lab(monitor: dict[str, Any] | None = None, wait_ready: bool = True, agent_secret: str | None = None,
                        **lab_kwargs: Any) -> AsyncIterator[tuple[LabAmiServer, AmiMonitor]]:
    """A started lab server (`lab_kwargs`) and a started monitor on it (`monitor` overrides FAST_MONITOR)."""
    lab = LabAmiServer("127.0.0.1", 0, **{**FAST_LAB, **lab_kwargs})
    await lab.start()
    options = {**FAST_MONITOR, **(monitor or {})}
    mon = AmiMonitor("127.0.0.1", lab.port, lab.username, agent_secret or lab.secret, **options)
    await mon.start()
    try:
        if wait_ready:
            await async_wait_until(lambda: mon.link.connected and mon.reconciles >= 1, timeout=5,
                                   describe=mon.snapshot)
        yield lab, mon
    finally:
        await mon.stop()
        await lab.close()
