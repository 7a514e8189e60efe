"""controller/sdnotify.py on its own: the wire format systemd reads, both socket forms, the watchdog interval
and the no-op outside systemd."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ccfo.platform.sdnotify import Notifier
from tests.deploy.kit import NotifySocket


def test_messages_reach_a_path_socket_with_our_pid(tmp_path: Path) -> None:
    sock = NotifySocket(path=tmp_path / "n.sock")
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": sock.address})
        assert n.enabled and n.watchdog_interval_s is None
        assert n.ready("serving\nhttps://x:1  now")
        assert n.status("cycle 3") and n.watchdog() and n.stopping()
        sock.wait_for(lambda m: m.fields.get("STOPPING") == "1", 5, "the fourth message")
        got = sock.messages
        assert [m.fields for m in got] == [{"READY": "1", "STATUS": "serving https://x:1 now"},
                                           {"STATUS": "cycle 3"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]
        assert {m.pid for m in got} == {os.getpid()}
    finally:
        sock.close()
        n.close()


def test_abstract_socket_and_watchdog_interval() -> None:
    sock = NotifySocket(abstract=f"ccfo-sdnotify-test-{os.getpid()}")
    n = Notifier.from_env({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "200000"})
    try:
        assert sock.address.startswith("@") and n.watchdog_interval_s == pytest.approx(0.1)
        calls = []

        def healthy() -> bool:
            calls.append(1)
            return len(calls) <= 3  # then a task "dies": the pings must stop

        async def main() -> None:
            task = asyncio.create_task(n.watchdog_loop(healthy))
            try:
                await asyncio.to_thread(sock.wait_for, lambda m: len(sock.messages) >= 3, 5, "three pings")
                await asyncio.to_thread(lambda: _wait_calls(calls, 6))
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())
        assert [m.fields for m in sock.messages] == [{"WATCHDOG": "1"}] * 3
    finally:
        sock.close()
        n.close()


def _wait_calls(calls: list[int], n: int) -> None:
    from tests.support import wait_until
    wait_until(lambda: len(calls) >= n, timeout=5)


def test_watchdog_for_another_pid_or_no_socket_is_off() -> None:
    other = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.enabled and other.watchdog_interval_s is None
    off = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not off.enabled and off.watchdog_interval_s is None
    assert off.ready() is False and off.watchdog() is False
    asyncio.run(asyncio.wait_for(off.watchdog_loop(), 1))  # returns at once: nothing to ping


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.ready() is False  # logged at debug, never raised
    n.close()  # the socket it opened to try
    assert Notifier("vsock:2:1234").enabled is False
