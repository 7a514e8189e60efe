"""The agent's SNMP responder: CCFO-MIB served from the live host view, notifications on every change.

One pysnmp engine per responder, created in `start()` inside the running loop and kept for the process's
life (an engine costs ~50-90 ms). SNMPv3 authPriv (HMAC-SHA-96 / AES-128) by default; an optional
read-only v2c community. The agent hands us a callable returning its current `HostView`, and calls
`view_changed()` when it knows something changed; a watch task re-reads the view every
`watch_interval_s` as a safety net. Consecutive views are compared (`changes.changes`) and each change
the MIB names goes to every notification target.

Keys and communities are `Secret`s: they are handed to pysnmp and never logged. The read view is limited
to the system group, CCFO-MIB and dsx1LineStatus, so pysnmp's own tables (which hold the USM pass
phrases in clear) are never readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence

from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto.api import v2c

from agents.snmp.changes import Outgoing, changes
from agents.snmp.instrum import ViewInstrumentation
from ccfo.snmp import layout as L
from ccfo.snmp.notify import VIEW_NONE, VIEW_NOTIFY, NotificationSender, add_common_views, add_usm_user
from ccfo.snmp.security import NotifyTarget, Secret, V3User, engine_id_for
from ccfo.snmp.view import HostView
from ccfo.snmp.wire import attach_udp, bind_udp, require_aes

log = logging.getLogger(__name__)

VIEW_READ = "ccfo-read"
GROUP_READ_V3 = "ccfo-read-v3"
GROUP_READ_V2C = "ccfo-read-v2c"
COMMUNITY_INDEX = "ccfo-ro"


class SnmpResponder:
    """Serve CCFO-MIB for one host.

    Args:
        view: returns the current HostView; called on every request and change check, so it must be
            cheap and must not block (return a cached frozen value).
        user: the SNMPv3 read user (authPriv). Required unless a community is given.
        community: optional read-only SNMPv2c community.
        host, port: where to listen (port 0: any free port, see `.port`).
        enterprise: the site's enterprise number (site.snmp_enterprise).
        targets: where notifications go.
        engine_id: the snmpEngineID; default derived from the enterprise and the view's host id.
        watch_interval_s: how often to re-read the view for changes by ourselves (None: only when told).
    """

    def __init__(self, view: Callable[[], HostView], *, user: V3User | None, community: Secret | None = None,
                 host: str = "127.0.0.1", port: int = 161, enterprise: int = L.DOC_ENTERPRISE,
                 targets: Sequence[NotifyTarget] = (), engine_id: bytes | None = None,
                 watch_interval_s: float | None = 1.0, sys_descr: str = "ccfo agent") -> None:
        if user is None and community is None:
            raise ValueError("SnmpResponder needs a v3 user or a v2c community")
        self._source = view
        self._user = user
        self._community = community
        self._host = host
        self._port = port
        self._layout = L.Layout(enterprise)
        self._targets = tuple(targets)
        self._engine_id = engine_id
        self._watch_interval_s = watch_interval_s
        self._sys_descr = sys_descr
        self._engine: engine.SnmpEngine | None = None
        self._sock: socket.socket | None = None
        self._instrum: ViewInstrumentation | None = None
        self._sender: NotificationSender | None = None
        self._last: HostView | None = None
        self._watch: asyncio.Task[None] | None = None
        self.notifications_sent = 0
        self.notifications_by_kind: dict[str, int] = {}  # for /metrics

    @property
    def layout(self) -> L.Layout:
        return self._layout

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("responder not started")
        return int(self._sock.getsockname()[1])

    @property
    def engine_id(self) -> bytes:
        if self._engine_id is None:
            raise RuntimeError("responder not started")
        return self._engine_id

    @property
    def sender(self) -> NotificationSender | None:
        return self._sender

    async def start(self) -> None:
        """Bind (OSError at once if the port is taken), configure the engine, send nothing yet."""
        if self._engine is not None:
            raise RuntimeError("responder already started")
        if self._user is not None or any(t.user for t in self._targets):
            require_aes()
        self._last = self._read_view()
        if self._engine_id is None:
            name = self._last.host if self._last else socket.gethostname()
            self._engine_id = engine_id_for(self._layout.enterprise, name)
        sock = bind_udp(self._host, self._port)
        try:
            eng = engine.SnmpEngine(snmpEngineID=v2c.OctetString(self._engine_id))
            await attach_udp(eng, sock)
        except BaseException:
            sock.close()
            raise
        self._sock, self._engine = sock, eng
        self._configure_access(eng)
        self._instrum = ViewInstrumentation(self._source, self._layout, self._sys_descr)
        snmp_context = context.SnmpContext(eng)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", self._instrum)
        for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder, cmdrsp.BulkCommandResponder):
            responder(eng, snmp_context)
        self._sender = NotificationSender(eng, self._targets, self._layout,
                                          readers=[self._user] if self._user else [])
        if self._watch_interval_s:
            self._watch = asyncio.create_task(self._watch_loop(self._watch_interval_s), name="ccfo-snmp-watch")
        log.info("snmp: serving CCFO-MIB (enterprise %d) on %s:%d (%s), %d notification target(s)",
                 self._layout.enterprise, self._host, self.port,
                 "v3 authPriv" + (" + v2c read-only" if self._community else "") if self._user else "v2c read-only",
                 len(self._targets))

    def _configure_access(self, eng: engine.SnmpEngine) -> None:
        config.add_context(eng, "")
        add_common_views(eng, self._layout)
        for subtree in (L.SYSTEM, self._layout.root, L.DSX1_LINE_STATUS):
            config.add_vacm_view(eng, VIEW_READ, "included", subtree, "")
        if self._user is not None:
            add_usm_user(eng, self._user)
            config.add_vacm_group(eng, GROUP_READ_V3, 3, self._user.name)
            config.add_vacm_access(eng, GROUP_READ_V3, "", 3, "authPriv", "exact", VIEW_READ, VIEW_NONE, VIEW_NOTIFY)
        if self._community is not None:
            config.add_v1_system(eng, COMMUNITY_INDEX, self._community.reveal())
            config.add_vacm_group(eng, GROUP_READ_V2C, 2, COMMUNITY_INDEX)
            config.add_vacm_access(eng, GROUP_READ_V2C, "", 2, "noAuthNoPriv", "exact", VIEW_READ, VIEW_NONE,
                                   VIEW_NONE)

    def _read_view(self) -> HostView | None:
        try:
            return self._source()
        except Exception as exc:
            log.error("snmp: cannot read the host view: %s: %s", type(exc).__name__, exc)
            return None

    def view_changed(self) -> list[Outgoing]:
        """Re-read the view now and notify every change since the last check. Returns what was sent."""
        new = self._read_view()
        if new is None or self._sender is None or self._instrum is None:
            return []
        old, self._last = self._last, new
        if old is new:
            return []
        try:
            outgoing = changes(old, new, self._layout)
        except Exception:
            log.exception("snmp: cannot compare host views; no notification for this change")
            return []
        for item in outgoing:
            log.info("snmp: notify %s", item.describe())
            name = item.kind.name.lower()
            self.notifications_by_kind[name] = self.notifications_by_kind.get(name, 0) + 1
            self._sender.send(item.kind, item.varbinds, self._instrum.uptime_ticks())
        self.notifications_sent += len(outgoing)
        return outgoing

    async def _watch_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.view_changed()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> SnmpResponder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
