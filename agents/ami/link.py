"""`AmiLink`: one supervised AMI connection on top of panoramisk, with our timing and failure contract.

Contract (each point answers a panoramisk 1.4 sharp edge, `shared/reference/asterisk-client-libraries.md`):

* connect and Login are awaited under `connect_timeout_s`; a refused Login is an error, not a silent
  retry loop;
* every action runs under a deadline (`AmiTimeout`); nothing is sent while not logged in
  (`AmiNotConnected`); an action still pending when the connection is lost fails with
  `AmiNotConnected` and is **never replayed**: each connection gets a fresh `LinkManager` whose
  resend list is cleared on loss;
* link health is our own `Ping` every `ping_interval_s` with a `ping_timeout_s` deadline; a missed
  Pong (hung Asterisk, dead TCP path) drops the connection; `hung` says the link is down because Asterisk
  stopped answering (a missed Pong, an unanswered Login: `AmiUnresponsive`), not because it refused or
  closed the connection;
* reconnect with exponential backoff and jitter, from `backoff_initial_s` up to `backoff_max_s`;
* events reach `on_event` (sync, must only enqueue) from our protocol's event sink or panoramisk's
  `'*'` callback, which never raises; reading pauses while the consumer is `HIGH_WATER` events behind.

The secret never appears in logs or reprs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk import actions as pk_actions

from .errors import AmiError, AmiNotConnected, AmiTimeout, AmiUnresponsive
from .message import AmiMessage
from .protocol import LinkManager

log = logging.getLogger(__name__)
_pk_log = logging.getLogger("agents.ami.panoramisk")  # what panoramisk itself logs, kept apart
HIGH_WATER, LOW_WATER = 20000, 2000


@dataclass(frozen=True, slots=True)
class LinkConfig:
    host: str
    port: int
    username: str
    secret: str = field(repr=False)
    events: str = "system,call"
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0


class AmiLink:
    """Keeps one logged-in AMI session up; `send` is the only way actions reach Asterisk."""

    def __init__(self, config: LinkConfig, *, on_event: Callable[[AmiMessage], None],
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.config = config
        self._on_event = on_event
        self._on_state = on_state or (lambda connected: None)
        self.connected = False
        self.hung = False  # not connected because Asterisk stopped answering (AmiUnresponsive), not refused
        self.last_ok: float | None = None
        self.error: str | None = "not started"
        self.connects = 0
        self._manager: LinkManager | None = None
        self._lost: asyncio.Future[str] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._prefix = f"ccfo-{uuid.uuid4().hex[:8]}"
        self._paused = False
        self._loss: str | None = None  # why the last established connection ended

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name="ami-link")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._manager is not None:
            self._handle_lost(self._manager, AmiNotConnected("link stopped"))
            self._manager = None
        self.connected, self.error = False, "stopped"

    async def _supervise(self) -> None:
        cfg = self.config
        delay = cfg.backoff_initial_s
        while True:
            try:
                manager = await self._connect_once()
            except Exception as exc:
                err = exc if isinstance(exc, AmiError) else AmiError(f"unexpected error while connecting: {exc!r}")
                if err is not exc:  # a library surprise must not end the supervisor
                    log.exception("AMI %s:%d: unexpected error while connecting", cfg.host, cfg.port)
                # keep why the link went down in view while reconnect attempts fail for other reasons
                self.error = f"{self._loss}; reconnecting: {err.message}" if self._loss else err.message
                self.hung = isinstance(err, AmiUnresponsive)
                log.warning("AMI %s:%d: %s; retrying in %.2fs", cfg.host, cfg.port, err.message, delay)
                if self._manager is not None:
                    self._handle_lost(self._manager, err)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, cfg.backoff_max_s)
                continue
            delay = cfg.backoff_initial_s
            self.connected, self.error, self.last_ok, self._loss = True, None, time.time(), None
            self.hung = False
            self.connects += 1
            log.info("AMI %s:%d: logged in (connection #%d)", cfg.host, cfg.port, self.connects)
            self._notify(True)
            watchdog = asyncio.get_running_loop().create_task(self._watchdog(manager), name="ami-ping")
            try:
                assert self._lost is not None
                # shield: cancelling us (stop) must not cancel the future `_handle_lost` resolves
                reason = await asyncio.shield(self._lost)
            finally:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            log.warning("AMI %s:%d: connection lost (%s); reconnecting in %.2fs", cfg.host, cfg.port, reason, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    async def _connect_once(self) -> LinkManager:
        cfg = self.config
        loop = asyncio.get_running_loop()
        manager = LinkManager(self._handle_lost, self._on_event, host=cfg.host, port=cfg.port, username=cfg.username,
                              secret=cfg.secret, events=cfg.events, loop=loop, log=_pk_log)
        manager.register_event("*", self._panoramisk_event)
        self._manager, self._lost = manager, loop.create_future()
        lost = self._lost
        task = manager.connect()
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                await task
        except TimeoutError as exc:
            raise AmiTimeout(f"TCP connect not done within {cfg.connect_timeout_s}s") from exc
        except OSError as exc:
            raise AmiNotConnected(f"cannot connect: {exc.strerror or exc}") from exc
        auth = manager.authenticated_future
        if auth is None:
            raise AmiError("panoramisk sent no Login (no username configured)")
        done, _ = await asyncio.wait({auth, lost}, timeout=cfg.connect_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if auth not in done:
            if lost in done:
                raise AmiNotConnected(f"connection closed during Login: {lost.result()}")
            raise AmiUnresponsive(f"Login not answered within {cfg.connect_timeout_s}s (Asterisk hung?)")
        reply = auth.result()
        if not reply.success:
            raise AmiError(f"Login refused: {reply.get('Message', '')}", AmiMessage.from_pairs(reply.items()).headers)
        if lost.done():
            raise AmiNotConnected(f"connection closed right after Login: {lost.result()}")
        return manager

    def _handle_lost(self, manager: LinkManager, exc: object) -> None:
        """panoramisk (or we) saw the connection end: fail what is pending, never replay it."""
        if manager is not self._manager or self._lost is None or self._lost.done():
            return
        if isinstance(exc, AmiError):
            reason = exc.message
        elif exc is None:
            reason = "connection closed by Asterisk"
        elif hasattr(exc, "get") and not isinstance(exc, BaseException):
            reason = f"Asterisk shut down (Restart: {exc.get('Restart', '?')})"
        else:
            reason = f"connection lost: {exc!r}"
        was_up, self.connected = self.connected, False
        if was_up:  # a failed attempt's own error is set by `_supervise`
            self._loss = self.error = reason
            self.hung = isinstance(exc, AmiUnresponsive)
        manager.awaiting_actions.clear()
        for fut in list(self._pending):
            if not fut.done():
                err = AmiNotConnected(f"AMI connection lost while the action was pending: {reason}")
                err.__cause__ = exc if isinstance(exc, BaseException) else None
                fut.set_exception(err)
        self._pending.clear()
        self._lost.set_result(reason)
        with contextlib.suppress(Exception):
            manager.close()
        if was_up:
            self._notify(False)

    def _notify(self, connected: bool) -> None:
        try:
            self._on_state(connected)
        except Exception:
            log.exception("AMI link state observer failed")

    async def _watchdog(self, manager: LinkManager) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.ping_interval_s)
            try:
                await self.send({"Action": "Ping"}, timeout=cfg.ping_timeout_s)
            except AmiNotConnected:
                return
            except AmiTimeout as exc:  # the connection is there, Asterisk does not answer: hung
                log.warning("AMI ping not answered (%s): Asterisk hung? dropping the connection", exc.message)
                self._handle_lost(manager, AmiUnresponsive(f"Ping not answered: {exc.message}"))
                return
            except AmiError as exc:
                log.warning("AMI ping failed (%s): dropping the connection", exc.message)
                self._handle_lost(manager, exc)
                return

    # ----------------------------------------------------------------- events
    def _panoramisk_event(self, manager: LinkManager, message: Any) -> None:
        """Called inline by panoramisk while parsing: convert, hand over, never raise."""
        try:
            if manager is not self._manager:
                return
            converted = message.__dict__.get("ccfo")  # set by SafeAMIProtocol; `getattr` would give ''
            self._on_event(converted if isinstance(converted, AmiMessage) else AmiMessage.from_pairs(message.items()))
        except Exception:
            log.exception("AMI event hand-over failed; event skipped")

    def backlog(self, queued: int) -> None:
        """Flow control: the consumer reports its queue length; reading pauses above HIGH_WATER."""
        protocol = getattr(self._manager, "protocol", None)
        transport = getattr(protocol, "transport", None)
        if transport is None:
            return
        if not self._paused and queued > HIGH_WATER:
            self._paused = True
            transport.pause_reading()
        elif self._paused and queued < LOW_WATER:
            self._paused = False
            with contextlib.suppress(Exception):
                transport.resume_reading()

    # ----------------------------------------------------------------- actions
    async def send(self, action: Mapping[str, str | list[str]], *, timeout: float | None = None,
                   as_list: bool | None = None) -> list[AmiMessage]:
        """Send one action and return its answer (a list: the Response, then any items and Complete).

        Raises `AmiError` for `Response: Error`, `AmiTimeout` past the deadline, `AmiNotConnected`
        when not logged in or when the connection drops before the answer. `as_list=False` makes a
        list action resolve on its first Response and leaves the items to the event stream (used by
        the monitor to keep list snapshots in order with events). Originate is always sent Async.
        """
        data = dict(action)
        for key, value in data.items():
            for v in value if isinstance(value, list) else [value]:
                if "\r" in str(v) or "\n" in str(v) or "\r" in key or "\n" in key:
                    raise ValueError(f"AMI header {key!r} contains a line break")
        if str(data.get("Action", "")).lower() == "originate":
            if str(data.get("Async", "true")).lower() != "true":
                raise ValueError("a sync Originate blocks the whole AMI session; use Async: true")
            data["Async"] = "true"
        data.setdefault("ActionID", f"{self._prefix}-{next(self._ids)}")
        manager = self._manager
        if not self.connected or manager is None or manager.protocol is None:
            raise AmiNotConnected(f"AMI not connected ({self.error or 'no session'})")
        cls = pk_actions.Command if "Command" in data else pk_actions.Action
        act = cls(data, as_list=as_list)
        fut = manager.send_action(act, as_list=as_list)
        self._pending.add(fut)
        deadline = self.config.action_timeout_s if timeout is None else timeout
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that races a result
            async with asyncio.timeout(deadline):
                result = await fut
        except TimeoutError as exc:
            for key in (act.id, act.action_id):
                manager.protocol.responses.pop(key, None)
            raise AmiTimeout(f"{data.get('Action')} not answered within {deadline}s") from exc
        finally:
            self._pending.discard(fut)
        messages = [AmiMessage.from_pairs(m.items()) for m in (result if isinstance(result, list) else [result])]
        self.last_ok = time.time()
        first = messages[0]
        if first.get("response").lower() in ("error", "failure", "fail"):
            raise AmiError(first.get("message") or f"{data.get('Action')} failed", first.headers)
        return messages
