"""Drill scenarios as typed data (drills/scenarios/*.yaml) and the drills settings of a site (drills.yaml).

A scenario names the steady state to check before and after, the fault to inject, what must follow and
within how long (detection, decision, plan, final state, recovery of the calls), the verification calls,
the steady SIPp load, and the way back, which always runs once the fault is in. Files are validated like
the site config: pydantic models with extra="forbid", then cross-checks against the site, every problem
at once as `file:line: field: message` (ccfo.config.yamlpos). `drills.yaml` in the config
directory (optional) holds a real site's SIP plan and the drill schedules.

What it must not do: no I/O beyond reading the files it is given, no clock, no network.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ccfo.config.loader import LoadedConfig, parse_model
from ccfo.config.yamlpos import ConfigError, Located, Problem, load_yaml
from ccfo.domain.plan import Action

LIBRARY = Path(__file__).resolve().parent / "scenarios"
DRILLS_FILE = "drills.yaml"

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
Seconds = Annotated[float, Field(gt=0, le=86400)]
StateLabel = Literal["normal", "degraded", "failed over", "maintenance", "down"]
DutyName = Literal["primary", "standby", "takeover", "out"]


def _host_port(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"must be ADDRESS:PORT with a port 1..65535, got {v!r}")
    return v


HostPort = Annotated[str, AfterValidator(_host_port)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class FaultKind(StrEnum):
    SERVICE_CRASH = "service_crash"  # lab: SIGKILL the service's process
    SERVICE_HANG = "service_hang"  # lab: SIGSTOP the service's processes (alive, "active", answering nothing)
    SERVICE_STOP = "service_stop"  # lab, or a real site through the agent (stop)
    SPAN_ALARM = "span_alarm"  # lab: a red/yellow/blue alarm on one span
    BOARD_DOWN = "board_down"  # lab: stop the board driver; real site: the agent's isolate_board
    HOST_UNREACHABLE = "host_unreachable"  # lab: freeze the host's agent and AMI (SIGSTOP)
    DB_DOWN = "db_down"  # lab: close a database site's endpoint
    SWITCHOVER = "switchover"  # an operator's planned switchover (through the controller's API)


LAB_ONLY = frozenset({FaultKind.SERVICE_CRASH, FaultKind.SERVICE_HANG, FaultKind.SPAN_ALARM,
                      FaultKind.HOST_UNREACHABLE, FaultKind.DB_DOWN})
_NEEDS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.SERVICE_CRASH: ("host", "service"), FaultKind.SERVICE_STOP: ("host", "service"),
    FaultKind.SERVICE_HANG: ("host", "service"),
    FaultKind.SPAN_ALARM: ("host", "span"), FaultKind.BOARD_DOWN: ("host",),
    FaultKind.HOST_UNREACHABLE: ("host",), FaultKind.DB_DOWN: (), FaultKind.SWITCHOVER: ("to",),
}
_OPTIONAL = ("host", "service", "span", "to", "calls_in_progress")


class CallKind(StrEnum):
    INBOUND = "inbound"  # a caller reaches the active host's IVR and is answered (both hosts are called)
    AGENT_ANSWER = "agent_answer"  # a caller is transferred and the agent phone answers
    OUTBOUND = "outbound"  # the active host places a call out and the far end answers
    LINE_TEST = "line_test"  # the agent's AMI line dial test on the active host


class StateModel(Strict):
    """A site state to check against the controller's status; every field is optional."""

    state: StateLabel | None = None
    """The site state the controller must show."""
    active_host: Name | None = None
    """The host that must run CTI/IVR."""
    duties: dict[Name, DutyName] = Field(default_factory=dict)
    """Each listed host's duty."""
    board_isolated: dict[Name, bool] = Field(default_factory=dict)
    """Whether each listed host's board must be isolated."""
    active_db: Name | None = None
    """The database site that must be active."""
    active_db_changed: bool | None = None
    """Whether the active database must differ from the one active when the drill started."""
    min_channels: Annotated[int, Field(ge=0, le=100000)] | None = None
    """At least this many channels must serve calls."""


