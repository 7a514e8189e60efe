"""The controller's SNMP edge: poll agents' CCFO-MIB, receive their notifications, notify the site NMS.

* `SnmpPoller.poll(endpoint)` walks an agent's CCFO-MIB with GETBULK (one request for a small host) and
  returns a frozen `PolledHost` holding the agent's view: the safety net beside the agents' HTTP reports.
* `TrapReceiver` listens for v2c traps and v3 traps/informs and calls back with a `ReceivedNotification`,
  so a span alarm can trigger an evaluation at once instead of at the next poll.
* `ControllerNotifier` sends the controller's own events (decision, plan started/finished/failed, duty
  change) to the site NMS as CCFO-MIB notifications. It is an observer: it never raises.

Each class owns one pysnmp engine for its life. Library failures surface as `SnmpError` raised from the
original; malformed input from the wire is logged with its raw varbinds and skipped. Credentials are
`Secret`s and never logged. pysnmp may be imported only here, in `controller.adapters` and in
`agents.snmp` (whose pure layout and glue this module reuses).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_PRIV_CFB128_AES,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine as HlapiEngine
from pysnmp.proto.api import v2c

from ccfo.snmp import layout as L
from ccfo.snmp.decode import DecodedNotification, decode_notification
from ccfo.snmp.notify import NotificationSender, add_common_views
from ccfo.snmp.security import NotifyTarget, Secret, V3User, engine_id_for
from ccfo.snmp.view import HostView
from ccfo.snmp.wire import SnmpValueError, attach_udp, bind_udp, from_pysnmp, oid_text, pretty, require_aes

log = logging.getLogger(__name__)


class SnmpError(Exception):
    """An SNMP exchange with an agent failed (timeout, authentication, error status, malformed data)."""


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """An agent's SNMP address and the credentials to read it (a v3 user, else a v2c community)."""

    host: str
    port: int = 161
    user: V3User | None = None
    community: Secret | None = None
    timeout_s: float = 1.0
    retries: int = 1

    def __post_init__(self) -> None:
        if (self.user is None) == (self.community is None):
            raise ValueError(f"agent endpoint {self.host}:{self.port}: give exactly one of user or community")

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PolledHost:
    endpoint: str
    at: float  # wall clock, epoch seconds
    elapsed_s: float
    sys_uptime_ticks: int | None
    view: HostView


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    received_at: float
    source: tuple[str, int]
    version: str  # v1, v2c, v3
    security_name: str
    notification: DecodedNotification
    varbinds: tuple[tuple[L.Oid, Any], ...]  # plain values, for logs and the journal

    @property
    def kind(self) -> L.Notification | None:
        return self.notification.kind

    @property
    def host(self) -> str | None:
        return self.notification.host


