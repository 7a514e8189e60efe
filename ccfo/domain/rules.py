"""The documented failover rules as data, and the pure decision: (site, state, faults, now) -> Decision.

`evaluate` never raises for a reachable situation and never acts: it returns a typed Decision with one
human sentence and, where a rule applies, the plan the rule prescribes. The mode decides what happens
to that plan (execute, propose for approval, or only report). One decision per cycle: the first
matching rule in the configured order wins; the rest wait for the next cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ccfo.domain.faults import Fault, FaultKind, FaultTracker
from ccfo.domain.plan import (
    Action,
    Plan,
    build_alert,
    build_failover,
    build_isolate_board,
    build_isolate_standby,
    build_repoint_db,
)
from ccfo.domain.site import Duty, HostId, Site
from ccfo.domain.state import Mode, SiteState


class RoleMatch(StrEnum):
    PRIMARY = "primary"  # the host running CTI/IVR now (after a failover: the former standby)
    STANDBY = "standby"
    ANY = "any"
    ACTIVE_DB = "active_db"  # for db_down: the database site the hosts point at


class Approval(StrEnum):
    MODE = "mode"  # the site's mode decides (supervised: approve; automatic: run)
    ALWAYS = "always"  # an operator approves even in automatic mode


class Disposition(StrEnum):
    NONE = "none"  # nothing to do
    EXECUTE = "execute"  # run now without approval (automatic mode)
    PROPOSE = "propose"  # wait for an operator's approval
    REPORT = "report"  # shown and notified, not acted on (manual, maintenance, alerts, flapping)


SERVICE_FAULTS = frozenset({FaultKind.SERVICE_DOWN, FaultKind.SERVICE_HUNG})


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    role: RoleMatch
    faults: frozenset[FaultKind]
    action: Action
    debounce_s: float = 3.0
    services: frozenset[str] | None = None  # for service_down/service_hung: which services this rule covers
    approval: Approval = Approval.MODE
    source: str = ""
    # overrides debounce_s per fault kind (a hang already outlasted its probe's `failures`)
    debounce_by_fault: Mapping[FaultKind, float] = field(default_factory=dict, hash=False)
    # repoint_db: who is repointed, in order ("ipc" and server kinds; see ccfo.domain.plan.DEFAULT_REPOINT_ORDER)
    repoint_order: tuple[str, ...] | None = None

    def matches(self, fault: Fault, role: RoleMatch | None) -> bool:
        if fault.kind not in self.faults:
            return False
        if fault.kind in SERVICE_FAULTS and self.services is not None and fault.subject not in self.services:
            return False
        return self.role is RoleMatch.ANY or self.role is role

    def debounce(self, kind: FaultKind) -> float:
        """How long a fault of this kind must last before the rule acts on it."""
        return self.debounce_by_fault.get(kind, self.debounce_s)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    hold_down_s: float = 600.0
    default_debounce_s: float = 3.0

    def rule_for(self, fault: Fault, role: RoleMatch | None) -> Rule | None:
        return next((r for r in self.rules if r.matches(fault, role)), None)

    @property
    def repoint_order(self) -> tuple[str, ...] | None:
        """The order of the first repoint_db rule: a runbook's repoint step repoints in the same order."""
        return next((r.repoint_order for r in self.rules if r.action is Action.REPOINT_DB), None)


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str | None
    action: Action
    disposition: Disposition
    reason: str
    faults: tuple[Fault, ...] = ()
    plan: Plan | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def approval_required(self) -> bool:
        return self.disposition is Disposition.PROPOSE

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "action": self.action.value,
            "disposition": self.disposition.value,
            "approval_required": self.approval_required,
            "reason": self.reason,
            "faults": [str(f) for f in self.faults],
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.plan.steps] if self.plan else [],
        }


