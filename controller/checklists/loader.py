"""Load `config/checklists/*.yaml` into checklists, refusing a malformed one with `file:line: field: problem`.

The same line-tracking YAML reader and pydantic-error mapping as the site config (ccfo.config);
every problem of a file is reported at once. Cross-checks: unique ids, dependencies that exist and come
earlier (so a checklist is always a DAG), consistent planned starts, and, given the site, hosts,
services and database sites that exist. A file that fails is reported; the valid ones stay usable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ccfo.config.loader import to_switch_steps, validation_problems
from ccfo.config.models import SwitchStepModel
from ccfo.config.yamlpos import ConfigError, Located, Problem, load_yaml
from ccfo.domain.site import Site
from ccfo.domain.switches import step_problems
from controller.checklists.model import WEEKDAYS, Checklist, PhaseDef, PlannedStart, Rollback, StepDef, StepKind
from controller.checklists.specs import (
    ActionKind,
    ActionSpec,
    CallKind,
    CallTestSpec,
    CheckKind,
    CheckSpec,
    DrillSpec,
    Spec,
)

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_START = re.compile(r"(?:(?P<wd>mon|tue|wed|thu|fri|sat|sun)|day (?P<day>[1-9]\d{0,2})) +(?P<h>\d{1,2}):(?P<m>\d\d)")
DEFAULT_TIMEOUT_S = {StepKind.CHECK: 30.0, StepKind.ACTION: 900.0, StepKind.DRILL: 900.0, StepKind.CALL_TEST: 300.0}
LINE_TEST_TIMEOUT_S = 60.0


def parse_duration(value: Any) -> float:
    """`90s`, `15m`, `2h`, `1h30m`, `1d` -> seconds."""
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not m or not value:
        raise ValueError(f"a duration like 90s, 15m, 2h or 1h30m, got {value!r}")
    d, h, mi, s = (int(x or 0) for x in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def parse_start(value: Any) -> PlannedStart:
    m = _START.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    if not m or int(m["h"]) > 23 or int(m["m"]) > 59:
        raise ValueError(f"a planned start like 'fri 18:00' or 'day 2 08:00', got {value!r}")
    minute = int(m["h"]) * 60 + int(m["m"])
    return PlannedStart(minute, WEEKDAYS.index(m["wd"]), None) if m["wd"] else PlannedStart(minute, None, int(m["day"]))


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Text = Annotated[str, Field(min_length=3, max_length=300)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ServiceRef(Strict):
    service: Name
    """The service."""
    host: Name | None = None
    """The host (give host or hosts)."""
    hosts: Annotated[list[Name], Field(min_length=1)] | None = None
    """The hosts (give host or hosts)."""

    @model_validator(mode="after")
    def _one_host_field(self) -> ServiceRef:
        if (self.host is None) == (self.hosts is None):
            raise ValueError("give host or hosts (one of them)")
        return self


class CheckModel(Strict):
    site_state: Literal["normal", "degraded", "failed over", "maintenance", "down"] | None = None
    """The site state must be this."""
    hosts_reachable: Annotated[list[Name], Field(min_length=1)] | None = None
    """These hosts' agents must report."""
    capacity_at_least: Annotated[int, Field(ge=1, le=10000)] | None = None
    """At least this many channels must serve calls."""
    service_active: ServiceRef | None = None
    """The service must be active on the host(s)."""
    service_inactive: ServiceRef | None = None
    """The service must be stopped on the host(s)."""
    services_as_planned: Literal[True] | None = None
    """Every host runs exactly what its duty says."""
    db_site: Name | None = None
    """The active database site must be this."""
    line_test: Name | None = None
    """A line dial test on this host must pass."""

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckModel:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one check of: {', '.join(type(self).model_fields)}"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    def spec(self) -> CheckSpec:
        if self.site_state is not None:
            return CheckSpec(CheckKind.SITE_STATE, value=self.site_state)
        if self.hosts_reachable is not None:
            return CheckSpec(CheckKind.HOSTS_REACHABLE, hosts=tuple(self.hosts_reachable))
        if self.capacity_at_least is not None:
            return CheckSpec(CheckKind.CAPACITY_AT_LEAST, channels=self.capacity_at_least)
        for kind, ref in ((CheckKind.SERVICE_ACTIVE, self.service_active),
                          (CheckKind.SERVICE_INACTIVE, self.service_inactive)):
            if ref is not None:
                return CheckSpec(kind, hosts=tuple(ref.hosts or [ref.host or ""]), service=ref.service)
        if self.db_site is not None:
            return CheckSpec(CheckKind.DB_SITE, value=self.db_site)
        if self.line_test is not None:
            return CheckSpec(CheckKind.LINE_TEST, hosts=(self.line_test,))
        return CheckSpec(CheckKind.SERVICES_AS_PLANNED)


