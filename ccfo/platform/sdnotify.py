"""A tiny sd_notify client: READY=1, STATUS=..., WATCHDOG=1 and STOPPING=1 for systemd's Type=notify units.

One AF_UNIX datagram per message to $NOTIFY_SOCKET: a path, or `@name` for the abstract namespace. Outside
systemd (no NOTIFY_SOCKET) every call is a no-op returning False, so the lab and the tests run the same
code. A failed send is logged at debug level and never raised: a service must not die because its
supervisor's socket went away. The watchdog interval is WATCHDOG_USEC (ignored when WATCHDOG_PID names
another process, as sd_watchdog_enabled does); `watchdog_loop` pings at half of it, from the service's
own event loop, so a wedged loop stops the pings and systemd restarts the service.

What it must not do: import anything beyond the standard library, or block (the socket is non-blocking).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("ccfo.sdnotify")


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # the abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock: and other forms are not supported


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Notifier:
    """Messages to the service manager. `Notifier.from_env()` reads NOTIFY_SOCKET and WATCHDOG_USEC."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None) -> None:
        self._address = _address(socket_path) if socket_path else None
        if socket_path and self._address is None:
            log.warning("NOTIFY_SOCKET %r is not a path or an abstract socket: not notifying systemd", socket_path)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if env.get("WATCHDOG_USEC", "").isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(env["WATCHDOG_USEC"])
        return cls(env.get("NOTIFY_SOCKET") or None, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of WATCHDOG_USEC, or None when no watchdog is asked for."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec and self.enabled else None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields as one message; True when it left."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", fields[0] if fields else "", exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def watchdog_loop(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping WATCHDOG=1 every half interval while `healthy()` holds; return at once without a watchdog.

        Run it as a task of the service's main loop; when `healthy()` turns false the pings stop (logged
        once) and systemd's WatchdogSec restarts the service."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        quiet = False
        while True:
            if healthy():
                self.watchdog()
                quiet = False
            elif not quiet:
                log.error("a service task has died: no more watchdog pings, systemd will restart the service")
                quiet = True
            await asyncio.sleep(interval)