class SnmpPoller:
    """Reads agents' CCFO-MIB. One engine for all agents; targets are cached per endpoint."""

    def __init__(self, enterprise: int = L.DOC_ENTERPRISE, max_repetitions: int = 50) -> None:
        self._layout = L.Layout(enterprise)
        self._max_rep = max(1, min(max_repetitions, 64))
        self._engine: HlapiEngine | None = None
        self._targets: dict[AgentEndpoint, tuple[Any, Any]] = {}

    async def _target(self, ep: AgentEndpoint) -> tuple[Any, Any]:
        if ep.user is not None:
            require_aes()
        if self._engine is None:
            self._engine = HlapiEngine()
        if ep not in self._targets:
            if ep.user is not None:
                auth: Any = UsmUserData(ep.user.name, ep.user.auth_key.reveal(), ep.user.priv_key.reveal(),
                                        authProtocol=USM_AUTH_HMAC96_SHA, privProtocol=USM_PRIV_CFB128_AES)
            else:
                assert ep.community is not None
                auth = CommunityData(f"ccfo-{ep.host}-{ep.port}", ep.community.reveal(), mpModel=1)
            tgt = await UdpTransportTarget.create((ep.host, ep.port), timeout=ep.timeout_s, retries=ep.retries)
            self._targets[ep] = (auth, tgt)
        return self._targets[ep]

    async def walk(self, ep: AgentEndpoint, base: L.Oid) -> tuple[dict[L.Oid, Any], int | None]:
        """All instances under `base` (GETBULK), and sysUpTime read in the same first request."""
        auth, tgt = await self._target(ep)
        assert self._engine is not None
        values: dict[L.Oid, Any] = {}
        uptime: int | None = None
        cursor, first = base, True
        deadline = (ep.timeout_s * (ep.retries + 1)) * 4 + 1.0
        while True:
            head = [ObjectType(ObjectIdentity(L.SYS_UPTIME[:-1]))] if first else []
            try:
                err_ind, err_status, err_index, binds = await asyncio.wait_for(bulk_cmd(
                    self._engine, auth, tgt, ContextData(), len(head), self._max_rep,
                    *head, ObjectType(ObjectIdentity(cursor)), lookupMib=False), deadline)
            except TimeoutError as exc:
                raise SnmpError(f"{ep.label}: no answer within {deadline:.1f}s") from exc
            if err_ind:
                raise SnmpError(f"{ep.label}: {err_ind}")
            if int(err_status):
                raise SnmpError(f"{ep.label}: error status {err_status.prettyPrint()} at {int(err_index)}")
            rows = [(tuple(name), val) for name, val in binds]
            if first and rows:
                name, val = rows.pop(0)
                uptime = from_pysnmp(val) if name == L.SYS_UPTIME else None  # type: ignore[assignment]
                first = False
            done, cursor = self._collect(rows, base, cursor, values)
            if done:
                return values, uptime

    @staticmethod
    def _collect(rows: list[tuple[L.Oid, Any]], base: L.Oid, cursor: L.Oid,
                 values: dict[L.Oid, Any]) -> tuple[bool, L.Oid]:
        if not rows:
            return True, cursor
        for oid, val in rows:
            if oid[: len(base)] != base or oid <= cursor:
                return True, cursor  # left the subtree, end of view, or a non-increasing OID
            try:
                v = from_pysnmp(val)
            except SnmpValueError as exc:
                log.warning("snmp poll: skipping %s: %s", oid_text(oid), exc)
                v = None
            if v is None:
                return True, cursor
            values[oid] = v
            cursor = oid
        return False, cursor

    async def poll(self, ep: AgentEndpoint) -> PolledHost:
        """The agent's view now; raises SnmpError (timeouts, auth failures, malformed data)."""
        started, at = time.monotonic(), time.time()
        values, uptime = await self.walk(ep, self._layout.obj())
        if self._layout.host_name not in values:
            raise SnmpError(f"{ep.label}: no CCFO-MIB under {oid_text(self._layout.root)} (wrong enterprise?)")
        try:
            view = L.parse_view(values, self._layout)
        except (ValueError, TypeError) as exc:
            log.warning("snmp poll: malformed CCFO-MIB from %s: %s; raw: %r", ep.label, exc, values)
            raise SnmpError(f"{ep.label}: malformed CCFO-MIB data: {exc}") from exc
        return PolledHost(ep.label, at, time.monotonic() - started, uptime, view)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            await asyncio.sleep(0)  # asyncio closes the UDP socket on the loop's next turn
            self._engine = None
        self._targets.clear()


NotificationCallback = Callable[[ReceivedNotification], Any]