_NEEDS_TO = (ActionKind.SWITCHOVER, ActionKind.FAILOVER, ActionKind.REPOINT_DB)


class ActionModel(Strict):
    plan: ActionKind
    """The plan to run: switchover, failover, failback, repoint_db, stop_services, start_services or server."""
    to: Name | None = None
    """switchover/failover: the host that takes over; repoint_db: the database site."""
    drain_timeout: Duration = 60.0
    """How long calls may drain before services move (a duration)."""
    hosts: list[Name] = Field(default_factory=list)
    """stop_services/start_services: only these hosts (default: all)."""
    steps: list[SwitchStepModel] = Field(default_factory=list)
    """server: the steps on the managed servers, in order (switches.yaml's step forms: {server: ta-sh,
    job_disable: ta-import}, {server: cs-sz, set_file: cs-entry, to: shenzhen}, ...)."""

    @model_validator(mode="after")
    def _fields_fit(self) -> ActionModel:
        if (self.plan in _NEEDS_TO) != (self.to is not None):
            raise ValueError(f"{self.plan.value} {'needs' if self.plan in _NEEDS_TO else 'takes no'} 'to'")
        if self.hosts and self.plan not in (ActionKind.STOP_SERVICES, ActionKind.START_SERVICES):
            raise ValueError(f"{self.plan.value} takes no 'hosts'")
        if (self.plan is ActionKind.SERVER) != bool(self.steps):
            raise ValueError("server needs 'steps'" if self.plan is ActionKind.SERVER
                             else f"{self.plan.value} takes no 'steps'")
        return self

    def spec(self) -> ActionSpec:
        return ActionSpec(self.plan, self.to, self.drain_timeout, tuple(self.hosts), to_switch_steps(self.steps))


class CallTestModel(Strict):
    call: CallKind
    """The test call: inbound, outbound or agent_answer."""
    host: Name | None = None
    """The host that must handle it (default: the active host)."""
    calls: Annotated[int, Field(ge=1, le=100)] = 1
    """How many calls."""


class RollbackModel(Strict):
    title: Text
    """What the rollback does."""
    action: ActionModel | None = None
    """An automatic rollback: this plan."""
    check: CheckModel | None = None
    """An automatic rollback: this check must pass."""

    @model_validator(mode="after")
    def _at_most_one(self) -> RollbackModel:
        if self.action is not None and self.check is not None:
            raise ValueError("a rollback is manual, an action or a check: not both action and check")
        return self


_SPEC_FIELD = {StepKind.CHECK: "check", StepKind.ACTION: "action", StepKind.CALL_TEST: "call_test",
               StepKind.DRILL: "drill"}


class StepModel(Strict):
    id: Name
    """The step's id (unique in the checklist)."""
    title: Text
    """What the step does."""
    owner: Name
    """Who does it (a team or role name)."""
    kind: StepKind
    """manual, check, drill, action or call_test."""
    planned: Duration
    """Planned duration (90s, 5m, 1h30m); a rehearsal's real durations replace it."""
    after: list[Name] | None = None
    """Steps it waits for (default: the step before it in the phase; [] for none)."""
    check: CheckModel | None = None
    """check steps: the check."""
    action: ActionModel | None = None
    """action steps: the plan to run."""
    call_test: CallTestModel | None = None
    """call_test steps: the test calls."""
    drill: Name | None = None
    """drill steps: the drill scenario's name."""
    confirm: bool | None = None
    """Wait for an operator's go (default: actions and drills wait, checks and calls do not)."""
    timeout: Duration | None = None
    """How long an automatic step may run (a duration; default by kind)."""
    rollback: RollbackModel | None = None
    """How to undo the step when its phase is rolled back."""
    notes: Annotated[str, Field(max_length=2000)] = ""
    """Notes shown with the step."""

    @model_validator(mode="after")
    def _spec_fits_kind(self) -> StepModel:
        want = _SPEC_FIELD.get(self.kind)
        for name in _SPEC_FIELD.values():
            given = getattr(self, name) is not None
            if name == want and not given:
                raise ValueError(f"a {self.kind.value} step needs '{name}'")
            if name != want and given:
                raise ValueError(f"'{name}' does not apply to a {self.kind.value} step")
        if self.planned <= 0:
            raise ValueError("planned must be more than 0s")
        if self.confirm and self.kind is StepKind.MANUAL:
            raise ValueError("confirm applies to automatic steps (a manual step is confirmed by marking it done)")
        return self

    def spec(self) -> Spec:
        if self.check is not None:
            return self.check.spec()
        if self.action is not None:
            return self.action.spec()
        if self.call_test is not None:
            return CallTestSpec(self.call_test.call, self.call_test.host, self.call_test.calls)
        return DrillSpec(self.drill) if self.drill is not None else None


