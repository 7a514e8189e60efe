"""Faults as values, their textual form, and the debounce / flap tracker.

A fault is what the health model says is wrong right now (a span in alarm, a service down, a host
unreachable, a database site down). The tracker turns the stream of "present now" observations into
*active* faults: present continuously for at least the debounce interval of the rule that handles
them (a rule may give each fault kind its own: a hang has already outlasted its probe's failures).
It also counts appear/clear transitions so a flapping fault is reported, not acted on.
Pure: `now` is always passed in; nothing here reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from ccfo.domain.site import DbSiteId, HostId


class FaultKind(StrEnum):
    SERVICE_DOWN = "service_down"
    SERVICE_HUNG = "service_hung"  # active, but failing its liveness probe: callers hear silence all the same
    SPAN_ALARM = "span_alarm"
    DCHANNEL_DOWN = "dchannel_down"
    BOARD_DOWN = "board_down"
    AMI_LOST = "ami_lost"  # the AMI connection is refused or closed (Asterisk down, or the path to it)
    AMI_HUNG = "ami_hung"  # Asterisk accepts the connection but does not answer within the ping deadline
    HOST_UNREACHABLE = "host_unreachable"
    DB_DOWN = "db_down"


@dataclass(frozen=True, slots=True, order=True)
class Fault:
    """One fault. `component` is what is at fault: a host id, or a database site id for `db_down` (read
    it through `host` or `db_site`, which say which it is); `subject` names the service or the span
    number where the kind needs one."""

    kind: FaultKind
    component: str
    subject: str = ""

    @property
    def host(self) -> HostId | None:
        """The host at fault; None for a database site fault."""
        return None if self.kind is FaultKind.DB_DOWN else HostId(self.component)

    @property
    def db_site(self) -> DbSiteId | None:
        """The database site at fault (db_down only)."""
        return DbSiteId(self.component) if self.kind is FaultKind.DB_DOWN else None

    def __str__(self) -> str:
        return format_fault(self)


class FaultSyntaxError(ValueError):
    """A FAULT argument that does not follow the documented forms."""


_FORMS = (
    (re.compile(r"^db:(?P<h>[\w.-]+)=down$"), FaultKind.DB_DOWN),
    (re.compile(r"^(?P<h>[\w.-]+):service:(?P<s>[\w.-]+)=down$"), FaultKind.SERVICE_DOWN),
    (re.compile(r"^(?P<h>[\w.-]+):service:(?P<s>[\w.-]+)=hung$"), FaultKind.SERVICE_HUNG),
    (re.compile(r"^(?P<h>[\w.-]+):span:(?P<s>\d+)=alarm$"), FaultKind.SPAN_ALARM),
    (re.compile(r"^(?P<h>[\w.-]+):dchannel:(?P<s>\d+)=down$"), FaultKind.DCHANNEL_DOWN),
    (re.compile(r"^(?P<h>[\w.-]+):board=down$"), FaultKind.BOARD_DOWN),
    (re.compile(r"^(?P<h>[\w.-]+):ami=lost$"), FaultKind.AMI_LOST),
    (re.compile(r"^(?P<h>[\w.-]+):ami=hung$"), FaultKind.AMI_HUNG),
    (re.compile(r"^(?P<h>[\w.-]+):host=unreachable$"), FaultKind.HOST_UNREACHABLE),
)

FAULT_FORMS = (
    "HOST:service:NAME=down",
    "HOST:service:NAME=hung",
    "HOST:span:N=alarm",
    "HOST:dchannel:N=down",
    "HOST:board=down",
    "HOST:ami=lost",
    "HOST:ami=hung",
    "HOST:host=unreachable",
    "db:SITE=down",
)


def parse_fault(text: str) -> Fault:
    """Parse the CLI form of a fault (see FAULT_FORMS)."""
    for pattern, kind in _FORMS:
        m = pattern.match(text.strip())
        if m:
            return Fault(kind, m.group("h"), m.groupdict().get("s") or "")
    raise FaultSyntaxError(f"cannot read fault {text!r}; expected one of: {', '.join(FAULT_FORMS)}")


def format_fault(f: Fault) -> str:
    match f.kind:
        case FaultKind.DB_DOWN:
            return f"db:{f.component}=down"
        case FaultKind.SERVICE_DOWN:
            return f"{f.component}:service:{f.subject}=down"
        case FaultKind.SERVICE_HUNG:
            return f"{f.component}:service:{f.subject}=hung"
        case FaultKind.SPAN_ALARM:
            return f"{f.component}:span:{f.subject}=alarm"
        case FaultKind.DCHANNEL_DOWN:
            return f"{f.component}:dchannel:{f.subject}=down"
        case FaultKind.BOARD_DOWN:
            return f"{f.component}:board=down"
        case FaultKind.AMI_LOST:
            return f"{f.component}:ami=lost"
        case FaultKind.AMI_HUNG:
            return f"{f.component}:ami=hung"
        case FaultKind.HOST_UNREACHABLE:
            return f"{f.component}:host=unreachable"


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """What the tracker knows of one fault: since when it is present (None: cleared) and its recent
    appear/clear transition times (for flap detection)."""

    since: float | None
    transitions: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    window_s: float = 300.0
    max_transitions: int = 4


@dataclass(frozen=True, slots=True)
class FaultTracker:
    """Immutable debounce/flap state; `observe` returns a new tracker."""

    records: Mapping[Fault, FaultRecord]
    flap: FlapPolicy = FlapPolicy()

    @staticmethod
    def empty(flap: FlapPolicy | None = None) -> FaultTracker:
        return FaultTracker({}, flap or FlapPolicy())

    def observe(self, present: Iterable[Fault], now: float) -> FaultTracker:
        """Fold in the set of faults present at `now`."""
        present_set = set(present)
        out: dict[Fault, FaultRecord] = {}
        for fault in present_set | set(self.records):
            rec = self.records.get(fault, FaultRecord(None))
            recent = tuple(t for t in rec.transitions if now - t <= self.flap.window_s)
            is_present = fault in present_set
            if is_present and rec.since is None:
                rec = FaultRecord(now, (*recent, now))
            elif not is_present and rec.since is not None:
                rec = FaultRecord(None, (*recent, now))
            else:
                rec = replace(rec, transitions=recent)
            if rec.since is not None or rec.transitions:
                out[fault] = rec
        return FaultTracker(out, self.flap)

    def present(self) -> dict[Fault, float]:
        """Faults present now, with the time they appeared."""
        return {f: r.since for f, r in self.records.items() if r.since is not None}

    def active(self, now: float, debounce_s: Callable[[Fault], float]) -> dict[Fault, float]:
        """Faults present for at least their debounce interval."""
        return {f: since for f, since in self.present().items() if now - since >= debounce_s(f)}

    def flapping(self) -> frozenset[Fault]:
        """Faults that appeared or cleared more than the policy allows within the window."""
        return frozenset(f for f, r in self.records.items() if len(r.transitions) > self.flap.max_transitions)