class SteadyStateModel(StateModel):
    calls: list[CallKind] = Field(default_factory=lambda: [CallKind.INBOUND])
    """Verification calls that must succeed before the fault and after the way back."""
    within_s: Seconds = 60.0
    """After the way back: how long the steady state may take to hold again."""


class CallsInProgressModel(Strict):
    """Lab: calls up on the active host when the fault starts; the callers hang up after a while."""

    ivr: Annotated[int, Field(ge=0, le=500)] = 0
    """Lab: IVR calls up on the active host when the fault starts."""
    agent: Annotated[int, Field(ge=0, le=250)] = 0
    """Lab: agent calls up on the active host when the fault starts."""
    hang_up_after_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    """Lab: the callers hang up after this many seconds."""


class FaultModel(Strict):
    kind: FaultKind
    """The fault to inject (service_crash, span_alarm, host_unreachable and db_down need the lab)."""
    host: Name | None = None
    """The host the fault hits."""
    service: Name | None = None
    """service_crash/service_stop: the service."""
    span: Annotated[int, Field(ge=1, le=255)] | None = None
    """span_alarm: the span number."""
    alarm: Literal["red", "yellow", "blue"] = "red"
    """span_alarm: the alarm colour."""
    db_site: Name = "active"
    """db_down: a database site, or "active" (the one active when the drill starts)."""
    to: Name | None = None
    """switchover: the host that takes over."""
    drain_timeout_s: Seconds = 60.0
    """switchover: seconds to let calls drain before the services move."""
    calls_in_progress: CallsInProgressModel | None = None
    """Lab: calls up when the fault starts."""

    @model_validator(mode="after")
    def _fields_match_kind(self) -> FaultModel:
        needed = _NEEDS[self.kind]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind.value} fault needs {name}")
        for name in _OPTIONAL:
            if name not in needed and getattr(self, name) is not None and not (
                    name == "calls_in_progress" and self.kind is FaultKind.SWITCHOVER):
                raise ValueError(f"{name} does not apply to a {self.kind.value} fault")
        return self

    def fault_text(self, db_site: str | None = None) -> str | None:
        """The controller's name for this fault (`ccfo plan` FAULT form); None for a switchover."""
        match self.kind:
            case FaultKind.SERVICE_CRASH | FaultKind.SERVICE_STOP:
                return f"{self.host}:service:{self.service}=down"
            case FaultKind.SERVICE_HANG:
                return f"{self.host}:service:{self.service}=hung"
            case FaultKind.SPAN_ALARM:
                return f"{self.host}:span:{self.span}=alarm"
            case FaultKind.BOARD_DOWN:
                return f"{self.host}:board=down"
            case FaultKind.HOST_UNREACHABLE:
                return f"{self.host}:host=unreachable"
            case FaultKind.DB_DOWN:
                return f"db:{db_site or self.db_site}=down"
        return None

    def describe(self) -> str:
        match self.kind:
            case FaultKind.SERVICE_CRASH:
                return f"crash {self.service} on {self.host} (SIGKILL)"
            case FaultKind.SERVICE_HANG:
                return f"hang {self.service} on {self.host} (SIGSTOP)"
            case FaultKind.SERVICE_STOP:
                return f"stop {self.service} on {self.host}"
            case FaultKind.SPAN_ALARM:
                return f"{self.alarm} alarm on span {self.span} of {self.host}"
            case FaultKind.BOARD_DOWN:
                return f"stop the board driver of {self.host}"
            case FaultKind.HOST_UNREACHABLE:
                return f"make {self.host} unreachable (agent and AMI frozen)"
            case FaultKind.DB_DOWN:
                return ("take the active database site down" if self.db_site == "active"
                        else f"take database site {self.db_site} down")
        calls = self.calls_in_progress
        extra = f" with {calls.ivr} IVR and {calls.agent} agent call(s) in progress" if calls else ""
        return f"planned switchover to {self.to}{extra}"


