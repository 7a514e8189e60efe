"""A running engine (control loop and all) over the in-memory world, with a pump that pushes fresh
reports like agents do: for the API, checklist and drill tests that need the loop alive on real time.
The engine's own unit tests (test_engine.py) do not use it: they drive `cycle()` on a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from ccfo.config.loader import load_config
from ccfo.domain.health import ServiceState
from ccfo.domain.state import Mode, SiteState
from controller.engine import Engine
from controller.events import EventBus
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.controller.fakeworld import FakeWorld

REPO = Path(__file__).resolve().parents[2]


class Harness:
    """Engine + executor over a FakeWorld, with a pump that pushes fresh reports like agents do."""

    def __init__(self, tmp: Path, mode: Mode = Mode.SUPERVISED) -> None:
        cfg = load_config(REPO / "config")
        model = cfg.site_model.model_copy(update={"controller": cfg.site_model.controller.model_copy(
            update={"mode": mode, "poll_interval_s": 0.05, "heartbeat_s": 0.2})})
        rules = cfg.rules_model
        # every fault kind on the rules' own (shortened) debounce, crashes included (rules.yaml lets those act
        # at once)
        policy = replace(cfg.policy, rules=tuple(replace(r, debounce_s=0.2, debounce_by_fault={})
                                                 for r in cfg.policy.rules))
        self.cfg = replace(cfg, site_model=model, policy=policy, rules_model=rules)
        self.tmp = tmp
        self.world = FakeWorld(cfg.site, SiteState.normal(cfg.site, mode))
        self._pump: asyncio.Task[None] | None = None
        self.open()

    def open(self) -> None:
        self.journal, self.store = Journal(self.tmp / "j.sqlite"), Store(self.tmp / "s.sqlite")
        ex = Executor(self.world, self.world, self.world, self.journal, self.store, host_ids=self.cfg.site.host_ids)
        self.engine = Engine(self.cfg, self.store, self.journal, ex, EventBus())

    async def start(self) -> None:
        await self.engine.start()
        self._pump = asyncio.create_task(self.pump())

    async def pump(self) -> None:
        while True:
            for host in self.cfg.site.host_ids:
                try:
                    report = await self.world.report(host)
                    self.engine.ingest(replace(report, received_at=time.time()))
                except Exception:
                    pass
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._pump:
            self._pump.cancel()
        await self.engine.stop()
        self.journal.close()
        self.store.close()

    def crash(self, host: str, service: str) -> None:
        self.world.hosts[host].services[service] = ServiceState.FAILED

    def plans(self, status: PlanStatus) -> list:
        return self.store.plans({status})
