"""The responder's MIB instrumentation: GET and GETNEXT (and so GETBULK) answered from the live view.

pysnmp calls `read_variables` / `read_next_variables` synchronously for each request. We serve a sorted
table of (OID, value) built from the latest `HostView` (rebuilt only when the view object changes), plus
the system group with a live sysUpTime. Access control is applied here through the `acFun` pysnmp
passes in (a custom controller gets no VACM otherwise). Nothing here may raise a non-SMI exception: a
failing view source means the last good table is served, and the failure is logged once per kind.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from typing import Any

from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error
from pysnmp.smi import exval
from pysnmp.smi.instrum import AbstractMibInstrumController

from ccfo.snmp import layout as L
from ccfo.snmp.view import HostView
from ccfo.snmp.wire import to_pysnmp

log = logging.getLogger(__name__)


class ViewInstrumentation(AbstractMibInstrumController):
    """Serves the system group, CCFO-MIB and DS1-MIB dsx1LineStatus from `source()`."""

    def __init__(self, source: Callable[[], HostView], lay: L.Layout, sys_descr: str = "ccfo agent") -> None:
        self._source = source
        self._layout = lay
        self._sys_descr = sys_descr
        self._started = time.monotonic()
        self._view: HostView | None = None
        self._oids: list[L.Oid] = []
        self._values: dict[L.Oid, Any] = {}
        self._objects: set[L.Oid] = set()  # OIDs of objects (without instance) we serve: noSuchInstance
        self._last_error: str | None = None
        self._access: dict[tuple[Any, ...], bool] = {}
        self.requests = 0

    def uptime_ticks(self) -> int:
        return int((time.monotonic() - self._started) * 100) % 2**32

    def _refresh(self) -> None:
        try:
            view = self._source()
            if view is self._view:
                return
            rows = L.view_rows(view, self._layout)
            values = {oid: to_pysnmp(t) for oid, t in rows}
            values.update(self._system_rows(view))
        except Exception as exc:  # the view source is the agent's code: never let it break a response
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self._last_error:
                log.error("snmp: cannot read the host view (%s); serving the last known values", msg)
                self._last_error = msg
            return
        self._last_error = None
        self._view = view
        self._values = values
        self._oids = sorted(values)
        # every served instance is <object>.<one index arc>; table columns stay known when a table is empty
        self._objects = {oid[:-1] for oid in values} | {
            L.DSX1_LINE_STATUS, *(self._layout.obj(2, 2, 1, c) for c in range(2, 6)),
            *(self._layout.obj(3, 1, 1, c) for c in range(2, 5))}

    def _system_rows(self, view: HostView) -> dict[L.Oid, Any]:
        return {
            L.SYS_DESCR: v2c.OctetString(f"{self._sys_descr} on {view.host}".encode()),
            L.SYS_OBJECT_ID: v2c.ObjectIdentifier(self._layout.root),
            L.SYS_UPTIME: None,  # computed per request
            L.SYS_CONTACT: v2c.OctetString(b""),
            L.SYS_NAME: v2c.OctetString(view.host.encode()),
            L.SYS_LOCATION: v2c.OctetString(b""),
            L.SYS_SERVICES: v2c.Integer32(72),  # application + end-to-end layers
        }

    def _value(self, oid: L.Oid) -> Any:
        if oid == L.SYS_UPTIME:
            return v2c.TimeTicks(self.uptime_ticks())
        return self._values[oid]

    def _in_view(self, name: Any, idx: int, context: dict[str, Any]) -> bool:
        """True when readable; False when outside the requester's view; raises when it has no access.

        Verdicts are cached per (security model, name, level, context, OID): the VACM tables are written
        once at start-up, and the check costs more than the rest of a GETNEXT. Refusals are not cached.
        """
        ac = context.get("acFun")
        if ac is None:
            return True
        key = self._access_key(name, context)
        if key is not None and key in self._access:
            return self._access[key]
        allowed = not ac("read", (name, None), **dict(context, idx=idx))
        if key is not None:
            if len(self._access) > 8192:
                self._access.clear()
            self._access[key] = allowed
        return allowed

    @staticmethod
    def _access_key(name: Any, context: dict[str, Any]) -> tuple[Any, ...] | None:
        try:
            ctx = context["snmpEngine"].observer.get_execution_context("rfc3412.receiveMessage:request")
            return (int(ctx["securityModel"]), bytes(ctx["securityName"]), int(ctx["securityLevel"]),
                    bytes(ctx["contextName"]), tuple(name))
        except Exception:  # no execution context (not a network request): check every time
            return None

    def read_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        self.requests += 1
        self._refresh()
        out = []
        for idx, (name, _) in enumerate(var_binds):
            oid = tuple(name)
            if not self._in_view(name, idx, context):
                out.append((name, exval.noSuchObject))
            elif oid in self._values:
                out.append((name, self._value(oid)))
            elif oid[:-1] in self._objects:
                out.append((name, exval.noSuchInstance))
            else:
                out.append((name, exval.noSuchObject))
        return out

    def read_next_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        self.requests += 1
        self._refresh()
        out = []
        for idx, (name, _) in enumerate(var_binds):
            out.append(self._next(tuple(name), name, idx, context))
        return out

    def _next(self, oid: L.Oid, name: Any, idx: int, context: dict[str, Any]) -> tuple[Any, Any]:
        pos = bisect.bisect_right(self._oids, oid)
        while pos < len(self._oids):
            candidate = self._oids[pos]
            cname = v2c.ObjectIdentifier(candidate)
            if self._in_view(cname, idx, context):
                return cname, self._value(candidate)
            pos += 1
        return name, exval.endOfMibView

    def write_variables(self, *var_binds: Any, **context: Any) -> list[tuple[Any, Any]]:
        raise smi_error.NotWritableError(idx=0)