class DetectModel(Strict):
    within_s: Seconds
    """Seconds from the fault to the controller seeing it."""
    fault: str | None = None
    """The fault name the controller must report (default: the injected fault's name)."""


class DecideModel(Strict):
    action: Action
    """The action the controller must decide."""
    rule: Name | None = None
    """The rule that must decide it."""
    within_s: Seconds
    """Seconds from the fault to the decision."""


class PlanExpectModel(Strict):
    within_s: Seconds
    """Seconds until the plan (a rule's, or the operator's switchover) has finished."""
    approve: bool = True
    """The runner approves a proposed plan, as the operator on duty."""


class StateExpectModel(StateModel):
    within_s: Seconds
    """Seconds until the site shows this state."""


class RecoverModel(Strict):
    within_s: Seconds
    """Seconds from the fault to the first inbound call answered by the expected active host."""
    active_host: Name | None = None
    """The host that must answer (default: expect.state.active_host, else the steady state's)."""


Count = Annotated[int, Field(ge=0)]


class CallFigureLimits(Strict):
    """Limits on what became of the steady load's calls in one phase (None: not limited)."""

    refused: Count | None = None
    """At most this many new calls never answered."""
    cut: Count | None = None
    """At most this many answered calls that ended abnormally (the IVR vanished mid-call)."""
    held: Count | None = None
    """At most this many calls answered after the SIP front held them."""

    def items(self) -> list[tuple[str, int]]:
        return [(k, v) for k, v in (("refused", self.refused), ("cut", self.cut), ("held", self.held))
                if v is not None]


class CallsExpectModel(CallFigureLimits):
    """`expect.calls` as a mapping: the verification calls and the limits on the steady load's calls,
    for the drill and (`way_back`, else the same limits) for the way back."""

    verify: list[CallKind] = Field(default_factory=lambda: [CallKind.INBOUND])
    """Verification calls that must succeed after recovery."""
    way_back: CallFigureLimits | None = None
    """Limits for the way back (else the drill's own)."""

    def limits(self, phase: str) -> CallFigureLimits:
        if phase == "way_back" and self.way_back is not None:
            return self.way_back
        return CallFigureLimits(refused=self.refused, cut=self.cut, held=self.held)


class ExpectModel(Strict):
    detect: DetectModel | None = None
    """The fault is detected in time."""
    decide: DecideModel | None = None
    """The right decision is taken in time."""
    plan: PlanExpectModel | None = None
    """The plan finishes in time."""
    state: StateExpectModel | None = None
    """The site reaches this state in time."""
    recover: RecoverModel
    """Calls are answered again in time (the recovery time objective)."""
    calls: list[CallKind] | CallsExpectModel = Field(default_factory=lambda: [CallKind.INBOUND])
    """A list: the verification calls that must succeed after recovery; a mapping: {verify: [...], refused: N,
    cut: N, held: N, way_back: {...}}, limits on the steady load's calls refused, cut and held."""
    max_failed_calls: Annotated[int, Field(ge=0)] | None = None
    """Of the steady load, at most this many calls may fail during the drill (none: not judged)."""

    @property
    def verify_calls(self) -> list[CallKind]:
        return self.calls.verify if isinstance(self.calls, CallsExpectModel) else list(self.calls)

    @property
    def call_limits(self) -> CallsExpectModel | None:
        return self.calls if isinstance(self.calls, CallsExpectModel) else None


class LoadModel(Strict):
    rate_cps: Annotated[float, Field(ge=0, le=50)] = 2.0
    """Calls per second of steady load during the drill (0: none)."""