class PhaseModel(Strict):
    id: Name
    """The phase's id."""
    title: Text
    """What the phase is."""
    start: Annotated[PlannedStart, BeforeValidator(parse_start)] | None = None
    """When the phase may start (e.g. `sat 08:00`); none: when the previous phase is done."""
    maintenance: bool = False
    """Hold maintenance mode during the phase (restored after it)."""
    steps: Annotated[list[StepModel], Field(min_length=1)]
    """The phase's steps."""


class ChecklistModel(Strict):
    name: Name
    """The checklist's name (`ccfo checklist start NAME`)."""
    title: Text
    """A title for the dashboard and the report."""
    description: Annotated[str, Field(max_length=4000)] = ""
    """What the checklist is for."""
    phases: Annotated[list[PhaseModel], Field(min_length=1)]
    """The phases, in order; a phase starts when every step of the one before is done or skipped."""


# --------------------------------------------------------------------------- loading


def load_checklist(path: Path, site: Site | None = None, drills: Iterable[str] | None = None,
                   display: str | None = None) -> Checklist:
    """One checklist file; raises ConfigError with every problem found."""
    located = load_yaml(path, display)
    if not isinstance(located.data, dict):
        raise ConfigError([Problem(located.file, 1, "", "expected a mapping at the top of the file")])
    try:
        model = ChecklistModel.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, located)) from exc
    problems = cross_check(model, located, path.stem, site, drills)
    if problems:
        raise ConfigError(problems)
    return to_checklist(model)


def load_checklists(directory: Path, site: Site | None = None, drills: Iterable[str] | None = None,
                    display_dir: str | None = None) -> tuple[dict[str, Checklist], list[Problem]]:
    """Every `*.yaml` in `directory`: the valid checklists by name, and the problems of the others."""
    found: dict[str, Checklist] = {}
    problems: list[Problem] = []
    shown = display_dir if display_dir is not None else str(directory).rstrip("/")
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            checklist = load_checklist(path, site, drills, f"{shown}/{path.name}")
        except ConfigError as exc:
            problems += exc.problems
            continue
        found[checklist.name] = checklist
    return found, problems


def to_checklist(m: ChecklistModel) -> Checklist:
    phases = []
    for p in m.phases:
        steps, previous = [], None
        for s in p.steps:
            after = tuple(s.after) if s.after is not None else ((previous,) if previous else ())
            rb = None
            if s.rollback is not None:
                r = s.rollback
                kind = StepKind.ACTION if r.action else StepKind.CHECK if r.check else StepKind.MANUAL
                rb = Rollback(kind, r.title, r.action.spec() if r.action else r.check.spec() if r.check else None)
            confirm = s.confirm if s.confirm is not None else s.kind in (StepKind.ACTION, StepKind.DRILL)
            timeout = s.timeout if s.timeout is not None else (
                LINE_TEST_TIMEOUT_S if s.check is not None and s.check.line_test else DEFAULT_TIMEOUT_S.get(s.kind))
            steps.append(StepDef(s.id, s.title, s.kind, s.owner, s.planned, after, s.spec(), rb, confirm, timeout,
                                 s.notes))
            previous = s.id
        phases.append(PhaseDef(p.id, p.title, tuple(steps), p.start, p.maintenance))
    return Checklist(m.name, m.title, tuple(phases), m.description)


