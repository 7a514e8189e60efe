"""Typed checks of verify and fence steps, and whether a host's fresh report satisfies one.

A check is data (`Check(CheckKind.ACTIVE, "cti")`), stored and shown as "active:cti". Whether it holds
is decided here, purely, on a report the executor fetched: a check of a kind this code does not know
fails, never passes, so a plan from a newer version (or a typo) cannot verify by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ccfo.domain.health import DriverState, HostHealth, ServiceState


class CheckKind(StrEnum):
    """What a verify or fence step checks on a host's fresh report."""

    ACTIVE = "active"  # the service runs
    INACTIVE = "inactive"  # the service is stopped (or failed)
    BOARD = "board"  # the board driver is "up" or "down"
    DB = "db"  # the host's database config points at this database site


@dataclass(frozen=True, slots=True)
class Check:
    """One condition of a verify or fence step, e.g. `Check(CheckKind.ACTIVE, "cti")`; its text form
    ("active:cti") is how it is stored and shown."""

    kind: CheckKind
    arg: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}"


class CheckSyntaxError(ValueError):
    """A stored check that is not KIND:ARG with a known kind."""


def parse_check(text: str) -> Check:
    kind, _, arg = text.partition(":")
    if kind not in CheckKind.__members__.values() or not arg:
        raise CheckSyntaxError(f"cannot read check {text!r}: expected KIND:ARG with KIND one of "
                               + ", ".join(k.value for k in CheckKind))
    return Check(CheckKind(kind), arg)


def service_is(report: HostHealth, name: str, want: ServiceState) -> bool:
    """The service is in the wanted state; "inactive" also accepts a failed unit (it is not running)."""
    state = report.services.get(name, ServiceState.UNKNOWN)
    if want is ServiceState.INACTIVE:
        return state in (ServiceState.INACTIVE, ServiceState.FAILED)
    return state is want


def check_holds(report: HostHealth, check: Check) -> bool:
    match check.kind:
        case CheckKind.ACTIVE:
            return service_is(report, check.arg, ServiceState.ACTIVE)
        case CheckKind.INACTIVE:
            return service_is(report, check.arg, ServiceState.INACTIVE)
        case CheckKind.BOARD:
            return report.driver is (DriverState.DOWN if check.arg == "down" else DriverState.UP)
        case CheckKind.DB:
            return report.db_site == check.arg
    return False  # an unknown kind fails


def checks_hold(report: HostHealth, checks: tuple[Check, ...]) -> bool:
    return all(check_holds(report, c) for c in checks)