class WayBackModel(Strict):
    restore: bool = True
    """Undo the fault (start what was stopped, clear the alarm, power on, reconnect)."""
    failback: Literal["auto", "always", "never"] = "auto"
    """Fail back after the drill: auto (when a host is not in its home duty), always or never."""
    drain_timeout_s: Seconds = 5.0
    """The failback's drain timeout, in seconds."""
    within_s: Seconds = 240.0
    """Seconds the way back may take."""


class ScenarioModel(Strict):
    name: Name
    """The drill's name (`ccfo drill run NAME`)."""
    description: str
    """What the drill rehearses, one or two sentences."""
    source: str = ""
    """Where the scenario comes from (e.g. a section of the source plan)."""
    target: Name = "lab"
    """"lab", or the name of a real site (site.name in site.yaml)."""
    steady_state: SteadyStateModel
    """What must hold before the fault (and again after the way back)."""
    fault: FaultModel
    """The fault to inject."""
    expect: ExpectModel
    """What the controller and the site must do, with time limits."""
    load: LoadModel = LoadModel()
    """Steady call load during the drill."""
    way_back: WayBackModel = WayBackModel()
    """How the drill returns the site to normal."""

    @property
    def lab(self) -> bool:
        return self.target == "lab"

    def recover_host(self) -> str | None:
        return self.expect.recover.active_host or (self.expect.state.active_host if self.expect.state else None) \
            or self.steady_state.active_host

    def budget_s(self) -> float:
        """An upper bound of the drill's duration (for process timeouts)."""
        e = self.expect
        waits = [x.within_s for x in (e.detect, e.decide, e.plan, e.state, e.recover) if x is not None]
        return max(waits) + self.way_back.within_s + self.steady_state.within_s + 120.0


# --------------------------------------------------------------------------- drills.yaml


class ExtensionsModel(Strict):
    inbound: str = "100"
    """The extension of an inbound IVR call."""
    agent: str = "200"
    """The extension that transfers a caller to an agent."""
    outbound: str = "300"
    """The extension prefix of a call out."""


class SipModel(Strict):
    """A site's SIP plan for verification calls: each host's SIP address, where the drill's callers bind,
    where the agent peer points (the drill answers as the agent), and the far end of test calls out."""

    endpoints: dict[Name, HostPort] = Field(min_length=1)
    """Each host's SIP address (ADDRESS:PORT) the drill's callers call."""
    front: HostPort | None = None
    """The SIP front every inbound call enters (Kamailio); none: call the hosts directly."""
    hold_s: Annotated[float, Field(ge=0, le=30)] = 8.0
    """The front's hold: how long callers wait for an answer while no host serves."""
    caller: str
    """The address the drill's callers bind."""
    agent_phone: HostPort
    """ADDRESS:PORT the agent peer points at (the drill answers as the agent)."""
    dialout: HostPort
    """ADDRESS:PORT of the far end of test calls out."""
    extensions: ExtensionsModel = ExtensionsModel()
    """The dialplan extensions the calls use."""


def _cron(v: str) -> str:
    from apscheduler.triggers.cron import CronTrigger
    try:
        CronTrigger.from_crontab(v)
    except ValueError as exc:
        raise ValueError(f"not a cron expression (minute hour day month weekday): {exc}") from None
    return v


class ScheduleModel(Strict):
    id: Name
    """The schedule's id."""
    drill: Name
    """The drill to run."""
    cron: Annotated[str, AfterValidator(_cron)] | None = None
    """When, as a cron expression (minute hour day month weekday); give cron or at."""
    at: datetime | None = None
    """Once, at this date and time (ISO 8601); give cron or at."""
    enabled: bool = True
    """Whether the schedule runs."""

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleModel:
        if (self.cron is None) == (self.at is None):
            raise ValueError("give exactly one of cron (a cron expression) or at (a date and time)")
        return self


class DrillsConfigModel(Strict):
    sip: SipModel | None = None
    """The site's SIP plan for verification calls (real sites; the lab has its own)."""
    schedules: list[ScheduleModel] = Field(default_factory=list)
    """Drills the controller runs on a schedule."""
    reports_dir: str | None = None
    """Where drill reports go (default: the controller's var/drill-reports)."""


