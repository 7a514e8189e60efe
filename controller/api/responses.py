"""The bodies the controller's API answers with, as typed dicts (the read models already are dicts).

Each route names one of these as its `response_model`, so the OpenAPI document describes what comes back
and FastAPI checks every answer against it. Keys a body may leave out are `NotRequired`; objects allow
keys not listed here (`extra="allow"`), so a field added to a read model reaches clients before its
description does (and never turns an answer into a server error). Enums are the core's own.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from ccfo.domain.plan import Action, StepKind
from ccfo.domain.rules import Disposition
from ccfo.domain.state import Mode
from controller.store import PlanStatus

OPEN = ConfigDict(extra="allow")


# --- plans ------------------------------------------------------------------------------------------------

@with_config(OPEN)
class StepOut(TypedDict):
    kind: StepKind
    text: NotRequired[str]
    host: NotRequired[str]
    service: NotRequired[str]
    target: NotRequired[str | list[str]]
    timeout_s: NotRequired[float]
    message: NotRequired[str]
    checks: NotRequired[list[Any]]
    best_effort: NotRequired[bool]
    state: NotRequired[dict[str, Any]]
    job: NotRequired[str]
    file: NotRequired[str]


@with_config(OPEN)
class PlanOut(TypedDict):
    """A plan as built: what it does, step by step."""
    action: Action
    title: str
    reason: str
    meta: dict[str, Any]
    steps: list[StepOut]


@with_config(OPEN)
class PlanRecordOut(PlanOut):
    """A stored plan: the plan and where it stands."""
    id: str
    status: PlanStatus
    created: float
    updated: float
    source: str
    requested_by: str
    next_step: int
    decided_by: str | None
    decided_reason: str | None
    error: str | None
    attempt: int


@with_config(OPEN)
class PlansOut(TypedDict):
    plans: list[PlanRecordOut]


@with_config(OPEN)
class DryRunOut(TypedDict):
    """What an operator action would run now (nothing was run)."""
    dry_run: Literal[True]
    site: str
    plan: PlanOut


@with_config(OPEN)
class SwitchOut(TypedDict):
    """A named switch: its steps and its inverse's, as the plans that would run now."""
    id: str
    description: str
    inverse_description: str
    source: str
    steps: list[StepOut]
    inverse: list[StepOut]


@with_config(OPEN)
class SwitchesOut(TypedDict):
    switches: list[SwitchOut]


@with_config(OPEN)
class ConfirmedOut(TypedDict):
    confirmed: str


@with_config(OPEN)
class ModeOut(TypedDict):
    mode: Mode


# --- status -----------------------------------------------------------------------------------------------

@with_config(OPEN)
class SpanOut(TypedDict):
    span: int
    alarm: str
    dchannel_up: bool | None  # None: unknown (AMI not connected, or a configured span Asterisk does not report)
    channels: int


@with_config(OPEN)
class TrunkOut(TypedDict):
    name: str
    driver: str
    channels: int
    state: Literal["up", "down", "unknown"]


@with_config(OPEN)
class HostCapacityOut(TypedDict):
    channels: int
    board_channels: int
    trunk_channels: int
    ivr_calls: int
    agent_calls: int
    fax_calls: int
    fax_channels: int
    used: int
    free: int
    reserve: int
    more_ivr_calls: int
    more_agent_transfers: int
    max_ivr_calls_alone: int


@with_config(OPEN)
class HostOut(TypedDict):
    role: str
    duty: str
    active: bool
    board_isolated: bool
    reachable: bool
    report_age_s: float | None
    ami_connected: bool | None
    driver: str
    spans: list[SpanOut]
    trunks: list[TrunkOut]
    services: dict[str, str]
    db_site: str | None
    capacity: HostCapacityOut


@with_config(OPEN)
class FaultOut(TypedDict):
    fault: str
    kind: str
    host: str | None  # None for a database site's fault (db_site names it)
    db_site: str | None
    since: float
    active: bool


@with_config(OPEN)
class DecisionOut(TypedDict):
    rule: str | None
    action: Action
    disposition: Disposition
    approval_required: bool
    reason: str
    faults: list[str]
    notes: list[str]
    steps: list[StepOut]


@with_config(OPEN)
class SiteCapacityOut(TypedDict):
    channels: int
    agent_calls: int
    more_ivr_calls: int
    line: str


@with_config(OPEN)
class WaitingOut(TypedDict):
    plan_id: str
    host: str


@with_config(OPEN)
class YouOut(TypedDict):
    name: str
    role: Literal["agent", "viewer", "operator", "admin"]


@with_config(OPEN)
class JobOut(TypedDict):
    name: str
    backend: str
    state: str
    next_run: float | None


@with_config(OPEN)
class ServerOut(TypedDict):
    datacenter: str
    kind: str
    role: Literal["active", "backup"]
    reachable: bool
    report_age_s: float | None
    services: dict[str, str]
    db_site: str | None
    jobs: list[JobOut]


@with_config(OPEN)
class StatusOut(TypedDict):
    site: str
    state: Literal["maintenance", "down", "failed over", "degraded", "normal"]
    mode: Mode
    active_host: str | None
    active_db: str | None
    hosts: dict[str, HostOut]
    faults: list[FaultOut]
    flapping: list[str]
    decision: DecisionOut | None
    capacity: SiteCapacityOut
    running_plan: PlanRecordOut | None
    waiting_confirmation: list[WaitingOut]
    cycles: int
    datacenters: list[str]
    servers: dict[str, ServerOut]
    you: YouOut