def role_of(site: Site, state: SiteState, fault: Fault) -> RoleMatch | None:
    """The role a fault's host plays now (rules match current roles, so they keep working after a swap)."""
    if fault.kind is FaultKind.DB_DOWN:
        return RoleMatch.ACTIVE_DB if fault.db_site == state.active_db else None
    hs = state.hosts.get(fault.component)
    if hs is None or hs.duty is Duty.OUT:
        return None
    return RoleMatch.PRIMARY if hs.duty.active else RoleMatch.STANDBY


def debounce_for(site: Site, state: SiteState, policy: Policy) -> Any:
    def debounce(fault: Fault) -> float:
        rule = policy.rule_for(fault, role_of(site, state, fault))
        return rule.debounce(fault.kind) if rule else policy.default_debounce_s
    return debounce


def evaluate(site: Site, state: SiteState, tracker: FaultTracker, policy: Policy, now: float) -> Decision:
    """Decide what the documented rules say about the faults that have outlasted their debounce."""
    present = tracker.present()
    active = tracker.active(now, debounce_for(site, state, policy))
    if not active:
        if present:
            return Decision(None, Action.NONE, Disposition.NONE,
                            f"{len(present)} fault(s) seen, waiting for their debounce: "
                            + ", ".join(sorted(str(f) for f in present)))
        return Decision(None, Action.NONE, Disposition.NONE, "all clear")
    flapping = tracker.flapping() & set(active)
    notes: list[str] = [f"{f} is flapping: reported, not acted on" for f in sorted(flapping)]
    candidates: list[tuple[int, Fault, Rule]] = []
    for fault in sorted(active):
        if fault in flapping:
            continue
        skip = _already_handled(state, fault)
        if skip:
            notes.append(skip)
            continue
        rule = policy.rule_for(fault, role_of(site, state, fault))
        if rule is None:
            notes.append(f"{fault}: no documented rule covers it; operators alerted")
            continue
        candidates.append((policy.rules.index(rule), fault, rule))
    if not candidates:
        return _report_only(flapping, notes, tuple(sorted(active)))
    _, _, rule = min(candidates, key=lambda c: c[0])
    faults = tuple(f for _, f, r in candidates if r is rule)
    waiting = len(candidates) - len(faults)
    if waiting:
        notes.append(f"{waiting} other fault(s) wait for the next cycle")
    plan = _plan_for(site, state, rule, faults, present)
    return _dispose(state, policy, rule, faults, plan, now, tuple(notes))


def _already_handled(state: SiteState, fault: Fault) -> str | None:
    if fault.kind is FaultKind.DB_DOWN:
        return None if fault.db_site == state.active_db else f"{fault}: replica site down; operators alerted"
    hs = state.hosts.get(fault.component)
    if hs is None:
        return f"{fault}: unknown host"
    if hs.duty is Duty.OUT:
        return f"{fault}: {fault.host} is already out of service"
    board_fault = fault.kind in (FaultKind.SPAN_ALARM, FaultKind.DCHANNEL_DOWN, FaultKind.BOARD_DOWN,
                                 FaultKind.AMI_LOST)
    if board_fault and hs.board_isolated:
        return f"{fault}: the board of {fault.host} is already isolated"
    return None


def _report_only(flapping: frozenset[Fault], notes: list[str], faults: tuple[Fault, ...]) -> Decision:
    if flapping:
        reason = "flapping fault(s) held back from automatic action: " + ", ".join(sorted(map(str, flapping)))
    else:
        reason = "; ".join(notes)
    action = Action.ALERT if any("alerted" in n or "flapping" in n for n in notes) else Action.NONE
    plan = build_alert(reason) if action is Action.ALERT else None
    return Decision(None, action, Disposition.REPORT if plan else Disposition.NONE, reason, faults, plan,
                    tuple(notes))