def cross_check(m: ChecklistModel, located: Located, stem: str, site: Site | None,
                drills: Iterable[str] | None) -> list[Problem]:
    out: list[Problem] = []
    if m.name != stem:
        out.append(located.problem(["name"], f"must match the file name ({stem!r}), got {m.name!r}"))
    seen_phases: set[str] = set()
    seen_steps: set[str] = set()
    for pi, p in enumerate(m.phases):
        if p.id in seen_phases:
            out.append(located.problem(["phases", pi, "id"], f"duplicate phase id {p.id!r}"))
        seen_phases.add(p.id)
        for si, s in enumerate(p.steps):
            loc: list[str | int] = ["phases", pi, "steps", si]
            if s.id in seen_steps:
                out.append(located.problem([*loc, "id"], f"duplicate step id {s.id!r} (step ids are unique across "
                                                         "the checklist)"))
            for ai, dep in enumerate(s.after or []):
                if dep not in seen_steps:
                    why = ("a step cannot wait for itself" if dep == s.id
                           else f"{dep!r} comes later: a step may only wait for steps listed before it"
                           if dep in _all_ids(m) else f"no step {dep!r} in this checklist")
                    out.append(located.problem([*loc, "after", ai], why))
            seen_steps.add(s.id)
            out += _site_problems(s, located, loc, site)
            if s.drill is not None and drills is not None and s.drill not in set(drills):
                out.append(located.problem([*loc, "drill"], f"unknown drill scenario {s.drill!r}"))
    out += _start_problems(m, located)
    return out


def _all_ids(m: ChecklistModel) -> set[str]:
    return {s.id for p in m.phases for s in p.steps}


def _start_problems(m: ChecklistModel, located: Located) -> list[Problem]:
    starts = [(i, p.start) for i, p in enumerate(m.phases) if p.start is not None]
    if not starts:
        return []
    out = []
    if m.phases[0].start is None:
        out.append(located.problem(["phases", 0], "the first phase needs a planned start when later phases have one"))
    forms = {s.weekday is None for _, s in starts}
    if len(forms) > 1:
        out.append(located.problem(["phases", starts[-1][0], "start"],
                                   "do not mix weekday starts ('fri 18:00') and day starts ('day 2 08:00')"))
    day_pos = [(i, (s.day - 1) * 1440 + s.minute) for i, s in starts if s.day is not None]
    for (_, a), (i, b) in pairwise(day_pos):
        if b < a:
            out.append(located.problem(["phases", i, "start"], "planned starts must not go back in time"))
    return out


def _site_problems(s: StepModel, located: Located, loc: list[str | int], site: Site | None) -> list[Problem]:
    if site is None:
        return []
    out = []
    for path, spec in ((["check"], s.check), (["action"], s.action), (["call_test"], s.call_test),
                       (["rollback", "check"], s.rollback.check if s.rollback else None),
                       (["rollback", "action"], s.rollback.action if s.rollback else None)):
        if spec is None:
            continue
        for field, message in _refs(spec, site):
            out.append(located.problem([*loc, *path, *field], message))
    return out


def _refs(spec: CheckModel | ActionModel | CallTestModel, site: Site) -> list[tuple[list[str | int], str]]:
    hosts, dbs = set(site.host_ids), {d.id for d in site.db_sites}
    out: list[tuple[list[str | int], str]] = []

    def host(field: list[str | int], name: str | None) -> None:
        if name is not None and name not in hosts:
            out.append((field, f"unknown host {name!r} (hosts: {', '.join(site.host_ids)})"))

    def db(field: list[str | int], name: str | None) -> None:
        if name is not None and name not in dbs:
            out.append((field, f"unknown database site {name!r} (sites: {', '.join(sorted(dbs))})"))

    if isinstance(spec, CheckModel):
        for i, h in enumerate(spec.hosts_reachable or []):
            host(["hosts_reachable", i], h)
        host(["line_test"], spec.line_test)
        db(["db_site"], spec.db_site)
        for name in ("service_active", "service_inactive"):
            ref: ServiceRef | None = getattr(spec, name)
            for h in (ref.hosts or [ref.host]) if ref else []:
                host([name], h)
                if h in hosts and ref and ref.service not in {x.name for x in site.host(h or "").services}:
                    out.append(([name, "service"], f"{h} has no service {ref.service!r}"))
    elif isinstance(spec, ActionModel):
        for i, step in enumerate(to_switch_steps(spec.steps)):
            out += [(["steps", i, field], message) for field, message in step_problems(site, step)]
        (db if spec.plan is ActionKind.REPOINT_DB else host)(["to"], spec.to)
        for i, h in enumerate(spec.hosts):
            host(["hosts", i], h)
    else:
        host(["host"], spec.host)
    return out
