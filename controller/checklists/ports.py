"""What the checklist runner needs from the world, as small Protocols, and the controller's adapters.

* `SitePort`: the site status (the API's status JSON), the expected service layout, the mode, running a
  plan through the engine (one plan at a time, journaled by the executor), the agent's line dial test.
  `EngineSite` implements it over the running controller's Engine.
* `DrillPort`: `async run(name) -> DrillOutcome(passed, report_path, summary)`.
* `CallTestPort`: `async run(spec) -> CallOutcome(passed, summary, report_path)` for inbound, outbound and
  agent-answer test calls.
Drills and SIPp call tests come from the drills package when it is installed (`drill_ports`, adapters in
controller.checklists.drills_port);
otherwise `Unavailable` fails those steps with a clear "drills not available" note, so a checklist never
passes a step that did not run. Timing contract: every method returns or raises within its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ccfo.domain.plan import PlanRefused
from ccfo.domain.state import Mode
from ccfo.ports import AgentActionFailed, AgentUnreachable
from controller.checklists.checks import build_plan, expected_layout
from controller.checklists.specs import ActionSpec, CallTestSpec

log = logging.getLogger("ccfo.checklists")


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

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def status(self) -> Mapping[str, Any]:
        from controller.api.views import status  # the API's read model: a check sees what operators see
        return status(self.engine)

    def layout(self) -> Mapping[str, tuple[str, ...]]:
        return expected_layout(self.engine.site, self.engine.state)

    @property
    def mode(self) -> str:
        return str(self.engine.state.mode.value)

    async def set_mode(self, mode: str, who: str, reason: str) -> None:
        await self.engine.set_mode(Mode(mode), who, reason)

    async def run_plan(self, spec: ActionSpec, who: str, reason: str, timeout_s: float) -> PlanOutcome:
        from controller.engine import Refused
        from controller.store import PlanStatus
        engine = self.engine
        active = engine.state.active_host
        reachable = bool(active and engine.snap and engine.snap.hosts[active].reachable)
        try:
            plan = build_plan(spec, engine.site, engine.state, reason, source_reachable=reachable)
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

    async def line_test(self, host: str, action_id: str, reason: str, timeout_s: float) -> tuple[bool, str]:
        try:
            res = await self.engine.executor.agents.action(host, action_id, "line_test", reason=reason,
                                                           timeout_s=timeout_s)
        except (AgentUnreachable, AgentActionFailed) as exc:
            return False, f"{host}: {exc}"
        return True, res.detail or f"line test on {host} passed"


def drill_ports(engine: Any) -> tuple[DrillPort, CallTestPort]:
    """The drills package's runner and SIPp calls when installed, else `Unavailable` for both."""
    try:
        import drills.runner  # optional in a controller: only its presence is checked here
        import drills.sipp  # noqa: F401
    except ImportError as exc:
        log.info("checklists: drill and call-test steps will fail: %s", exc)
        none = Unavailable()
        return none, none
    from controller.checklists.drills_port import PackageCalls, PackageDrills
    return PackageDrills(engine), PackageCalls(engine)


def drill_names(config_dir: Path) -> set[str] | None:
    """The drill scenarios a checklist may name (the drills library and CONFIG/drills), None without drills."""
    try:
        from drills.model import library
    except ImportError:
        return None
    return set(library([config_dir / "drills"]))