# --------------------------------------------------------------------------- loading


def load_scenario(path: Path, cfg: LoadedConfig | None = None) -> ScenarioModel:
    """Validate one scenario file (and, given the site config, cross-check it); ConfigError lists all."""
    located = load_yaml(path)
    scenario: ScenarioModel = parse_model(ScenarioModel, located)
    if cfg is not None:
        problems = check_scenario(scenario, located, cfg)
        if problems:
            raise ConfigError(problems)
    return scenario


def check_scenario(s: ScenarioModel, loc: Located, cfg: LoadedConfig) -> list[Problem]:
    """Cross-checks against the site: hosts, services, spans, database sites, and what a target can do."""
    site = cfg.site
    hosts = set(site.host_ids)
    dbs = {d.id for d in site.db_sites}
    problems: list[Problem] = []

    def host(path: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and name not in hosts:
            problems.append(loc.problem(path, f"unknown host {name!r} (hosts: {', '.join(sorted(hosts))})"))

    f = s.fault
    host(("fault", "host"), f.host)
    host(("fault", "to"), f.to)
    if f.host in hosts and f.service is not None and site.host(f.host).service(f.service) is None:
        problems.append(loc.problem(("fault", "service"), f"{f.host} has no service {f.service!r}"))
    if f.host in hosts and f.span is not None and site.host(f.host).board.span(f.span) is None:
        problems.append(loc.problem(("fault", "span"), f"{f.host} has no span {f.span}"))
    if f.kind is FaultKind.DB_DOWN and f.db_site != "active" and f.db_site not in dbs:
        problems.append(loc.problem(("fault", "db_site"), f"unknown database site {f.db_site!r}"))
    if not s.lab:
        if s.target != site.name:
            problems.append(loc.problem(("target",), f"target must be 'lab' or this site's name {site.name!r}"))
        if f.kind in LAB_ONLY:
            problems.append(loc.problem(("fault", "kind"), f"{f.kind.value} can only be injected in the lab; on a "
                                        "real site use service_stop, board_down or switchover"))
        if f.calls_in_progress is not None:
            problems.append(loc.problem(("fault", "calls_in_progress"), "calls in progress are set up by the lab"))
    states: list[tuple[tuple[str, ...], StateModel]] = [(("steady_state",), s.steady_state)]
    if s.expect.state is not None:
        states.append((("expect", "state"), s.expect.state))
    for base, st in states:
        host((*base, "active_host"), st.active_host)
        for name in (*st.duties, *st.board_isolated):
            host((*base, "duties" if name in st.duties else "board_isolated", name), name)
        if st.active_db is not None and st.active_db not in dbs:
            problems.append(loc.problem((*base, "active_db"), f"unknown database site {st.active_db!r}"))
    host(("expect", "recover", "active_host"), s.expect.recover.active_host)
    return problems


def library(extra: list[Path] | None = None) -> dict[str, Path]:
    """Scenario name (the file's stem) -> path: the shipped library, then extra directories."""
    out: dict[str, Path] = {}
    for folder in [LIBRARY, *(extra or [])]:
        for path in sorted(Path(folder).glob("*.yaml")):
            out[path.stem] = path
    return out


def find(name: str, extra: list[Path] | None = None) -> Path:
    """A scenario by name (from the library) or by path to a YAML file."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.exists():
        return as_path
    known = library(extra)
    if name not in known:
        raise ConfigError([Problem(name, 0, "", f"no drill named {name!r} (known: {', '.join(known) or 'none'})")])
    return known[name]


def load_drills_config(config_dir: Path) -> DrillsConfigModel:
    """CONFIG/drills.yaml, or the defaults when the file does not exist."""
    path = Path(config_dir) / DRILLS_FILE
    if not path.exists():
        return DrillsConfigModel()
    return parse_model(DrillsConfigModel, load_yaml(path))
