"""Request bodies of the operator API: validated, bounded, and every change carries a reason."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ccfo.domain.state import Mode

# Stripped before the length check: three spaces are not a reason.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500, pattern=r"\S"),
                   Field(description="why: recorded in the journal")]
HostName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_.-]*$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailoverRequest(Body):
    to: HostName
    reason: Reason


class SwitchoverRequest(Body):
    to: HostName
    reason: Reason
    drain_timeout_s: Annotated[float, Field(ge=0, le=7200)] = 300.0


class FailbackRequest(Body):
    reason: Reason
    drain_timeout_s: Annotated[float, Field(ge=0, le=7200)] = 300.0


class ModeRequest(Body):
    mode: Mode
    reason: Reason


class DecisionRequest(Body):
    reason: Reason


class ConfirmOffRequest(Body):
    host: HostName
    reason: Reason
