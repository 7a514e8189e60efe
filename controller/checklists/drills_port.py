"""The checklist's drill and call-test ports over the drills package, in the controller process.

`PackageDrills.run(name)` runs a drill scenario the way the drills API does (drills.runner.make_runner with
the engine as its controller, the executor's agents and PDU as its target, the lab's control API for a
lab drill) and waits for its report: passed, the Markdown report's path, the summary line.
`PackageCalls.run(spec)` places inbound / outbound / agent-answer test calls with the drills package's
SIPp plan (drills.yaml `sip`, or the lab's). Anything missing or refused comes back as a failed outcome
that says so, never an exception.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from ccfo.config.yamlpos import ConfigError
from controller.admission import claim_drill
from controller.checklists.ports import CallOutcome, DrillOutcome
from controller.checklists.specs import CallKind, CallTestSpec
from controller.drill_host import EngineController
from drills.model import find, load_drills_config, load_scenario
from drills.report import summary_line
from drills.runner import make_runner, new_run_id
from drills.sipp import Sip, SippError, sip_plan, workdir_for

log = logging.getLogger("ccfo.checklists")
WHO = "checklist runner"


def _reports(engine: Any, kind: str) -> Path:
    return Path(engine.journal.path).parent / "reports" / kind


class PackageDrills:
    def __init__(self, engine: Any, who: str = WHO) -> None:
        self.engine, self.who = engine, who

    async def run(self, name: str) -> DrillOutcome:
        cfg, ex = self.engine.cfg, self.engine.executor
        run_id = new_run_id(name)
        claim, why = await claim_drill(self.engine.claims, run_id, name, self.who)  # one piece of work at a time
        if claim is None:
            return DrillOutcome(False, None, f"drill {name} not started: {why}")
        try:
            scenario = load_scenario(find(name, [Path(cfg.directory) / "drills"]), cfg)
            runner = make_runner(scenario, cfg, EngineController(self.engine, self.who, claim), ex.agents,
                                 ex.fencer, lab_dir=None, reports_dir=_reports(self.engine, "drills"), who=self.who,
                                 run_id=run_id)
        except ConfigError as exc:
            await self.engine.claims.release(claim)
            return DrillOutcome(False, None, f"drill {name}: {exc}")
        except Exception as exc:  # no lab running, drills.yaml unreadable, the package changed
            await self.engine.claims.release(claim)
            return DrillOutcome(False, None, f"drill {name} not started: {type(exc).__name__}: {exc}")
        try:
            doc = await runner.run()
        finally:
            await self.engine.claims.release(claim)
            with contextlib.suppress(Exception):
                await runner.target.aclose()
        files = doc.get("files") or {}
        return DrillOutcome(doc.get("status") == "passed", files.get("markdown"), summary_line(doc),
                            {"drill_run": run_id, "status": doc.get("status"), "figures": doc.get("figures") or {}})


class PackageCalls:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def run(self, spec: CallTestSpec) -> CallOutcome:
        cfg = self.engine.cfg
        try:
            plan = sip_plan(cfg, load_drills_config(Path(cfg.directory)))
        except Exception as exc:
            return CallOutcome(False, f"no SIP plan: {type(exc).__name__}: {exc}")
        if plan is None:
            return CallOutcome(False, "no SIP plan: set drills.yaml `sip` (the lab provides its own)")
        host = spec.host or self.engine.state.active_host
        if host is None:
            return CallOutcome(False, "no active host to call")
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{spec.call.value}-{uuid.uuid4().hex[:4]}"
        workdir = workdir_for(_reports(self.engine, "checklists"), run_id)
        try:
            sip = Sip(plan, workdir)
        except SippError as exc:
            return CallOutcome(False, str(exc))
        checks = []
        try:
            for _ in range(spec.calls):
                if spec.call is CallKind.INBOUND:
                    checks.append(await sip.inbound(host))
                elif spec.call is CallKind.OUTBOUND:
                    checks.append(await sip.outbound(host))
                else:
                    checks.append(await sip.agent_answer(host))
        except SippError as exc:
            return CallOutcome(False, f"{spec.call.value} call: {exc}", str(workdir))
        finally:
            await sip.close()
        passed = bool(checks) and all(c.passed for c in checks)
        detail = "; ".join(f"{c.kind} via {c.host}: {c.detail}" for c in checks)
        return CallOutcome(passed, detail, None, {"calls": [c.to_dict() for c in checks], "workdir": str(workdir)})
