"""Named switches of the site's other machines (rules.yaml `switches`, source plan III), and their plans.

A switch is an operator's one-line intention ("switch the customer-service entry back to Shanghai") written
as data: ordered steps on named managed servers (start, stop or restart a service, enable or disable a
scheduled job, point a whitelisted switch file at one of its named values: an entry point is such a file plus
its reload command) or a database repoint of the whole site (rule 4's body), and the steps of its inverse.
`build_switch` turns one direction into a Plan the executor runs, journaled like a failover. Pure: the config
layer validates the names (ccfo.config.checks), the executor acts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ccfo.domain.plan import DEFAULT_STEP_TIMEOUT_S, Action, Plan, Step, StepKind, build_repoint_db
from ccfo.domain.site import Site
from ccfo.domain.state import SiteState


class SwitchVerb(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    JOB_ENABLE = "job_enable"
    JOB_DISABLE = "job_disable"
    SET_FILE = "set_file"
    REPOINT_DB = "repoint_db"  # the whole site's database files (rule 4's body), `to` a database site


_SERVICE_VERBS = {SwitchVerb.START: StepKind.START, SwitchVerb.STOP: StepKind.STOP,
                  SwitchVerb.RESTART: StepKind.RESTART}
_JOB_VERBS = {SwitchVerb.JOB_ENABLE: StepKind.JOB_ENABLE, SwitchVerb.JOB_DISABLE: StepKind.JOB_DISABLE}


@dataclass(frozen=True, slots=True)
class SwitchStep:
    """One step: `verb` on `server`; `name` is the service, job or switch file; `to` the file's value name (or
    the database site of repoint_db, which names no server). `best_effort`: may fail without failing the switch
    (a step on the machine that failed, when a later step already moved the work away from it)."""

    verb: SwitchVerb
    server: str | None = None
    name: str | None = None
    to: str | None = None
    best_effort: bool = False


@dataclass(frozen=True, slots=True)
class Switch:
    id: str
    description: str
    steps: tuple[SwitchStep, ...]
    inverse: tuple[SwitchStep, ...]
    inverse_description: str = ""
    source: str = ""

    def title(self, inverse: bool = False) -> str:
        if inverse:
            return self.inverse_description or f"undo: {self.description}"
        return self.description


def build_switch(site: Site, state: SiteState, switch: Switch, why: str, *, inverse: bool = False,
                 repoint_order: Sequence[str] | None = None) -> Plan:
    """The plan of one direction of `switch`: its steps in order, then a notice. A repoint_db step expands to
    rule 4's steps (each machine repointed, then its readers restarted; the new database recorded; verified),
    in `repoint_order` (the database rule's)."""
    title = switch.title(inverse)
    return build_server_steps(site, state, switch.inverse if inverse else switch.steps, title, why,
                              {"switch": switch.id, "inverse": inverse},
                              f"switch {switch.id}{' (inverse)' if inverse else ''} done: {title}", repoint_order)


def build_server_steps(site: Site, state: SiteState, server_steps: Sequence[SwitchStep], title: str, why: str,
                       meta: dict[str, object], notice: str, repoint_order: Sequence[str] | None = None) -> Plan:
    """A plan of steps on the managed servers (a switch's, or a checklist's action step), then a notice."""
    steps: list[Step] = []
    for s in server_steps:
        steps += _steps(site, state, s, why, repoint_order)
    steps.append(Step(StepKind.NOTIFY, message=notice))
    return Plan(Action.SWITCH, title, tuple(steps), why, meta)


def describe_step(s: SwitchStep) -> str:
    """One server step as a phrase (a checklist shows it before it runs)."""
    if s.verb is SwitchVerb.REPOINT_DB:
        return f"repoint the database config to {s.to}"
    if s.verb is SwitchVerb.SET_FILE:
        return f"point {s.name} on {s.server} at {s.to}"
    return f"{s.verb.value.replace('_', ' ')} {s.name} on {s.server}"


def step_problems(site: Site, s: SwitchStep) -> list[tuple[str, str]]:
    """What in a server step names nothing of the site: (field, message) pairs; none when it is sound."""
    if s.verb is SwitchVerb.REPOINT_DB:
        sites = [d.id for d in site.db_sites]
        return [] if s.to in sites else [("repoint_db", f"unknown database site {s.to!r} (sites: {', '.join(sites)})")]
    server = next((m for m in site.servers if m.id == s.server), None)
    if server is None:
        known = ", ".join(m.id for m in site.servers) or "none"
        return [("server", f"unknown server {s.server!r} (servers: {known})")]
    if s.verb in _SERVICE_VERBS and s.name not in server.services:
        return [(s.verb.value, f"unknown service {s.name!r} on {s.server} (services: "
                               f"{', '.join(server.services) or 'none'})")]
    jobs = [j.name for j in server.jobs]
    if s.verb in _JOB_VERBS and s.name not in jobs:
        return [(s.verb.value, f"unknown job {s.name!r} on {s.server} (jobs: {', '.join(jobs) or 'none'})")]
    if s.verb is SwitchVerb.SET_FILE:
        files = {f.id: f for f in server.switch_files}
        if s.name not in files:
            return [("set_file", f"{s.name!r} is not in {s.server}'s whitelist of switch files "
                                 f"(switch_files: {', '.join(files) or 'none'})")]
        if s.to not in files[s.name].values:
            return [("to", f"{s.name} on {s.server} has no value {s.to!r} "
                           f"(values: {', '.join(files[s.name].values)})")]
    return []


def _steps(site: Site, state: SiteState, s: SwitchStep, why: str, order: Sequence[str] | None) -> list[Step]:
    host, t = s.server, DEFAULT_STEP_TIMEOUT_S
    if s.verb in _SERVICE_VERBS:
        return [Step(_SERVICE_VERBS[s.verb], host, service=s.name, timeout_s=t, best_effort=s.best_effort)]
    if s.verb in _JOB_VERBS:
        return [Step(_JOB_VERBS[s.verb], host, job=s.name, timeout_s=t, best_effort=s.best_effort)]
    if s.verb is SwitchVerb.SET_FILE:
        return [Step(StepKind.SET_FILE, host, file=s.name, target=s.to, timeout_s=t, best_effort=s.best_effort)]
    # REPOINT_DB: rule 4's body, without its closing notice (the switch has its own)
    body = build_repoint_db(site, state, s.to or "", why, order=order).steps
    return [step for step in body if step.kind is not StepKind.NOTIFY]