# --- journal ----------------------------------------------------------------------------------------------

@with_config(OPEN)
class EntryOut(TypedDict):
    id: int
    ts: float
    kind: str
    host: str | None
    plan_id: str | None
    step: int | None
    actor: str | None
    reason: str | None
    status: str | None
    duration_s: float | None
    data: dict[str, Any]


@with_config(OPEN)
class JournalOut(TypedDict):
    entries: list[EntryOut]


# --- drills -----------------------------------------------------------------------------------------------

@with_config(OPEN)
class DrillSummaryOut(TypedDict):
    name: str
    valid: bool
    description: NotRequired[str]
    target: NotRequired[str]
    fault: NotRequired[str]
    source: NotRequired[str | None]
    problems: NotRequired[list[str]]


@with_config(OPEN)
class DrillsOut(TypedDict):
    drills: list[DrillSummaryOut]


@with_config(OPEN)
class DrillOut(TypedDict):
    name: str
    scenario: dict[str, Any]
    dry_run: str
    expected_decision: dict[str, Any] | None


@with_config(OPEN)
class DrillRunOut(TypedDict):
    id: str
    drill: str
    status: str
    by: str
    report: NotRequired[dict[str, Any] | None]
    error: NotRequired[str]


@with_config(OPEN)
class DrillRunsOut(TypedDict):
    runs: list[DrillRunOut]


@with_config(OPEN)
class RecordedOut(TypedDict):
    recorded: str


@with_config(OPEN)
class ScheduleOut(TypedDict):
    id: str
    drill: str
    cron: str | None
    at: str | None
    enabled: bool
    source: Literal["config", "api"]
    next_run: str | None
    next_run_ts: float | None


@with_config(OPEN)
class SchedulesOut(TypedDict):
    schedules: list[ScheduleOut]


# --- checklists -------------------------------------------------------------------------------------------

@with_config(OPEN)
class ChecklistSummaryOut(TypedDict):
    name: str
    title: str
    description: str
    phases: int
    steps: int
    planned_s: float
    automatic_steps: int


@with_config(OPEN)
class ChecklistsOut(TypedDict):
    checklists: list[ChecklistSummaryOut]
    problems: list[str]


@with_config(OPEN)
class ChecklistOut(TypedDict):
    name: str
    title: str
    description: str
    phases: list[dict[str, Any]]
    steps: int
    planned_s: float
    automatic_steps: int


@with_config(OPEN)
class RunSummaryOut(TypedDict):
    id: str
    checklist: str
    title: str
    rehearsal: bool
    started: float
    started_by: str
    reason: str
    ended: float | None
    outcome: str | None
    status: str
    current_phase: str | None
    planned_from: str | None
    counts: dict[str, int]
    steps: int
    planned_finish: float
    projected_finish: float
    slip_s: float


@with_config(OPEN)
class RunStatusOut(RunSummaryOut):
    now: float
    phases: list[dict[str, Any]]
    ready: list[str]
    running: list[str]
    awaiting_confirmation: list[str]
    awaiting_operator: list[str]
    blocked: list[str]
    failed: list[str]
    skipped: list[str]
    critical_path: list[str]
    maintenance: dict[str, Any] | None
    rollback: dict[str, Any] | None
    line: str
    timeline: NotRequired[list[dict[str, Any]]]


@with_config(OPEN)
class RunsOut(TypedDict):
    runs: list[RunSummaryOut]


@with_config(OPEN)
class ReportEnvelopeOut(TypedDict):
    format: Literal["md", "html", "json"]
    content: str


# --- health -----------------------------------------------------------------------------------------------

@with_config(OPEN)
class HealthOut(TypedDict):
    status: Literal["ok", "unavailable"]
    reasons: NotRequired[list[str]]


# --- errors -----------------------------------------------------------------------------------------------

@with_config(OPEN)
class ProblemsOut(TypedDict):
    message: str
    problems: list[str]


@with_config(OPEN)
class ErrorOut(TypedDict):
    """Every refusal: `detail` says why (a sentence; an invalid checklist's problems)."""
    detail: str | ProblemsOut


WHY = {
    400: "the request is malformed: a body that is not JSON, or a query parameter this operation does not take",
    401: "no token, or a wrong or expired one (the answer carries `WWW-Authenticate: Bearer`)",
    403: "the token's role may not do this (viewers read, operators act, admins change the mode)",
    404: "no such plan, checklist, run, step, phase, drill, drill run or schedule",
    409: "refused now, saying why: a plan running (one at a time), a plan in the wrong state, a plan that makes "
         "no sense in the site's state, a drill that may not start now, a conflicting schedule or checklist step",
    413: "the request body is over 64 kB",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that can answer these error codes, each with its body: JSON, also on
    routes that answer text when they succeed (FastAPI would document the route's own media type)."""
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    return {code: {"model": ErrorOut, "description": WHY[code], "content": body} for code in codes}


AUTH = errors(400, 401, 403)  # every route that needs a token
