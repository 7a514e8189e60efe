"""Pure parts of automatic steps: judging a check against the site status, and building an action's plan.

`evaluate` reads the same status JSON the API serves (`controller.status.status`), so a check sees
what the operator sees. `build_plan` turns an action step into a plan of the core's typed steps, with
the core's own builders (switchover, failover, failback, repoint_db) or, for the weekend upgrade's
"stop the system" / "start the services as the plan says", stops and starts in the documented order
(CTI/IVR stopped before the middleware; middleware started before CTI/IVR), each verified.
Pure: no I/O; the runner does the waiting and the executing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ccfo.domain.checks import Check as StepCheck
from ccfo.domain.checks import CheckKind as StepCheckKind
from ccfo.domain.plan import (
    DEFAULT_STEP_TIMEOUT_S,
    Action,
    Plan,
    PlanRefused,
    Step,
    StepKind,
    build_failback,
    build_failover,
    build_repoint_db,
    build_switchover,
)
from ccfo.domain.site import Site
from ccfo.domain.state import SiteState
from ccfo.domain.switches import build_server_steps
from controller.checklists.specs import ActionKind, ActionSpec, CheckKind, CheckSpec

STOPPED = ("inactive", "failed")


def expected_layout(site: Site, state: SiteState) -> dict[str, tuple[str, ...]]:
    """The services each host should run in its current duty."""
    return {h.id: tuple(h.layout(state.host(h.id).duty)) for h in site.hosts}


def evaluate(spec: CheckSpec, status: Mapping[str, Any], layout: Mapping[str, Iterable[str]]) -> tuple[bool, str]:
    """(passed, what was seen). `status` is the API's status JSON; `layout` the expected services per host."""
    hosts: Mapping[str, Any] = status.get("hosts", {})
    match spec.check:
        case CheckKind.SITE_STATE:
            faults = ", ".join(f["fault"] for f in status.get("faults", []))
            return status.get("state") == spec.value, f"site state {status.get('state')}" + (
                f" (faults: {faults})" if faults else "")
        case CheckKind.HOSTS_REACHABLE:
            down = [h for h in spec.hosts if not hosts.get(h, {}).get("reachable")]
            return not down, f"unreachable: {', '.join(down)}" if down else f"{', '.join(spec.hosts)} reachable"
        case CheckKind.CAPACITY_AT_LEAST:
            have = int(status.get("capacity", {}).get("channels", 0))
            return have >= (spec.channels or 0), f"{have} channels in service (need {spec.channels})"
        case CheckKind.SERVICE_ACTIVE | CheckKind.SERVICE_INACTIVE:
            seen = {h: hosts.get(h, {}).get("services", {}).get(spec.service or "", "unknown") for h in spec.hosts}
            want_active = spec.check is CheckKind.SERVICE_ACTIVE
            ok = all((v == "active") if want_active else (v in STOPPED) for v in seen.values())
            return ok, ", ".join(f"{spec.service} {v} on {h}" for h, v in seen.items())
        case CheckKind.SERVICES_AS_PLANNED:
            return _as_planned(hosts, layout)
        case CheckKind.DB_SITE:
            seen = {h: v.get("db_site") for h, v in hosts.items() if v.get("reachable")}
            if not seen:
                return False, "no host reports its database config"
            # the managed servers with database files (application servers, the database connection service)
            servers: Mapping[str, Any] = status.get("servers", {})
            seen |= {n: v["db_site"] for n, v in servers.items() if v.get("reachable") and v.get("db_site")}
            wrong = {h: s for h, s in seen.items() if s != spec.value}
            return not wrong, ", ".join(f"{h} points at {s}" for h, s in seen.items())
        case CheckKind.LINE_TEST:
            raise ValueError("a line test runs on the host's agent, not against the status")
    raise ValueError(f"unknown check {spec.check}")


