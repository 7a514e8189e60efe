"""What an automatic checklist step does, as typed data: a check, an action (a plan), a call test, a drill.

The loader turns the YAML forms (`check: {line_test: ipc-a}`, `action: {plan: switchover, to: ipc-b}`,
`call_test: {call: inbound}`, `drill: NAME`) into these; the runner carries them out through its ports.
Pure: no I/O; `describe` gives the sentence an operator reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ccfo.domain.switches import SwitchStep, SwitchVerb, describe_step


class CheckKind(StrEnum):
    SITE_STATE = "site_state"  # the status banner: normal, degraded, failed over, maintenance, down
    HOSTS_REACHABLE = "hosts_reachable"
    CAPACITY_AT_LEAST = "capacity_at_least"  # channels in service for the site
    SERVICE_ACTIVE = "service_active"
    SERVICE_INACTIVE = "service_inactive"
    SERVICES_AS_PLANNED = "services_as_planned"  # every host runs exactly what its duty says
    DB_SITE = "db_site"  # every reporting host's (and server's, with database files) config files name this site
    LINE_TEST = "line_test"  # the agent's line dial test (AMI Originate) on a host


class ActionKind(StrEnum):
    SWITCHOVER = "switchover"
    FAILOVER = "failover"
    FAILBACK = "failback"
    REPOINT_DB = "repoint_db"
    STOP_SERVICES = "stop_services"  # every managed service of the hosts, CTI/IVR first
    START_SERVICES = "start_services"  # every host's services as its duty says, middleware first
    SERVER = "server"  # steps on the managed servers (services, jobs, switch files), as a switch's


class CallKind(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    AGENT_ANSWER = "agent_answer"


@dataclass(frozen=True, slots=True)
class CheckSpec:
    check: CheckKind
    hosts: tuple[str, ...] = ()
    service: str | None = None
    value: str | None = None  # site_state: the label; db_site: the site
    channels: int | None = None

    def describe(self) -> str:
        hosts = " and ".join(self.hosts)
        return {
            CheckKind.SITE_STATE: f"site state is {self.value}",
            CheckKind.HOSTS_REACHABLE: f"{hosts} reachable",
            CheckKind.CAPACITY_AT_LEAST: f"capacity at least {self.channels} channels",
            CheckKind.SERVICE_ACTIVE: f"{self.service} active on {hosts}",
            CheckKind.SERVICE_INACTIVE: f"{self.service} stopped on {hosts}",
            CheckKind.SERVICES_AS_PLANNED: "every host runs the services its duty says",
            CheckKind.DB_SITE: f"database config points at {self.value}",
            CheckKind.LINE_TEST: f"line dial test on {hosts}",
        }[self.check]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    action: ActionKind
    to: str | None = None  # switchover / failover: a host; repoint_db: a database site
    drain_timeout_s: float = 60.0
    hosts: tuple[str, ...] = ()  # stop_services / start_services: these hosts (default: all)
    steps: tuple[SwitchStep, ...] = ()  # server: the steps on the managed servers, in order

    def describe(self) -> str:
        where = f" on {', '.join(self.hosts)}" if self.hosts else ""
        if self.action is ActionKind.SERVER:
            return "; ".join(describe_step(s) for s in self.steps)
        return {
            ActionKind.SWITCHOVER: f"planned switchover to {self.to}",
            ActionKind.FAILOVER: f"fail over to {self.to}",
            ActionKind.FAILBACK: "fail back to the normal layout",
            ActionKind.REPOINT_DB: f"repoint the database config to {self.to}",
            ActionKind.STOP_SERVICES: f"stop every managed service{where}",
            ActionKind.START_SERVICES: f"start the services as planned{where}",
        }[self.action]


@dataclass(frozen=True, slots=True)
class CallTestSpec:
    call: CallKind
    host: str | None = None
    calls: int = 1

    def describe(self) -> str:
        return f"{self.calls} {self.call.value.replace('_', '-')} test call(s)" + (f" on {self.host}" if self.host
                                                                                   else "")


@dataclass(frozen=True, slots=True)
class DrillSpec:
    name: str

    def describe(self) -> str:
        return f"drill {self.name}"


Spec = CheckSpec | ActionSpec | CallTestSpec | DrillSpec | None


def spec_to_dict(spec: Spec) -> dict[str, Any] | None:
    match spec:
        case None:
            return None
        case CheckSpec():
            return {"type": "check", "check": spec.check.value, "hosts": list(spec.hosts), "service": spec.service,
                    "value": spec.value, "channels": spec.channels}
        case ActionSpec():
            return {"type": "action", "action": spec.action.value, "to": spec.to,
                    "drain_timeout_s": spec.drain_timeout_s, "hosts": list(spec.hosts),
                    "steps": [{"verb": s.verb.value, "server": s.server, "name": s.name, "to": s.to,
                               "best_effort": s.best_effort} for s in spec.steps]}
        case CallTestSpec():
            return {"type": "call_test", "call": spec.call.value, "host": spec.host, "calls": spec.calls}
        case DrillSpec():
            return {"type": "drill", "name": spec.name}
    raise TypeError(f"not a step spec: {spec!r}")


def spec_from_dict(d: Mapping[str, Any] | None) -> Spec:
    if d is None:
        return None
    match d["type"]:
        case "check":
            return CheckSpec(CheckKind(d["check"]), tuple(d.get("hosts") or ()), d.get("service"), d.get("value"),
                             d.get("channels"))
        case "action":
            return ActionSpec(ActionKind(d["action"]), d.get("to"), float(d.get("drain_timeout_s", 60.0)),
                              tuple(d.get("hosts") or ()),
                              tuple(SwitchStep(SwitchVerb(s["verb"]), s.get("server"), s.get("name"), s.get("to"),
                                               bool(s.get("best_effort", False))) for s in d.get("steps") or ()))
        case "call_test":
            return CallTestSpec(CallKind(d["call"]), d.get("host"), int(d.get("calls", 1)))
        case "drill":
            return DrillSpec(d["name"])
    raise ValueError(f"unknown step spec type {d.get('type')!r}")


def describe(spec: Spec) -> str:
    return "" if spec is None else spec.describe()