def _plan_for(site: Site, state: SiteState, rule: Rule, faults: tuple[Fault, ...],
              present: Mapping[Fault, float]) -> Plan:
    host = faults[0].component  # a host id, or the database site for the db_down rule
    why = f"rule {rule.id}: " + ", ".join(map(str, faults))
    if rule.action is Action.FAILOVER:
        target = failover_target(site, state, host, present)
        if isinstance(target, NoSafeTarget):
            return build_alert(f"{why}; no safe target: {target.reason}")
        reachable = all(f.kind is not FaultKind.HOST_UNREACHABLE for f in faults)
        return build_failover(site, state, target, why, source_reachable=reachable)
    if rule.action is Action.ISOLATE_BOARD:
        if not _others_serve(state, host):
            return build_alert(f"{why}; isolating it would leave no board in service")
        return build_isolate_board(site, state, host, why)
    if rule.action is Action.ISOLATE_STANDBY:
        if not _others_serve(state, host):
            return build_alert(f"{why}; taking it out would leave no board in service")
        return build_isolate_standby(site, state, host, why)
    if rule.action is Action.REPOINT_DB:
        other = site.other_db(host).id
        if other in state.down_db_sites or any(f.db_site == other for f in present):
            return build_alert(f"{why}; the other database site {other} is down too")
        return build_repoint_db(site, state, other, why, order=rule.repoint_order)
    return build_alert(why)


@dataclass(frozen=True, slots=True)
class NoSafeTarget:
    """No host can safely take over; `reason` says why (it ends up in the operators' alert)."""

    reason: str


def failover_target(site: Site, state: SiteState, source: str, present: Mapping[Fault, float]) -> HostId | NoSafeTarget:
    """The standby that can take over, or why none is safe (both hosts faulty, no standby in service)."""
    for host in site.hosts:
        if host.id == source:
            continue
        hs = state.host(host.id)
        if hs.duty is not Duty.STANDBY:
            continue
        own = sorted(str(f) for f in present if f.host == host.id)
        if own:
            return NoSafeTarget(f"{host.id} has faults of its own ({', '.join(own)})")
        if hs.board_isolated:
            return NoSafeTarget(f"{host.id} has its board isolated")
        return host.id
    return NoSafeTarget("no standby host is in service")


def _others_serve(state: SiteState, host_id: str) -> bool:
    return any(hs.in_service for h, hs in state.hosts.items() if h != host_id)


def _dispose(state: SiteState, policy: Policy, rule: Rule, faults: tuple[Fault, ...], plan: Plan,
             now: float, notes: tuple[str, ...]) -> Decision:
    if plan.action is Action.ALERT:
        return Decision(rule.id, Action.ALERT, Disposition.REPORT, plan.reason, faults, plan, notes)
    mode = state.mode
    reason = f"{rule.description} ({', '.join(map(str, faults))})"
    if mode is Mode.MAINTENANCE:
        return Decision(rule.id, plan.action, Disposition.REPORT,
                        f"maintenance mode, not acting: {reason}", faults, plan, notes)
    if mode is Mode.MANUAL:
        return Decision(rule.id, plan.action, Disposition.REPORT,
                        f"manual mode, an operator may run this plan: {reason}", faults, plan, notes)
    if mode is Mode.SUPERVISED or rule.approval is Approval.ALWAYS:
        return Decision(rule.id, plan.action, Disposition.PROPOSE,
                        f"proposed, waiting for an operator's approval: {reason}", faults, plan, notes)
    if state.last_automatic_at is not None and now - state.last_automatic_at < policy.hold_down_s:
        until = state.last_automatic_at + policy.hold_down_s
        return Decision(rule.id, plan.action, Disposition.PROPOSE,
                        f"hold-down after the last automatic action (until t={until:.0f}): "
                        f"needs an operator's approval: {reason}", faults, plan, notes)
    return Decision(rule.id, plan.action, Disposition.EXECUTE, f"executing automatically: {reason}",
                    faults, plan, notes)


def rules_by_id(rules: Sequence[Rule]) -> dict[str, Rule]:
    return {r.id: r for r in rules}