def _as_planned(hosts: Mapping[str, Any], layout: Mapping[str, Iterable[str]]) -> tuple[bool, str]:
    wrong = []
    for host, services in layout.items():
        want = set(services)
        seen: Mapping[str, str] = hosts.get(host, {}).get("services", {})
        if not hosts.get(host, {}).get("reachable"):
            wrong.append(f"{host} unreachable")
            continue
        wrong += [f"{s} {seen.get(s, 'unknown')} on {host} (should run)" for s in sorted(want)
                  if seen.get(s) != "active"]
        wrong += [f"{s} active on {host} (should not run)" for s, v in sorted(seen.items())
                  if s not in want and v == "active"]
    return not wrong, "; ".join(wrong) if wrong else "every host runs the services its duty says"


def build_plan(spec: ActionSpec, site: Site, state: SiteState, why: str, *, source_reachable: bool = True,
               repoint_order: Sequence[str] | None = None) -> Plan:
    """The plan an action step runs; raises PlanRefused when it makes no sense in `state`. A repoint follows
    `repoint_order` (the rules' order, ccfo.domain.rules.Policy.repoint_order)."""
    match spec.action:
        case ActionKind.SWITCHOVER:
            return build_switchover(site, state, spec.to or "", spec.drain_timeout_s, why)
        case ActionKind.FAILOVER:
            return build_failover(site, state, spec.to or "", why, source_reachable=source_reachable)
        case ActionKind.FAILBACK:
            return build_failback(site, state, spec.drain_timeout_s, why)
        case ActionKind.REPOINT_DB:
            return build_repoint_db(site, state, spec.to or "", why, order=repoint_order)
        case ActionKind.STOP_SERVICES:
            return build_stop_services(site, state, spec.hosts, why)
        case ActionKind.START_SERVICES:
            return build_start_services(site, state, spec.hosts, why)
        case ActionKind.SERVER:
            return build_server_steps(site, state, spec.steps, f"on the managed servers: {spec.describe()}", why,
                                      {"checklist": True}, f"server steps done: {why}", repoint_order)
    raise PlanRefused(f"unknown action {spec.action}")


def _hosts(site: Site, state: SiteState, hosts: Iterable[str]) -> list[str]:
    wanted = list(hosts) or list(site.host_ids)
    active = state.active_host
    return sorted(wanted, key=lambda h: (h != active, site.host_ids.index(h)))  # the active host first


def build_stop_services(site: Site, state: SiteState, hosts: Iterable[str], why: str) -> Plan:
    """Stop every service of the hosts' layouts: CTI/IVR before the middleware, the active host first."""
    steps: list[Step] = []
    for host_id in _hosts(site, state, hosts):
        running = site.host(host_id).layout(state.host(host_id).duty)
        steps += [Step(StepKind.STOP, host_id, service=s, timeout_s=DEFAULT_STEP_TIMEOUT_S) for s in reversed(running)]
        if running:
            stopped = tuple(StepCheck(StepCheckKind.INACTIVE, s) for s in running)
            steps.append(Step(StepKind.VERIFY, host_id, checks=stopped, timeout_s=DEFAULT_STEP_TIMEOUT_S))
    if not steps:
        raise PlanRefused("no service to stop")
    steps.append(Step(StepKind.NOTIFY, message=f"services stopped for maintenance: {why}"))
    return Plan(Action.NONE, "stop every managed service (checklist)", tuple(steps), why, {"checklist": True})


def build_start_services(site: Site, state: SiteState, hosts: Iterable[str], why: str) -> Plan:
    """Start each host's services as its duty says (middleware before CTI/IVR), the standby first, so the
    active host's CTI/IVR come up last on a working middleware; each host verified."""
    steps: list[Step] = []
    for host_id in reversed(_hosts(site, state, hosts)):
        layout = site.host(host_id).layout(state.host(host_id).duty)
        steps += [Step(StepKind.START, host_id, service=s, timeout_s=DEFAULT_STEP_TIMEOUT_S) for s in layout]
        if layout:
            running = tuple(StepCheck(StepCheckKind.ACTIVE, s) for s in layout)
            steps.append(Step(StepKind.VERIFY, host_id, checks=running, timeout_s=DEFAULT_STEP_TIMEOUT_S))
    if not steps:
        raise PlanRefused("no host has services to start in its current duty")
    steps.append(Step(StepKind.NOTIFY, message=f"services started as planned: {why}"))
    return Plan(Action.NONE, "start the services as planned (checklist)", tuple(steps), why, {"checklist": True})