class TrapReceiver:
    """Receives notifications on host:port and calls `callback` with each parsed one.

    communities: v1/v2c communities accepted. users: v3 users; informs need nothing else, v3 *traps*
    are accepted only from the engine IDs in `trap_engine_ids` (an agent's is `engine_id_for(enterprise,
    host id)`). The callback may be a plain function or a coroutine function (run as an owned task).
    """

    def __init__(self, callback: NotificationCallback, *, host: str = "127.0.0.1", port: int = 162,
                 communities: Sequence[Secret] = (), users: Sequence[V3User] = (),
                 trap_engine_ids: Sequence[bytes] = (), enterprise: int = L.DOC_ENTERPRISE,
                 engine_id: bytes | None = None) -> None:
        self._callback = callback
        self._host, self._port = host, port
        self._communities, self._users = tuple(communities), tuple(users)
        self._trap_engine_ids = tuple(trap_engine_ids)
        self._layout = L.Layout(enterprise)
        self._engine_id = engine_id or engine_id_for(enterprise, "ccfo-controller")
        self._engine: engine.SnmpEngine | None = None
        self._sock: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.received = 0
        self.malformed = 0

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("receiver not started")
        return int(self._sock.getsockname()[1])

    @property
    def engine_id(self) -> bytes:
        return self._engine_id

    async def start(self) -> None:
        if self._users:
            require_aes()
        sock = bind_udp(self._host, self._port)
        try:
            eng = engine.SnmpEngine(snmpEngineID=v2c.OctetString(self._engine_id))
            await attach_udp(eng, sock)
        except BaseException:
            sock.close()
            raise
        self._sock, self._engine = sock, eng
        for i, community in enumerate(self._communities):
            config.add_v1_system(eng, f"ccfo-rx{i}", community.reveal())
        for user in self._users:
            args = (user.name, USM_AUTH_HMAC96_SHA, user.auth_key.reveal(), USM_PRIV_CFB128_AES,
                    user.priv_key.reveal())
            config.add_v3_user(eng, *args)  # informs: keys localized to our own engine ID
            for sender in self._trap_engine_ids:
                config.add_v3_user(eng, *args, securityEngineId=v2c.OctetString(sender))
        ntfrcv.NotificationReceiver(eng, self._on_notification)
        log.info("snmp: receiving notifications on %s:%d", self._host, self.port)

    def _on_notification(self, snmp_engine: engine.SnmpEngine, state_reference: Any, context_engine_id: Any,
                         context_name: Any, var_binds: Any, cb_ctx: Any) -> None:
        try:
            ctx = snmp_engine.observer.get_execution_context("rfc3412.receiveMessage:request")
            source = tuple(ctx.get("transportAddress") or ("?", 0))
            version = {1: "v1", 2: "v2c", 3: "v3"}.get(int(ctx.get("securityModel", 0)), "?")
            sec_name = str(ctx.get("securityName", ""))
        except Exception:  # the observer context is pysnmp-internal; a missing key must not lose the trap
            source, version, sec_name = ("?", 0), "?", ""
        raw: list[tuple[L.Oid, Any]] = []
        try:
            raw = [(tuple(name), from_pysnmp(val)) for name, val in var_binds]
            decoded = decode_notification(self._layout, raw)
        except (ValueError, TypeError) as exc:
            self.malformed += 1
            log.warning("snmp: malformed notification from %s (%s): %s; raw: %s", source, version, exc,
                        pretty(var_binds))
            return
        self.received += 1
        record = ReceivedNotification(time.time(), (str(source[0]), int(source[1])), version, sec_name, decoded,
                                      tuple(raw))
        log.info("snmp: %s from %s host=%s %s", decoded.name, record.source[0], decoded.host, dict(decoded.fields))
        self._dispatch(record)

    def _dispatch(self, record: ReceivedNotification) -> None:
        try:
            result = self._callback(record)
        except Exception:
            log.exception("snmp: notification callback failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.error("snmp: notification callback failed: %r", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._engine is not None:
            self._engine.close_dispatcher()
            await asyncio.sleep(0)  # asyncio closes the UDP socket on the loop's next turn
            self._engine = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class ControllerNotifier:
    """Sends the controller's events to the site NMS. Methods never raise; failures are logged."""

    def __init__(self, targets: Sequence[NotifyTarget], *, enterprise: int = L.DOC_ENTERPRISE,
                 host: str = "0.0.0.0", engine_id: bytes | None = None) -> None:
        self._targets = tuple(targets)
        self._layout = L.Layout(enterprise)
        self._host = host
        self._engine_id = engine_id or engine_id_for(enterprise, "ccfo-controller-ntf")
        self._engine: engine.SnmpEngine | None = None
        self._sock: Any = None
        self._sender: NotificationSender | None = None
        self._started = time.monotonic()

    @property
    def engine_id(self) -> bytes:
        return self._engine_id

    @property
    def sender(self) -> NotificationSender | None:
        return self._sender

    async def start(self) -> None:
        if any(t.user for t in self._targets):
            require_aes()
        sock = bind_udp(self._host, 0)
        try:
            eng = engine.SnmpEngine(snmpEngineID=v2c.OctetString(self._engine_id))
            await attach_udp(eng, sock)
        except BaseException:
            sock.close()
            raise
        self._sock, self._engine = sock, eng
        config.add_context(eng, "")
        add_common_views(eng, self._layout)
        self._sender = NotificationSender(eng, self._targets, self._layout)

    def _send(self, kind: L.Notification, **fields: str) -> None:
        if self._sender is None:
            log.warning("snmp: notifier not started; dropping %s", kind.name.lower())
            return
        arcs = {"host": L.EVENT_HOST, "rule": L.EVENT_RULE, "action": L.EVENT_ACTION, "plan_id": L.EVENT_PLAN,
                "text": L.EVENT_TEXT}
        binds: list[tuple[L.Oid, L.Typed]] = []
        for name, value in fields.items():
            if name == "duty":
                binds.append((self._layout.event(L.EVENT_DUTY), L.Typed("int", L.encode_enum(L.DUTY, value))))
            else:
                limit = 255 if name == "text" else 64
                binds.append((self._layout.event(arcs[name]), L.Typed("str", str(value)[:limit])))
        try:
            uptime = int((time.monotonic() - self._started) * 100) % 2**32
            self._sender.send(kind, binds, uptime)
        except Exception:
            log.exception("snmp: cannot send %s", kind.name.lower())

    def decision(self, host: str, rule: str, action: str, text: str) -> None:
        self._send(L.Notification.DECISION, host=host, rule=rule, action=action, text=text)

    def plan_started(self, plan_id: str, host: str, action: str, text: str) -> None:
        self._send(L.Notification.PLAN_STARTED, plan_id=plan_id, host=host, action=action, text=text)

    def plan_finished(self, plan_id: str, host: str, action: str, text: str) -> None:
        self._send(L.Notification.PLAN_FINISHED, plan_id=plan_id, host=host, action=action, text=text)

    def plan_failed(self, plan_id: str, host: str, action: str, text: str) -> None:
        self._send(L.Notification.PLAN_FAILED, plan_id=plan_id, host=host, action=action, text=text)

    def role_changed(self, host: str, duty: str, text: str) -> None:
        self._send(L.Notification.SITE_ROLE_CHANGED, host=host, duty=duty, text=text)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            await asyncio.sleep(0)  # asyncio closes the UDP socket on the loop's next turn
            self._engine = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
