"""Requests of the controller API: bodies, path and query values, validated and bounded; every change
carries a reason. The constraints are in the types, so the OpenAPI document states them too, and what the
document allows the API accepts: JSON types are strict (no "300" for a number, no 1 for a boolean), a
reason is at least 3 characters once stripped (the pattern says so), a cron line is the subset the pattern
describes. Host names are listed (an enum of the site's hosts) by controller.api.schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat

from ccfo.domain.state import Mode
from controller.store import PlanStatus

SPACE = " \t\n\r"
# Three spaces are not a reason: at least 3 characters between the first and the last that are not spaces.
REASON = r"^[ \t\n\r]*[^ \t\n\r][\s\S]+[^ \t\n\r][ \t\n\r]*$"
Reason = Annotated[str, Field(min_length=3, max_length=500, pattern=REASON, description="why: recorded in the journal"),
                   AfterValidator(lambda s: s.strip(SPACE))]
HostName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_.-]*$")]
PlanId = Annotated[str, Path(min_length=1, max_length=64, description="a plan's id (`ccfo plans`)")]
_STATUS = "|".join(s.value for s in PlanStatus)
PLAN_STATUSES = rf"^({_STATUS})(,({_STATUS}))*$"  # the `status` filter: plan statuses, comma-separated
DrainTimeout = Annotated[StrictFloat, Field(ge=0, le=7200, description="how long the old host may drain its calls")]
def _integer(v: Any) -> Any:
    """A JSON integer: 3 or 3.0 (JSON Schema counts both), never "3" or true."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("a whole number")
    if isinstance(v, float) and not v.is_integer():
        raise ValueError("a whole number")
    return int(v)


Count = Annotated[int, Field(ge=0, le=100_000), BeforeValidator(_integer)]


def _cron_field(values: str, step: str) -> str:
    return rf"(\*(/{step})?|({values})(,({values}))*)"


# minute hour day-of-month month weekday; each `*`, `*/N` or a list of values (names for months and weekdays)
CRON = " ".join([
    "^" + _cron_field(r"[1-5]?[0-9]", "[1-9]"),
    _cron_field(r"1?[0-9]|2[0-3]", "[1-9]"),
    _cron_field(r"[1-9]|[12][0-9]|3[01]", "[1-9]"),
    _cron_field(r"[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec", "[1-9]"),
    _cron_field(r"[0-6]|mon|tue|wed|thu|fri|sat|sun", "[1-6]") + "$"])


def _text_only(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError("a date and time as text (ISO 8601, e.g. 2030-01-05T03:00:00+08:00)")
    return v


When = Annotated[datetime, BeforeValidator(_text_only)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailoverRequest(Body):
    to: HostName
    reason: Reason


class SwitchoverRequest(Body):
    to: HostName
    reason: Reason
    drain_timeout_s: DrainTimeout = 300.0


class FailbackRequest(Body):
    reason: Reason
    drain_timeout_s: DrainTimeout = 300.0


SwitchName = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_.-]*$",
                                  description="a switch's name (switches.yaml, `GET /api/v1/switches`)")]


class SwitchRequest(Body):
    reason: Reason
    inverse: StrictBool = False
    """Run the switch's inverse (its way back)."""


class ModeRequest(Body):
    mode: Mode
    reason: Reason


class DecisionRequest(Body):
    reason: Reason


class ConfirmOffRequest(Body):
    host: HostName
    reason: Reason


# --- an agent's report (agents/report.py builds it; ccfo.clients.agent_http.parse_report reads it) ------

class _Report(BaseModel):
    model_config = ConfigDict(extra="allow")  # agents send more than the controller reads


class AmiIn(_Report):
    connected: StrictBool


class BoardIn(_Report):
    driver: str | None = Field(description="up or down; anything else is unknown")


class SpanIn(_Report):
    span: Annotated[int, Field(ge=0, le=1024), BeforeValidator(_integer)]
    alarm: Annotated[str, Field(max_length=64)]
    dchannel: Annotated[str, Field(max_length=64)] | None = None
    channels: Count


class TrunkIn(_Report):
    name: Annotated[str, Field(min_length=1, max_length=80)]
    state: Annotated[str, Field(max_length=16, description="up, down or unknown")]
    channels: Count
    driver: Annotated[str, Field(max_length=16)] = "pjsip"


class ServiceIn(_Report):
    state: Annotated[str, Field(max_length=64)]


class CallsIn(_Report):
    ivr: Count = 0
    agent: Count = 0
    fax: Count = 0


class DbIn(_Report):
    site: Annotated[str, Field(max_length=63)] | None = None


class JobIn(_Report):
    name: Annotated[str, Field(max_length=63)]
    backend: Annotated[str, Field(max_length=16)]
    state: Annotated[str, Field(max_length=16)]
    next_run: float | None = None


class AgentReport(_Report):
    host: HostName
    ami: AmiIn
    board: BoardIn | None  # null: a managed server (no board)
    spans: Annotated[list[SpanIn], Field(max_length=64)] | None = None
    trunks: Annotated[list[TrunkIn], Field(max_length=64)] | None = None
    services: dict[str, ServiceIn]
    calls: CallsIn | None = None
    db: DbIn | None = None
    jobs: Annotated[list[JobIn], Field(max_length=256)] | None = None  # a managed server's scheduled jobs
