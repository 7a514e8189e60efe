"""The drill manager of a controller process: runs drills (one at a time, as tasks it owns) and fires
their schedules.

It sits below the controller: what it needs from the controller is the small `DrillHost` Protocol
(the controller's adapter is controller.drill_host.EngineDrillHost), and it speaks no HTTP. Its refusals
are its own exceptions (`DrillNotFound`, `DrillInvalid`, `DrillNotStarted`); the HTTP edge maps them to
404, 422 and 409. Every skip is journaled (`drill_skipped`) and notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from ccfo.config.loader import LoadedConfig
from ccfo.config.yamlpos import ConfigError
from ccfo.ports import Claim
from drills.model import ScenarioModel, ScheduleModel, find, library, load_drills_config, load_scenario
from drills.runner import DrillRunner, drill_in_progress, make_runner, new_run_id, why_not_now
from drills.schedule import DrillScheduler
from drills.target import ControllerPort

log = logging.getLogger("ccfo.drills.manager")


class DrillHost(Protocol):
    """What the manager needs from the controller it runs in."""

    cfg: LoadedConfig
    agents: Any  # the executor's agent client (the drill's site target acts through it)
    fencer: Any  # the site's PDU (powering a fenced host back on)
    data_dir: Path  # drills.sqlite (the API's schedules) and reports/drills live here

    def controller(self, who: str, claim: Claim | None = None) -> ControllerPort:
        """The controller acting as `who` (status, plans, approvals, the journal); the plans it starts run
        inside `claim`, the drill run's claim on the site."""
        ...

    async def claim(self, run_id: str, drill: str, who: str) -> tuple[Claim | None, str | None]:
        """Claim the site for a drill run (the one admission every piece of work passes), or None and why
        not (the work holding the site, named)."""
        ...

    async def release(self, claim: Claim) -> None: ...

    async def notify(self, event: str, message: str, data: dict[str, Any]) -> None: ...


class DrillNotFound(LookupError):
    """No drill scenario (or drill run) by that name."""


class DrillInvalid(ValueError):
    """The drill scenario exists but does not validate; the message names the problems."""


class DrillNotStarted(RuntimeError):
    """The drill was not started now (a plan running or proposed, another drill, the site not steady)."""


class DrillManager:
    """Runs drills in the controller process (one at a time) and fires their schedules."""

    def __init__(self, host: DrillHost) -> None:
        self.host, self.cfg = host, host.cfg
        self.runs: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        try:
            schedules = load_drills_config(self.cfg.directory).schedules
        except ConfigError as exc:
            log.error("drills.yaml ignored: %s", exc)
            schedules = []
        self.extra = [Path(self.cfg.directory) / "drills"]  # a site's own drills: CONFIG/drills/*.yaml
        self.scheduler = DrillScheduler(schedules, host.data_dir / "drills.sqlite", self.fire,
                                        lambda name: name in library(self.extra))
        self._started = False
        self._lock = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Start the schedules (once): at the controller's start-up, or at the first request."""
        if not self._started:
            self._started = True
            try:
                await self.scheduler.start()
            except Exception:  # the API keeps serving; the schedules say why in the log
                log.exception("drill schedules not started")

    def library(self) -> dict[str, Path]:
        return library(self.extra)

    def scenario(self, name: str) -> ScenarioModel:
        try:
            return load_scenario(find(name, self.extra), self.cfg)
        except ConfigError as exc:
            if "no drill named" in str(exc):
                raise DrillNotFound(str(exc)) from exc
            raise DrillInvalid(str(exc)) from exc

    def run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            raise DrillNotFound(f"no drill run {run_id} in this controller process")
        return self.runs[run_id]

    async def guard(self, scenario: ScenarioModel) -> str | None:
        """Why the drill must not start now, or None."""
        ctl = self.host.controller("guard")
        why = why_not_now(await ctl.status(), await ctl.plans("proposed"), scenario.steady_state.state)
        other = drill_in_progress(await ctl.history(50), time.time())
        mine = next((f"drill run {run_id} is running" for run_id in self.tasks), None)
        return why or mine or other

    async def skip(self, name: str, why: str, who: str) -> None:
        reason = f"drill {name} skipped: {why}"
        await self.host.controller(who).record("drill_skipped", reason=reason, status="skipped",
                                               data={"drill": name, "why": why})
        await self.host.notify("drill_skipped", reason, {"drill": name})

    async def start(self, name: str, who: str) -> dict[str, Any]:
        """Start drill `name` now as `who`; DrillNotStarted (journaled as skipped) when it must not."""
        scenario = self.scenario(name)
        run_id = new_run_id(name)
        why = await self.guard(scenario)  # a drill that cannot run now does not hold the site, even briefly
        claim, why = await self.host.claim(run_id, name, who) if not why else (None, why)
        async with self._lock:  # the guard and the start, as one: two requests cannot both pass
            why = why or await self.guard(scenario)  # again, holding the claim
            runner: DrillRunner | None = None
            try:
                runner = None if why else make_runner(
                    scenario, self.cfg, self.host.controller(who, claim), self.host.agents, self.host.fencer,
                    lab_dir=None, reports_dir=self.host.data_dir / "reports" / "drills", who=who, run_id=run_id)
            except Exception as exc:  # no lab running, unreadable drills.yaml: say so, start nothing
                why = f"{type(exc).__name__}: {exc}"
            if why or runner is None or claim is None:
                if claim is not None:
                    await self.host.release(claim)
                await self.skip(name, why or "not startable", who)
                raise DrillNotStarted(f"drill {name} not started: {why}")
            rec: dict[str, Any] = {"id": run_id, "drill": name, "status": "running", "by": who, "report": None}
            self.runs[run_id] = rec
            self.tasks[run_id] = asyncio.create_task(self._run(rec, runner, claim), name=f"drill-{run_id}")
        return rec

    async def _run(self, rec: dict[str, Any], runner: DrillRunner, claim: Claim) -> None:
        try:
            doc = await runner.run()
            rec.update(status=doc["status"], report=doc)
        except asyncio.CancelledError:
            rec["status"] = "cancelled"
            raise
        except Exception as exc:
            log.exception("drill run %s crashed", rec["id"])
            rec.update(status="error", error=str(exc))
        finally:
            self.tasks.pop(rec["id"], None)
            await self.host.release(claim)
            with contextlib.suppress(Exception):
                await runner.target.aclose()

    async def stop(self) -> None:
        """Cancel the runs in progress (their runners kill their SIPp processes) and the schedules."""
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await task
        await self.scheduler.stop()

    async def fire(self, schedule: ScheduleModel) -> None:
        who = f"schedule {schedule.id}"
        try:
            await self.start(schedule.drill, who)
        except (DrillNotStarted, DrillNotFound, DrillInvalid) as exc:  # skipped (journaled, notified) or invalid
            log.warning("scheduled drill %s (%s): %s", schedule.drill, schedule.id, exc)
