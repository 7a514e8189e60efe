"""The way back of a drill: what runs after the fault, always, even when an expectation failed.

In order: wait for a running plan to end; reject the proposals the drill caused; undo the fault where the
controller did not (clear the alarm, start the driver unless the controller isolated the board, power a
fenced host on at the PDU or reconnect it, bring the database site up, hang up the lab's calls); fail
back when a host is not in its home duty (or always/never, as the scenario says); restart a stopped or
crashed service if its host's duty still runs it; reject what was proposed meanwhile. Each action is
one sentence of the step's detail in the report.

What it must not do: start CTI/IVR outside a plan on a host that is not active (the failback plan does
that, with the controller's safety ordering), or approve anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ccfo.domain.site import Duty
from drills.expect import StepFailed
from drills.model import FaultKind
from drills.target import ControllerError

if TYPE_CHECKING:
    from drills.runner import DrillRunner

POLL_S = 0.2
TERMINAL = ("finished", "failed", "aborted", "rejected", "superseded")


class WayBack:
    def __init__(self, runner: DrillRunner) -> None:
        self.r = runner

    async def wait_plan(self, plan_id: str, deadline: float) -> dict[str, Any]:
        plan: dict[str, Any] = {}

        async def done() -> bool:
            nonlocal plan
            plan = await self.r.ctl.plan(plan_id)
            return plan.get("status") in TERMINAL

        await self.r.poll(done, deadline)
        return plan

    async def run(self) -> str:
        wb, f = self.r.s.way_back, self.r.s.fault
        deadline = time.monotonic() + wb.within_s
        if self.r.load is not None:
            await self.r.load.enter("way_back")
        if not await self.r.poll(self._no_running_plan, deadline):
            raise StepFailed("a plan is still running; the way back cannot start")
        actions = await self.r.reject_own_proposals()
        if wb.restore:
            actions += await self._restore(deadline)
        status = await self.r.ctl.status()
        if wb.failback == "always" or (wb.failback == "auto" and not _home(status)):
            actions.append(await self._failback(deadline))
        if wb.restore and f.kind in (FaultKind.SERVICE_CRASH, FaultKind.SERVICE_STOP, FaultKind.SERVICE_HANG):
            actions += await self._restart_service()
        actions += await self.r.reject_own_proposals()
        return "; ".join(actions) or "nothing to undo"

    async def _no_running_plan(self) -> bool:
        return not (await self.r.ctl.status()).get("running_plan")

    async def _restore(self, deadline: float) -> list[str]:
        f, t = self.r.s.fault, self.r.target
        host = f.host or ""
        match f.kind:
            case FaultKind.SPAN_ALARM:
                return [await t.span(host, f.span or 1, "clear")]
            case FaultKind.BOARD_DOWN:
                if (await self.r.ctl.status())["hosts"][host]["board_isolated"]:
                    return [f"the board of {host} is isolated by the controller: the failback restores it"]
                return [await t.board(host, up=True)]
            case FaultKind.HOST_UNREACHABLE:
                done = [await t.power_on(host)] if await t.powered_off(host) else [await t.reachable(host, up=True)]
                if not await self.r.poll(lambda: self._reachable(host), deadline):
                    raise StepFailed(f"{host} did not report again after: {done[0]}")
                return done
            case FaultKind.DB_DOWN:
                return [await t.db(self.r.fault_db or "", up=True)]
            case FaultKind.SERVICE_HANG:  # handled: the plan killed it; not handled: resume it (SIGCONT)
                try:
                    return [await t.service(host, f.service or "", "resume")]
                except Exception as exc:  # the lab's "not running": the plan's escalation killed it
                    return [f"{f.service} on {host} no longer hung ({exc})"]
            case FaultKind.SWITCHOVER if f.calls_in_progress:
                await t.calls((await self.r.ctl.status()).get("active_host") or "", 0, 0)
        return []

    async def _reachable(self, host: str) -> bool:
        return bool((await self.r.ctl.status())["hosts"][host]["reachable"])

    async def _failback(self, deadline: float) -> str:
        plan: dict[str, Any] | None = None
        while plan is None:
            try:
                plan = await self.r.ctl.failback(f"{self.r.reason}: way back", self.r.s.way_back.drain_timeout_s)
            except ControllerError as exc:  # e.g. a plan proposed a moment ago: reject it and retry
                if "already in its normal state" in str(exc):
                    return "nothing to fail back: the site is in its normal state"
                if time.monotonic() >= deadline:
                    raise StepFailed(f"failback refused: {exc}") from exc
                await self.r.reject_own_proposals()
                await asyncio.sleep(POLL_S)
        self.r.plan_roles[plan["id"]] = "way back"
        done = await self.wait_plan(plan["id"], deadline)
        if done.get("status") != "finished":
            raise StepFailed(f"failback plan {plan['id']} {done.get('status')}: {done.get('error')}")
        return f"failback plan {plan['id']} finished"

    async def _restart_service(self) -> list[str]:
        f = self.r.s.fault
        status = await self.r.ctl.status()
        h = status["hosts"][f.host]
        runs = f.service in self.r.cfg.site.host(f.host or "").layout(Duty(h["duty"]))
        if runs and h["services"].get(f.service) != "active":
            return [await self.r.target.service(f.host or "", f.service or "", "start")]
        return []


def _home(status: dict[str, Any]) -> bool:
    """Every host in its home duty with its board in service."""
    return all(h["duty"] == h["role"] and not h["board_isolated"] for h in status["hosts"].values())


