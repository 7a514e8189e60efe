"""What the checklist runner needs from the world, as small Protocols, and the controller's adapters.

* `SitePort`: the site status (the API's status JSON), the expected service layout, the mode, running a
  plan through the engine (one plan at a time, journaled by the executor), the agent's line dial test.
  `EngineSite` implements it over the running controller's Engine.
* `DrillPort`: `async run(name) -> DrillOutcome(passed, report_path, summary)`.
* `CallTestPort`: `async run(spec) -> CallOutcome(passed, summary, report_path)` for inbound, outbound and
  agent-answer test calls.
Drills and SIPp call tests come from the drills package (adapters in controller.checklists.drills_port,
wired by controller.service); `Unavailable` fails those steps with a clear "drills not available" note,
so a checklist never passes a step that did not run. Timing contract: every method returns or raises
within its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ccfo.domain.plan import Plan, PlanRefused
from ccfo.domain.state import Mode
from ccfo.ports import AgentActionFailed, AgentUnreachable
from controller.checklists.checks import build_plan, expected_layout
from controller.checklists.specs import ActionKind, ActionSpec, CallTestSpec
from controller.engine import Engine, Refused
from controller.operator_plans import OperatorAction, operator_plan
from controller.status import status
from controller.store import PlanStatus
from drills.model import library

log = logging.getLogger("ccfo.checklists")
OPERATOR_ACTIONS = {ActionKind.SWITCHOVER, ActionKind.FAILOVER, ActionKind.FAILBACK}


@dataclass(frozen=True, slots=True)
class DrillOutcome:
    passed: bool
    report_path: str | None
    summary: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    passed: bool
    summary: str
    report_path: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    ok: bool
    detail: str
    plan_id: str | None = None


class DrillPort(Protocol):
    async def run(self, name: str) -> DrillOutcome:
        """Run the drill scenario `name` to its end (its way back included) and report."""
        ...


class CallTestPort(Protocol):
    async def run(self, spec: CallTestSpec) -> CallOutcome:
        """Place the test call(s) and say whether they were answered as expected."""
        ...


class SitePort(Protocol):
    def status(self) -> Mapping[str, Any]: ...

    def layout(self) -> Mapping[str, tuple[str, ...]]: ...

    @property
    def mode(self) -> str: ...

    async def set_mode(self, mode: str, who: str, reason: str) -> None: ...

    async def run_plan(self, spec: ActionSpec, who: str, reason: str, timeout_s: float) -> PlanOutcome: ...

    async def line_test(self, host: str, action_id: str, reason: str, timeout_s: float) -> tuple[bool, str]: ...


class Unavailable:
    """Drills and call tests when the drills package is not there: every run fails, saying why."""

    def __init__(self, why: str = "drills not available: the drills package (drills.runner) is not installed in "
                                  "this controller") -> None:
        self.why = why

    async def run(self, what: Any) -> Any:
        if isinstance(what, CallTestSpec):
            return CallOutcome(False, f"{self.why}; no {what.call.value} call was placed")
        return DrillOutcome(False, None, f"{self.why}; drill {what} did not run")


class EngineSite:
    """SitePort over the controller's Engine (in the controller process)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def status(self) -> Mapping[str, Any]:
        return status(self.engine)  # the API's read model: a check sees what operators see

    def layout(self) -> Mapping[str, tuple[str, ...]]:
        return expected_layout(self.engine.site, self.engine.state)

    @property
    def mode(self) -> str:
        return str(self.engine.state.mode.value)

    async def set_mode(self, mode: str, who: str, reason: str) -> None:
        await self.engine.set_mode(Mode(mode), who, reason)

    async def run_plan(self, spec: ActionSpec, who: str, reason: str, timeout_s: float) -> PlanOutcome:
        engine = self.engine
        try:
            plan = self._plan(spec, reason)
            rec = await engine.submit(plan, who, reason)
        except (PlanRefused, Refused) as exc:
            return PlanOutcome(False, f"refused: {exc}")
        try:
            await engine.wait_idle(timeout_s)
        except TimeoutError:
            return PlanOutcome(False, f"plan {rec.id} still running after {timeout_s:g} s (see ccfo plans)", rec.id)
        final = await asyncio.to_thread(engine.store.get_plan, rec.id)
        status = final.status if final else None
        if status is PlanStatus.FINISHED:
            return PlanOutcome(True, f"plan {rec.id} finished: {plan.title}", rec.id)
        return PlanOutcome(False, f"plan {rec.id} {status.value if status else 'lost'}: "
                                  f"{(final.error if final else None) or plan.title}", rec.id)

    def _plan(self, spec: ActionSpec, reason: str) -> Plan:
        """Operator actions as the API builds them (controller.operator_plans); the others from the step."""
        if spec.action in OPERATOR_ACTIONS:
            return operator_plan(self.engine, OperatorAction(spec.action.value), reason, to=spec.to,
                                 drain_timeout_s=spec.drain_timeout_s)
        return build_plan(spec, self.engine.site, self.engine.state, reason,
                          repoint_order=self.engine.policy.repoint_order)

    async def line_test(self, host: str, action_id: str, reason: str, timeout_s: float) -> tuple[bool, str]:
        try:
            res = await self.engine.executor.agents.action(host, action_id, "line_test", reason=reason,
                                                           timeout_s=timeout_s, term=self.engine.leadership.term)
        except (AgentUnreachable, AgentActionFailed) as exc:
            return False, f"{host}: {exc}"
        return True, res.detail or f"line test on {host} passed"



def drill_names(config_dir: Path) -> set[str]:
    """The drill scenarios a checklist may name: the drills library and CONFIG/drills."""
    return set(library([config_dir / "drills"]))
