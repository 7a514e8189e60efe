"""Plans as data: ordered, typed steps, and the builders for every documented action.

A plan is shown in a dry run, approved, executed step by step, journaled and replayed in drills, so it
is plain data. The builders encode the safety ordering the source plan implies: on a failover the old
host's CTI/IVR are stopped and a `fence` step confirms it (or powers the host off) before any CTI/IVR
start on the new host. Pure: the executor, elsewhere, is what changes the world.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ccfo.domain.checks import Check, CheckKind, parse_check
from ccfo.domain.site import IPC_HOSTS, Duty, Host, ServerKind, ServerRole, Site
from ccfo.domain.state import SiteState


class StepKind(StrEnum):
    FENCE = "fence"
    STOP = "stop"
    START = "start"
    RESTART = "restart"
    ISOLATE_BOARD = "isolate_board"
    RESTORE_BOARD = "restore_board"
    ROUTE_INBOUND = "route_inbound"
    REPOINT_DB = "repoint_db"
    VERIFY = "verify"
    WAIT_DRAINED = "wait_drained"
    SET_STATE = "set_state"
    NOTIFY = "notify"
    JOB_ENABLE = "job_enable"
    JOB_DISABLE = "job_disable"
    SET_FILE = "set_file"


@dataclass(frozen=True, slots=True)
class Step:
    """One step. Fields not used by a kind stay None. `best_effort` steps may fail without failing the
    plan because a later step guarantees their purpose (a stop on a dying host, then a fence)."""

    kind: StepKind
    host: str | None = None
    service: str | None = None
    target: str | None = None  # repoint_db: the database site
    checks: tuple[Check, ...] = ()  # verify / fence
    timeout_s: float | None = None
    best_effort: bool = False
    message: str | None = None
    state: Mapping[str, Any] | None = None  # set_state: {"duties": {...}, "board_isolated": {...}, ...}
    targets: tuple[str, ...] = ()  # route_inbound: the hosts inbound calls go to
    job: str | None = None  # job_enable / job_disable: a managed server's scheduled job
    file: str | None = None  # set_file: a managed server's switch file (its value name is `target`)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        for name in ("host", "service", "target", "timeout_s", "message", "job", "file"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.targets:
            out["targets"] = list(self.targets)
        if self.checks:
            out["checks"] = [str(c) for c in self.checks]
        if self.best_effort:
            out["best_effort"] = True
        if self.state is not None:
            out["state"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.state.items()}
        return out

    def describe(self) -> str:
        """The step as a sentence an operator can read aloud."""
        h = self.host
        text = {
            StepKind.FENCE: f"make sure {', '.join(c.arg for c in self.checks)} on {h} are stopped: "
            f"agent-confirmed stop, else power {h} off at the PDU, else wait for an operator's confirmation",
            StepKind.STOP: f"stop {self.service} on {h}",
            StepKind.START: f"start {self.service} on {h}",
            StepKind.RESTART: f"restart {self.service} on {h}",
            StepKind.ISOLATE_BOARD: f"isolate the board of {h} (stop its board driver)",
            StepKind.RESTORE_BOARD: f"restore the board of {h} (start its board driver)",
            StepKind.ROUTE_INBOUND: f"route inbound calls to {','.join(self.targets)}"
            + (f" (away from {h})" if h else ""),
            StepKind.REPOINT_DB: f"back up and repoint the database config files on {h} to {self.target}",
            StepKind.VERIFY: f"verify on {h}: {', '.join(map(str, self.checks))}",
            StepKind.WAIT_DRAINED: f"wait until the calls on {h} have ended (at most {self.timeout_s:g} s)"
            if self.timeout_s is not None else f"wait until the calls on {h} have ended",
            StepKind.SET_STATE: f"record the new site state: {_state_text(self.state or {})}",
            StepKind.NOTIFY: f"notify: {self.message}",
            StepKind.JOB_ENABLE: f"enable job {self.job} on {h}",
            StepKind.JOB_DISABLE: f"disable job {self.job} on {h}",
            StepKind.SET_FILE: f"back up and point {self.file} on {h} at {self.target} (then its reload command)",
        }[self.kind]
        return text + (" (best effort; a later step guarantees it)" if self.best_effort else "")


def _state_text(state: Mapping[str, Any]) -> str:
    parts = [f"{h} {d}" for h, d in state.get("duties", {}).items()]
    parts += [f"{h} board {'isolated' if v else 'in service'}" for h, v in state.get("board_isolated", {}).items()]
    if "active_db" in state:
        parts.append(f"active database {state['active_db']}")
    return ", ".join(parts)


class Action(StrEnum):
    NONE = "none"
    ALERT = "alert"
    ISOLATE_BOARD = "isolate_board"
    FAILOVER = "failover"
    ISOLATE_STANDBY = "isolate_standby"
    REPOINT_DB = "repoint_db"
    SWITCHOVER = "switchover"
    FAILBACK = "failback"
    SWITCH = "switch"  # a named switch of the site's other machines (rules.yaml switches, source plan III)


@dataclass(frozen=True, slots=True)
class Plan:
    action: Action
    title: str
    steps: tuple[Step, ...]
    reason: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "title": self.title, "reason": self.reason, "meta": dict(self.meta),
                "steps": [s.to_dict() | {"text": s.describe()} for s in self.steps]}


class PlanRefused(ValueError):
    """The requested plan is unsafe or meaningless in the current state; the message says why."""


DEFAULT_STEP_TIMEOUT_S = 30.0
# Stops on a failing host are best effort and the fence follows: do not wait long for a hung process.
FAILING_HOST_STOP_TIMEOUT_S = 10.0


def transition_steps(host: Host, current: Duty, new: Duty) -> list[Step]:
    """Stops and starts that take `host` from one duty's layout to another's.

    Stops come first, CTI/IVR before middleware (nothing keeps using a bus that is going away); starts
    follow, middleware before CTI/IVR (they connect to it at start-up).
    """
    before, after = host.layout(current), host.layout(new)
    stops = [s for s in reversed(before) if s not in after]
    starts = [s for s in after if s not in before]
    return [Step(StepKind.STOP, host.id, service=s, timeout_s=DEFAULT_STEP_TIMEOUT_S) for s in stops] + [
        Step(StepKind.START, host.id, service=s, timeout_s=DEFAULT_STEP_TIMEOUT_S) for s in starts
    ]


def _split(host: Host, steps: list[Step]) -> tuple[list[Step], list[Step]]:
    """(steps on middleware, steps on CTI/IVR), each in its order."""
    critical = set(host.critical_services)
    return [s for s in steps if s.service not in critical], [s for s in steps if s.service in critical]


def _active_checks(host: Host) -> tuple[Check, ...]:
    return tuple(Check(CheckKind.ACTIVE, s) for s in host.critical_services)


def _fence(host: Host) -> Step:
    return Step(StepKind.FENCE, host.id, checks=tuple(Check(CheckKind.INACTIVE, s) for s in host.critical_services),
                timeout_s=120.0)


def _restored(state: SiteState, host_id: str) -> dict[str, bool] | None:
    return {host_id: False} if state.host(host_id).board_isolated else None


def _notify(message: str) -> Step:
    return Step(StepKind.NOTIFY, message=message)


def _set_state(duties: Mapping[str, Duty] | None = None, board_isolated: Mapping[str, bool] | None = None,
               active_db: str | None = None) -> Step:
    state: dict[str, Any] = {}
    if duties:
        state["duties"] = {h: d.value for h, d in duties.items()}
    if board_isolated:
        state["board_isolated"] = dict(board_isolated)
    if active_db:
        state["active_db"] = active_db
    return Step(StepKind.SET_STATE, state=state)


def _route_all(site: Site, exclude: Iterable[str] = (), first: str | None = None) -> Step:
    """Inbound calls on every in-service host's lines (normal operation: the active CTI/IVR serves all);
    `first` (the host that serves) leads the list: the SIP front tries hosts in this order."""
    skip = set(exclude)
    hosts = [h.id for h in site.hosts if h.id not in skip]
    if first in hosts:
        hosts = [first, *(h for h in hosts if h != first)]
    return Step(StepKind.ROUTE_INBOUND, targets=tuple(hosts), timeout_s=DEFAULT_STEP_TIMEOUT_S)


def build_isolate_board(site: Site, state: SiteState, host_id: str, why: str) -> Plan:
    """Rule 1: stop the board driver on the host; every other service keeps running."""
    steps = (
        Step(StepKind.ISOLATE_BOARD, host_id, timeout_s=DEFAULT_STEP_TIMEOUT_S),
        Step(StepKind.VERIFY, host_id, checks=(Check(CheckKind.BOARD, "down"),), timeout_s=DEFAULT_STEP_TIMEOUT_S),
        _set_state(board_isolated={host_id: True}),
        _notify(f"board of {host_id} isolated: {why}"),
    )
    return Plan(Action.ISOLATE_BOARD, f"isolate the board of {host_id}", steps, why)


def build_isolate_standby(site: Site, state: SiteState, host_id: str, why: str) -> Plan:
    """Rule 3: stop all services on the standby; all inbound calls go to the active host."""
    host = site.host(host_id)
    active = state.active_host
    steps = [Step(StepKind.STOP, host_id, service=s, timeout_s=FAILING_HOST_STOP_TIMEOUT_S, best_effort=True)
             for s in reversed(host.layout(state.host(host_id).duty))]
    steps.append(Step(StepKind.ISOLATE_BOARD, host_id, timeout_s=DEFAULT_STEP_TIMEOUT_S, best_effort=True))
    if active:
        steps.append(Step(StepKind.ROUTE_INBOUND, host_id, targets=(active,), timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(_set_state(duties={host_id: Duty.OUT}, board_isolated={host_id: True}))
    if active:
        steps.append(Step(StepKind.VERIFY, active, checks=_active_checks(site.host(active)),
                          timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(_notify(f"standby {host_id} taken out of service: {why}"))
    return Plan(Action.ISOLATE_STANDBY, f"take standby {host_id} out of service", tuple(steps), why)


def build_failover(site: Site, state: SiteState, to_host: str, why: str, *, source_reachable: bool = True,
                   action: Action = Action.FAILOVER) -> Plan:
    """Rule 2 and operator failover: the active host out, `to_host` takes CTI/IVR.

    Order: stop everything on the old host (best effort), fence (confirm CTI/IVR stopped or power the
    host off), only then change the new host's layout, route inbound calls, record the swap, verify.
    """
    source_id = state.active_host
    if source_id is None:
        raise PlanRefused("no host is active: there is nothing to fail over from")
    if source_id == to_host:
        raise PlanRefused(f"{to_host} is already the active host")
    source, target = site.host(source_id), site.host(to_host)
    steps: list[Step] = []
    if source_reachable:
        steps += [Step(StepKind.STOP, source_id, service=s, timeout_s=FAILING_HOST_STOP_TIMEOUT_S, best_effort=True)
                  for s in reversed(source.layout(state.host(source_id).duty))]
    steps.append(_fence(source))
    new_duty = target.home_active_duty
    if state.host(to_host).board_isolated:
        steps.append(Step(StepKind.RESTORE_BOARD, to_host, timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps += transition_steps(target, state.host(to_host).duty, new_duty)
    # new calls go to the new host only once its CTI/IVR are verified serving; until then the front holds them
    steps.append(Step(StepKind.VERIFY, to_host, checks=_active_checks(target), timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(Step(StepKind.ROUTE_INBOUND, source_id, targets=(to_host,), timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(_set_state(duties={to_host: new_duty, source_id: Duty.OUT},
                            board_isolated=_restored(state, to_host)))
    steps.append(_notify(f"failed over from {source_id} to {to_host}: {why}"))
    return Plan(action, f"fail over from {source_id} to {to_host}", tuple(steps), why,
                {"from": source_id, "to": to_host})


def build_switchover(site: Site, state: SiteState, to_host: str, drain_timeout_s: float, why: str,
                     action: Action = Action.SWITCHOVER) -> Plan:
    """Planned switchover: the old host drains (up to the timeout) while it still serves, its CTI/IVR stop
    (gracefully: calls in progress end) and are fenced, the new host's start and are verified serving, and
    only then do new calls go to it. New calls that arrive in that gap are held by the SIP front (ringing)
    and answered by the new host. The old host stays in service as the standby. See docs/sip-front.md."""
    source_id = state.active_host
    if source_id is None:
        raise PlanRefused("no host is active: use failover or failback instead")
    if source_id == to_host:
        raise PlanRefused(f"{to_host} is already the active host")
    if drain_timeout_s < 0:
        raise PlanRefused("the drain timeout must be zero or more seconds")
    source, target = site.host(source_id), site.host(to_host)
    steps: list[Step] = []
    if state.host(to_host).board_isolated:
        steps.append(Step(StepKind.RESTORE_BOARD, to_host, timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(Step(StepKind.WAIT_DRAINED, source_id, timeout_s=drain_timeout_s))
    new_duty = target.home_active_duty
    # The switch gap (no CTI/IVR anywhere, new calls held by the SIP front) holds only what must be in it:
    # the target's middleware is readied before, the source's middleware follows after the route.
    target_prep, target_critical = _split(target, transition_steps(target, state.host(to_host).duty, new_duty))
    source_rest, source_critical = _split(source, transition_steps(source, state.host(source_id).duty,
                                                                   Duty.STANDBY))
    steps += target_prep
    steps += source_critical
    steps.append(_fence(source))
    steps += target_critical
    steps.append(Step(StepKind.VERIFY, to_host, checks=_active_checks(target), timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(_route_all(site, exclude={h for h, hs in state.hosts.items() if hs.board_isolated} - {to_host},
                            first=to_host))
    steps += source_rest
    steps.append(_set_state(duties={to_host: new_duty, source_id: Duty.STANDBY},
                            board_isolated=_restored(state, to_host)))
    steps.append(_notify(f"switched over from {source_id} to {to_host}: {why}"))
    return Plan(action, f"planned switchover from {source_id} to {to_host}", tuple(steps), why,
                {"from": source_id, "to": to_host, "drain_timeout_s": drain_timeout_s})


def build_failback(site: Site, state: SiteState, drain_timeout_s: float, why: str) -> Plan:
    """After repair: every host back to its home duty, boards restored, calls back on the home primary."""
    primary = next(h for h in site.hosts if h.role.value == "primary")
    if state.is_normal(site):
        raise PlanRefused("the site is already in its normal state: nothing to fail back")
    active = state.active_host
    if active is not None and active != primary.id:
        if state.host(primary.id).duty is Duty.OUT:
            bring_up = transition_steps(primary, Duty.OUT, Duty.STANDBY)
            interim = state.with_host(primary.id, duty=Duty.STANDBY)
            plan = build_switchover(site, interim, primary.id, drain_timeout_s, why, Action.FAILBACK)
            restore = [Step(StepKind.RESTORE_BOARD, primary.id, timeout_s=DEFAULT_STEP_TIMEOUT_S)]
            # Switchover restores the board only if it was isolated; failback always makes sure of it.
            body = [s for s in plan.steps if not (s.kind is StepKind.RESTORE_BOARD and s.host == primary.id)]
            steps = restore + bring_up + body
            return _and_restore(site, state, Plan(Action.FAILBACK, f"fail back to {primary.id}", tuple(steps), why,
                                                  plan.meta))
        return _and_restore(site, state, build_switchover(site, state, primary.id, drain_timeout_s, why,
                                                          Action.FAILBACK))
    steps = _restore_steps(site, state)
    if not steps:
        raise PlanRefused("the site is already in its normal state: nothing to fail back")
    return Plan(Action.FAILBACK, "restore every host to its normal duty", tuple(steps), why)


def _and_restore(site: Site, state: SiteState, plan: Plan) -> Plan:
    """A failback that moves CTI/IVR home by a switchover, then brings back what the switchover leaves out
    of service (the board the former active host had isolated, found by the 200-run campaign: the site
    stayed degraded after a "failback"), so it ends in the normal state."""
    after = state
    for step in plan.steps:
        if step.kind is StepKind.SET_STATE and step.state:
            after = after.apply(step.state)
    rest = _restore_steps(site, after)
    return replace(plan, steps=plan.steps + tuple(rest)) if rest else plan


def _restore_steps(site: Site, state: SiteState) -> list[Step]:
    """Bring out-of-service or isolated hosts back while the home primary stays active."""
    steps: list[Step] = []
    duties: dict[str, Duty] = {}
    boards: dict[str, bool] = {}
    for host in site.hosts:
        hs = state.host(host.id)
        home = Duty(host.role.value)
        if hs.board_isolated:
            steps.append(Step(StepKind.RESTORE_BOARD, host.id, timeout_s=DEFAULT_STEP_TIMEOUT_S))
            boards[host.id] = False
        if hs.duty is not home:
            steps += transition_steps(host, hs.duty, home)
            duties[host.id] = home
    if not steps:
        return []
    steps.append(_route_all(site))
    steps.append(_set_state(duties=duties or None, board_isolated=boards or None))
    for host in site.hosts:
        if host.id in boards:
            steps.append(Step(StepKind.VERIFY, host.id, checks=(Check(CheckKind.BOARD, "up"),),
                              timeout_s=DEFAULT_STEP_TIMEOUT_S))
    steps.append(_notify("site restored to normal"))
    return steps


DEFAULT_REPOINT_ORDER: tuple[str, ...] = (IPC_HOSTS, ServerKind.DB_CONNECTION.value, ServerKind.APPLICATION.value)


def build_repoint_db(site: Site, state: SiteState, to_site: str, why: str,
                     order: Sequence[str] | None = None) -> Plan:
    """Rule 4 (source plan II.2.4 and III.6): back up and repoint the database config files of the IPCs,
    the database connection service and the application server(s), each machine's repoint followed by the
    restart of the running services that read its files; record the new active database, verify.

    `order` (a rule's repoint_order) lists who goes when: `ipc` for the IPC hosts, else a server kind; the
    machines of one entry go in site order. A backup server's files are repointed but its services are
    not restarted (it is kept stopped, ready for an emergency start that then reads the right database).
    """
    steps: list[Step] = []
    repointed: list[str] = []
    for stage in order if order is not None else DEFAULT_REPOINT_ORDER:
        if stage == IPC_HOSTS:
            for host in site.hosts:
                if host.db_files:
                    running = set(host.layout(state.host(host.id).duty))
                    readers = _ordered_unique(r for f in host.db_files for r in f.readers if r in running)
                    steps += _repoint_then_restart(host.id, to_site, readers)
                    repointed.append(host.id)
            continue
        for server in site.servers:
            if server.kind.value == stage and server.db_files:
                readers = list(server.readers) if server.role is ServerRole.ACTIVE else []
                steps += _repoint_then_restart(server.id, to_site, readers)
                repointed.append(server.id)
    steps.append(_set_state(active_db=to_site))
    # every repointed machine's agent reports its files naming the new site
    steps += [Step(StepKind.VERIFY, m, checks=(Check(CheckKind.DB, to_site),), timeout_s=DEFAULT_STEP_TIMEOUT_S)
              for m in repointed]
    steps.append(_notify(f"database switched to {to_site}: {why}"))
    return Plan(Action.REPOINT_DB, f"repoint the database config to {to_site}", tuple(steps), why,
                {"to": to_site})


def _repoint_then_restart(machine: str, to_site: str, readers: Iterable[str]) -> list[Step]:
    return [Step(StepKind.REPOINT_DB, machine, target=to_site, timeout_s=DEFAULT_STEP_TIMEOUT_S)] + [
        Step(StepKind.RESTART, machine, service=r, timeout_s=DEFAULT_STEP_TIMEOUT_S) for r in readers]


def build_alert(message: str) -> Plan:
    return Plan(Action.ALERT, "alert the operators", (_notify(message),), message)


def _ordered_unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)


def critical_start_index(plan: Plan, host_id: str, critical: Iterable[str]) -> int | None:
    """Index of the first start of a critical service (CTI/IVR) on `host_id`, for safety checks."""
    names = set(critical)
    return next((i for i, s in enumerate(plan.steps)
                 if s.kind is StepKind.START and s.host == host_id and s.service in names), None)


def step_from_dict(d: Mapping[str, Any]) -> Step:
    """Inverse of Step.to_dict (plans are stored and resumed after a controller restart). A route step
    stored before targets were a list kept them comma-joined in `target`."""
    kind = StepKind(d["kind"])
    target, targets = d.get("target"), tuple(d.get("targets", ()))
    if kind is StepKind.ROUTE_INBOUND and target and not targets:
        target, targets = None, tuple(h for h in target.split(",") if h)
    return Step(kind, d.get("host"), d.get("service"), target, tuple(parse_check(c) for c in d.get("checks", ())),
                d.get("timeout_s"), bool(d.get("best_effort", False)), d.get("message"), d.get("state"), targets,
                d.get("job"), d.get("file"))


def plan_from_dict(d: Mapping[str, Any]) -> Plan:
    return Plan(Action(d["action"]), d["title"], tuple(step_from_dict(s) for s in d["steps"]), d.get("reason", ""),
                d.get("meta", {}))
