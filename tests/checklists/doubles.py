"""TEST DOUBLES for the checklist runner's drill and call-test ports, and an injected clock.

`DrillsTestDouble` and `CallsTestDouble` stand in for the drills package (drill scenarios and SIPp test
calls) where a test is about the checklist runner, not about drills: they pass or fail as scripted,
record what they were asked to run, and can be held open (`gate`) to catch a step mid-run. They are
never used by the controller itself: without the drills package it fails drill and call-test steps
with "drills not available" (controller.checklists.ports.Unavailable).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from controller.checklists.ports import CallOutcome, DrillOutcome
from controller.checklists.specs import CallTestSpec


@dataclass
class FakeClock:
    """Injected wall clock for event timestamps: moves only when the test says so."""

    t: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t

    def tick(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class DrillsTestDouble:
    """A scripted stand-in for drills.runner: `failing` names fail; a set `gate` holds every run open."""

    report_dir: Path | None = None
    failing: set[str] = field(default_factory=set)
    ran: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, name: str) -> DrillOutcome:
        self.ran.append(name)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        passed = name not in self.failing
        path = None
        if self.report_dir is not None:
            path = self.report_dir / f"{name}.md"
            path.write_text(f"# drill {name} (TEST DOUBLE)\n\nresult: {'pass' if passed else 'FAIL'}\n")
        return DrillOutcome(passed, str(path) if path else None,
                            f"TEST DOUBLE drill {name}: {'passed' if passed else 'failed'}",
                            {"test_double": True})


@dataclass
class CallsTestDouble:
    """A scripted stand-in for the drills package's SIPp test calls."""

    failing: set[str] = field(default_factory=set)  # call kinds that fail: inbound, outbound, agent_answer
    ran: list[str] = field(default_factory=list)

    async def run(self, spec: CallTestSpec) -> CallOutcome:
        self.ran.append(spec.call.value)
        passed = spec.call.value not in self.failing
        return CallOutcome(passed, f"TEST DOUBLE: {spec.calls} {spec.call.value} call(s) "
                                   f"{'answered' if passed else 'not answered'}", None, {"test_double": True})
