"""Requests of the controller API: bodies, path and query values, validated and bounded; every change
carries a reason. The constraints are in the types, so the OpenAPI document states them too."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ccfo.domain.state import Mode
from controller.store import PlanStatus

# Stripped before the length check: three spaces are not a reason.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500, pattern=r"\S"),
                   Field(description="why: recorded in the journal")]
HostName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_.-]*$")]
PlanId = Annotated[str, Path(min_length=1, max_length=64, description="a plan's id (`ccfo plans`)")]
_STATUS = "|".join(s.value for s in PlanStatus)
PLAN_STATUSES = rf"^({_STATUS})(,({_STATUS}))*$"  # the `status` filter: plan statuses, comma-separated
DrainTimeout = Annotated[float, Field(ge=0, le=7200, description="how long the old host may drain its calls")]


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


class ModeRequest(Body):
    mode: Mode
    reason: Reason


class DecisionRequest(Body):
    reason: Reason


class ConfirmOffRequest(Body):
    host: HostName
    reason: Reason
