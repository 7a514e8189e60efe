"""The plans of operator actions (failover, switchover, failback, the named switches), built in one place
from live state.

The HTTP API (and its dry run), the drills run in the controller process and the checklists' action
steps all ask here, so the same request gives the same plan whichever door it came through: the site
and its state as the engine holds them now, and whether the active host is reachable (a failover away
from an unreachable host cannot wait for its stops). Pure apart from reading the engine: it builds a
plan and runs nothing; `PlanRefused` says why a request makes no sense now.
"""

from __future__ import annotations

from enum import StrEnum

from ccfo.domain.plan import Plan, PlanRefused, build_failback, build_failover, build_switchover
from ccfo.domain.switches import Switch, build_switch
from controller.engine import Engine

DEFAULT_DRAIN_TIMEOUT_S = 300.0


class OperatorAction(StrEnum):
    FAILOVER = "failover"
    SWITCHOVER = "switchover"
    FAILBACK = "failback"


def source_reachable(engine: Engine) -> bool:
    """Whether the active host's agent reports now (a failover stops its services before the fence)."""
    active, snap = engine.state.active_host, engine.snap
    return bool(active and snap and snap.hosts[active].reachable)


def operator_plan(engine: Engine, action: OperatorAction, why: str, *, to: str | None = None,
                  drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> Plan:
    """The plan `action` would run now; raises PlanRefused when it is unsafe or meaningless."""
    site, state = engine.site, engine.state
    if action is not OperatorAction.FAILBACK and to is None:
        raise PlanRefused(f"{action.value} needs a target host")
    match action:
        case OperatorAction.FAILOVER:
            return build_failover(site, state, to or "", why, source_reachable=source_reachable(engine))
        case OperatorAction.SWITCHOVER:
            return build_switchover(site, state, to or "", drain_timeout_s, why)
        case OperatorAction.FAILBACK:
            return build_failback(site, state, drain_timeout_s, why)


class UnknownSwitch(KeyError):
    """No switch of this name in switches.yaml (HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0])


def switches(engine: Engine) -> tuple[Switch, ...]:
    return tuple(getattr(engine.cfg, "switches", ()))


def switch_plan(engine: Engine, name: str, why: str, *, inverse: bool = False) -> Plan:
    """The plan of the named switch (or its inverse) now; raises UnknownSwitch."""
    switch = next((s for s in switches(engine) if s.id == name), None)
    if switch is None:
        known = ", ".join(s.id for s in switches(engine)) or "none: see switches.yaml"
        raise UnknownSwitch(f"unknown switch {name!r} (switches: {known})")
    order = getattr(engine.cfg, "repoint_order", None)
    return build_switch(engine.site, engine.state, switch, why, inverse=inverse, repoint_order=order)
