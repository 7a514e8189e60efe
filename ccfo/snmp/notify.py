"""Sending SNMP notifications (v2c traps, v3 traps, v2c or v3 informs) to configured targets.

Uses pysnmp's low-level originator with explicit SNMP-TARGET / SNMP-NOTIFICATION / VACM rows, never the
hlapi `send_notification` (on an agent's engine it regroups the agent's own USM user under an empty read
view, which pysnmp's VACM then treats as full access, exposing the USM pass phrases). Each target gets
its own parameters, tag and notification row, so a notification goes to each target exactly once.

Every access entry points at views that exist and hold at least one row (pysnmp 7 treats a missing or
empty view as "allow"). Credentials for notify-only principals cannot be used to read: a v2c trap
community is bound to a transport tag no incoming address carries, and a notify-only v3 user's group
reads and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import ntforg
from pysnmp.proto.api import v2c

from ccfo.snmp import layout as L
from ccfo.snmp.security import NotifyTarget, V3User
from ccfo.snmp.wire import to_pysnmp

log = logging.getLogger(__name__)

VIEW_NONE = "ccfo-none"
VIEW_NOTIFY = "ccfo-notify"
GROUP_NOTIFY_V3 = "ccfo-notify-v3"
GROUP_NOTIFY_V2C = "ccfo-notify-v2c"
OUTBOUND_ONLY_TAG = "ccfo-outbound-only"


def add_common_views(snmp_engine: engine.SnmpEngine, lay: L.Layout) -> None:
    """The 'nothing' view and the notify view (sysUpTime, snmpTrapOID, CCFO-MIB, dsx1LineStatus)."""
    config.add_vacm_view(snmp_engine, VIEW_NONE, "excluded", (1, 3, 6), "")
    for subtree in (L.SYS_UPTIME[:-1], L.SNMP_TRAP_OID[:-1], lay.root, L.DSX1_LINE_STATUS):
        config.add_vacm_view(snmp_engine, VIEW_NOTIFY, "included", subtree, "")


def add_usm_user(snmp_engine: engine.SnmpEngine, user: V3User) -> None:
    config.add_v3_user(snmp_engine, user.name, config.USM_AUTH_HMAC96_SHA, user.auth_key.reveal(),
                       config.USM_PRIV_CFB128_AES, user.priv_key.reveal())


@dataclass
class SendStats:
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    last_error: str | None = None
    per_target: dict[str, int] = field(default_factory=dict)


class NotificationSender:
    """Configures `targets` on `snmp_engine` (which must already have a UDP transport) and sends to them.

    `readers` are the v3 users the engine already knows (the agent's read user): a target may reuse one
    of them (same keys), otherwise its user becomes a notify-only principal.
    """

    def __init__(self, snmp_engine: engine.SnmpEngine, targets: Sequence[NotifyTarget], lay: L.Layout,
                 readers: Sequence[V3User] = (), reader_group: str | None = None) -> None:
        self._engine = snmp_engine
        self._layout = lay
        self._targets = tuple(targets)
        self._originator = ntforg.NotificationOriginator()
        self.stats = SendStats()
        names = [t.name for t in self._targets]
        if len(set(names)) != len(names):
            raise ValueError("notification target names must be unique")
        known = {u.name: u for u in readers}
        has_v3_notify_group = has_v2c_group = False
        for i, target in enumerate(self._targets):
            params, tag = f"ccfo-p{i}", f"ccfo-t{i}"
            if target.user is not None:
                user = target.user
                if user.name in known:
                    if known[user.name] != user:
                        raise ValueError(f"notification target {target.name}: user {user.name} is also the read "
                                         "user but with other keys")
                else:
                    add_usm_user(snmp_engine, user)
                    known[user.name] = user
                    config.add_vacm_group(snmp_engine, GROUP_NOTIFY_V3, 3, user.name)
                    has_v3_notify_group = True
                config.add_target_parameters(snmp_engine, params, user.name, "authPriv", 3)
            else:
                assert target.community is not None
                sec_name = f"ccfo-c{i}"
                config.add_v1_system(snmp_engine, sec_name, target.community.reveal(),
                                     transportTag=OUTBOUND_ONLY_TAG, securityName=sec_name)
                config.add_vacm_group(snmp_engine, GROUP_NOTIFY_V2C, 2, sec_name)
                has_v2c_group = True
                config.add_target_parameters(snmp_engine, params, sec_name, "noAuthNoPriv", 1)
            config.add_target_address(snmp_engine, f"ccfo-a{i}", udp.DOMAIN_NAME, (target.host, target.port),
                                      params, timeout=max(1, int(target.timeout_s * 100)),
                                      retryCount=max(0, target.retries), tagList=tag)
            config.add_notification_target(snmp_engine, f"ccfo-n{i}", params, tag, target.kind)
        if has_v3_notify_group:
            config.add_vacm_access(snmp_engine, GROUP_NOTIFY_V3, "", 3, "authPriv", "exact",
                                   VIEW_NONE, VIEW_NONE, VIEW_NOTIFY)
        if has_v2c_group:
            config.add_vacm_access(snmp_engine, GROUP_NOTIFY_V2C, "", 2, "noAuthNoPriv", "exact",
                                   VIEW_NONE, VIEW_NONE, VIEW_NOTIFY)

    @property
    def targets(self) -> tuple[NotifyTarget, ...]:
        return self._targets

    def send(self, kind: L.Notification, varbinds: Sequence[tuple[L.Oid, L.Typed]], uptime_ticks: int) -> None:
        """Queue one notification to every target; never raises (failures are logged and counted)."""
        binds = [(L.SYS_UPTIME, v2c.TimeTicks(uptime_ticks)),
                 (L.SNMP_TRAP_OID, v2c.ObjectIdentifier(self._layout.notification(kind)))]
        binds += [(oid, to_pysnmp(value)) for oid, value in varbinds]
        for i, target in enumerate(self._targets):
            try:
                handle = self._originator.send_varbinds(self._engine, f"ccfo-n{i}", None, b"", binds,
                                                        self._done, (target, kind))
            except Exception as exc:  # pysnmp raises its own errors for bad target rows; keep serving
                self._failed(target, kind, f"{type(exc).__name__}: {exc}")
                continue
            if handle is None:
                self._failed(target, kind, "not sent (pysnmp refused the target or the notify view)")
                continue
            self.stats.sent += 1
            self.stats.per_target[target.name] = self.stats.per_target.get(target.name, 0) + 1

    def _done(self, snmp_engine: object, handle: object, error_indication: object, error_status: object,
              error_index: object, var_binds: object, ctx: tuple[NotifyTarget, L.Notification]) -> None:
        target, kind = ctx
        if error_indication:
            self._failed(target, kind, str(error_indication))
        elif target.kind == "inform":
            self.stats.acknowledged += 1

    def _failed(self, target: NotifyTarget, kind: L.Notification, why: str) -> None:
        self.stats.failed += 1
        self.stats.last_error = why
        log.warning("snmp: notification %s to %s failed: %s", kind.name.lower(), target.describe(), why)
