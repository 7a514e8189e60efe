"""The fault campaign's controller-cluster side (`ccfo lab campaign --controllers 3 [--partitions]`).

`ClusterFaults` carries out the cluster's events (lab.campaign_plan `HA_WEIGHTS`): the leader killed
(kill -9) or paused (SIGSTOP, then SIGCONT), a named member killed, an etcd member killed, and with the
lab in network namespaces a partition (link cut) of the leader, of a named controller, of an etcd member
or of an IPC host. Each event is whole: the fault, its duration, its repair (restart, SIGCONT, link up).
Around every leader change it snapshots the journal the leaders published on etcd and each member's own
file; after the run's repair it judges (lab.campaign_cluster) that nothing was lost, that no agent ran a
stale term and that no deposed leader acted after its successor began. It also measures each takeover
(fault -> a member leading with a higher term), reported beside the figures, not judged: the dedicated
test and `bench.ha_takeover` hold the `lease_ttl_s + 1 s` bound.

`Members` is how the campaign, as an operator, finds a member to talk to: the one that leads, else any
running one that is neither paused nor cut off (a frozen member would hold every call for its timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.campaign_check import Checker, journal_violations, read_journal
from lab.campaign_cluster import (
    Act,
    EtcdView,
    EtcdViewError,
    acting_violations,
    copy_gaps,
    published_loss,
    read_acts,
    read_copy,
    read_highest_term,
    stale_term_violations,
)
from lab.campaign_plan import Event
from lab.controllers import Leader
from lab.site import LabError, LabSite

log = logging.getLogger("lab.campaign")
KEEP = 10_000  # controller.cluster.journalsync KEEP: entries older than a member's last KEEP leave etcd
CATCH_UP_S = 20.0  # after the repair, every member's copy must hold what was published, within this


class Members:
    """The members the campaign may talk to now, and the one that leads."""

    def __init__(self, lab: LabSite) -> None:
        self.lab = lab
        self.paused: set[str] = set()
        self.cut: set[str] = set()  # controllers and hosts whose link is down
        self.http = httpx.AsyncClient(timeout=1.0)
        self._leader: tuple[float, Leader | None] = (0.0, None)

    def reachable(self) -> list[str]:
        procs = self.lab.procs
        return [n for n in self.lab.controllers.names
                if procs.get(n) and procs[n].alive and n not in self.paused and n not in self.cut]

    async def _answer(self, name: str) -> Leader | None:
        try:
            r = await self.http.get(self.lab.controllers.url(name) + "/leader")
            body = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return Leader(name, body.get("term"), self.lab.controllers.url(name)) if body is not None else None

    async def leader(self, fresh: bool = False) -> Leader | None:
        """The member leading now among the reachable ones (cached for 0.5 s unless `fresh`)."""
        at, cached = self._leader
        if not fresh and cached is not None and time.monotonic() - at < 0.5 and cached.name in self.reachable():
            return cached
        names = self.reachable()
        answers = await asyncio.gather(*(self._answer(n) for n in names))
        leading = [a for a in answers if a is not None]
        lead = max(leading, key=lambda ld: ld.term or 0) if leading else None
        self._leader = (time.monotonic(), lead)
        return lead

    async def base(self) -> str:
        """Where an operator's call goes: the leader, else any reachable member (it forwards or says 503)."""
        lead = await self.leader()
        if lead is not None:
            return lead.url
        names = self.reachable()
        if not names:
            raise LabError("no controller member is reachable")
        return self.lab.controllers.url(names[0])

    def forget(self) -> None:
        self._leader = (0.0, None)

    async def wait_leader(self, timeout: float, above: int = 0) -> Leader:
        deadline = time.monotonic() + timeout
        while True:
            lead = await self.leader(fresh=True)
            if lead is not None and (lead.term or 0) > above:
                return lead
            if time.monotonic() >= deadline:
                raise LabError(f"no member leads with a term above {above} within {timeout:g} s")
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class Snapshot:
    """What was there just before a leader change: the published journal (key -> document), and for a
    member about to be killed, its own file's rows."""

    event: str
    published: dict[str, str]
    own: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


class ClusterFaults:
    def __init__(self, lab: LabSite, checker: Checker, members: Members, site: str) -> None:
        self.lab, self.checker, self.members, self.site = lab, checker, members, site
        lay = lab.layout
        self.view = EtcdView([f"http://{a}:{lay.etcd_client_port}" for a in lay.etcd_addresses], site)
        self.snapshots: list[Snapshot] = []
        self.acts: dict[tuple[str, str], Act] = {}
        self.takeovers: list[float] = []
        self.figures: Counter[str] = Counter()
        self.overlaps = 0
        self.etcd_down: set[str] = set()
        self._judged: dict[str, int] = {}  # host ("" for all) -> actions judged so far
        self._said: set[str] = set()

    # --- observations -------------------------------------------------------------------------------
    def journal_path(self, member: str) -> Path:
        return self.lab.layout.root / "var" / f"journal-{member}.sqlite"

    def _published(self) -> dict[str, str]:
        return {key: text for key, _rev, text in self.view.journal()}

    async def snapshot(self, event: str, killed: str | None = None) -> Snapshot:
        published = await asyncio.to_thread(self._published)
        own = {}
        if killed is not None:
            own[killed] = await asyncio.to_thread(read_journal, self.journal_path(killed))
        snap = Snapshot(event, published, own)
        self.snapshots.append(snap)
        return snap

    # --- the events ---------------------------------------------------------------------------------
    async def do(self, ev: Event, mid_plan_wait: Any) -> str:
        a = ev.args
        if ev.kind in ("leader_kill", "leader_pause"):
            when = "now"
            if a[0] == "mid-plan":
                when = "mid-plan" if await mid_plan_wait() else "now (no plan ran within 3 s)"
            lead = await self.members.leader(fresh=True)
            if lead is None:
                return "skipped: no member leads now"
            if ev.kind == "leader_kill":
                return await self._kill(lead.name, float(a[1]), when, lead.term)
            return await self._pause(lead.name, float(a[1]), when, lead.term)
        if ev.kind == "member_kill":
            lead = await self.members.leader(fresh=True)
            name = a[0]
            if not (self.lab.procs.get(name) and self.lab.procs[name].alive):
                return f"skipped: {name} is not running"
            was = lead is not None and lead.name == name
            return await self._kill(name, float(a[1]), "leader" if was else "follower",
                                    lead.term if was and lead else None)
        if ev.kind == "etcd_kill":
            return await self._etcd_kill(a[0], float(a[1]))
        if ev.kind == "partition":
            return await self._partition(a[0], float(a[1]))
        raise ValueError(f"not a cluster event: {ev.kind}")

    async def _takeover(self, above: int | None, t0: float) -> str:
        """Wait for a member to lead with a term above `above`; the time it took, as a figure."""
        if above is None:
            return ""
        try:
            lead = await self.members.wait_leader(30.0, above)
        except LabError as exc:
            self.figures["no takeover within 30 s"] += 1
            return f"; {exc}"
        took = time.monotonic() - t0
        self.takeovers.append(took)
        self.figures["leader changes"] += 1
        return f"; {lead.name} leads (term {lead.term}) {took:.2f} s after"

    async def _kill(self, name: str, dead_s: float, when: str, term: int | None) -> str:
        await self.snapshot(f"{name} killed ({when})", killed=name)
        t0 = time.monotonic()
        await self.lab.kill_controller(name)
        self.members.forget()
        # the takeover is timed meanwhile: a member back before the old lease ran out may win it itself
        takeover = asyncio.create_task(self._takeover(term, t0))
        try:
            await asyncio.sleep(max(0.0, dead_s - (time.monotonic() - t0)))
            await self.lab.start_controller(name)
            back = time.monotonic() - t0
            self._check_own(name)
        finally:
            taken = await takeover
        return f"done: {name} killed ({when}), restarted after {back:.2f} s{taken}"

    def _check_own(self, name: str) -> None:
        """A killed member's own file keeps every row it had (kill -9 loses nothing already written)."""
        for snap in self.snapshots:
            before = snap.own.pop(name, None)
            if before is None:
                continue
            after = read_journal(self.journal_path(name))
            self.checker.count("journal", len(before))
            for bad in journal_violations(before, after):
                self.checker.violation("journal", f"{name}: {bad}")

    async def _pause(self, name: str, paused_s: float, when: str, term: int | None) -> str:
        await self.snapshot(f"{name} paused ({when})")
        t0 = time.monotonic()
        self.lab.pause_controller(name)
        self.members.paused.add(name)
        self.members.forget()
        try:
            deadline = t0 + paused_s
            taken = ""
            if paused_s > self.lab.layout.lease_ttl_s:  # its lease runs out: another must lead
                taken = await self._takeover(term, t0)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            self.lab.resume_controller(name)
            self.members.paused.discard(name)
            self.members.forget()
        return f"done: {name} paused ({when}) for {paused_s:.2f} s, resumed{taken}"

    async def _etcd_kill(self, name: str, dead_s: float) -> str:
        if name in self.etcd_down:
            return f"skipped: etcd member {name} is down"
        await self.snapshot(f"etcd member {name} killed")
        t0 = time.monotonic()
        await self.lab.kill_etcd(name)
        self.etcd_down.add(name)
        await asyncio.sleep(dead_s)
        await self.lab.start_etcd(name)
        self.etcd_down.discard(name)
        return f"done: etcd member {name} killed, healthy again after {time.monotonic() - t0:.2f} s"

    async def _partition(self, target: str, cut_s: float) -> str:
        kind, _, name = target.partition(":")
        term = None
        if kind == "leader":
            lead = await self.members.leader(fresh=True)
            if lead is None:
                return "skipped: no member leads now"
            name, term = lead.name, lead.term
        elif kind == "controller":
            lead = await self.members.leader(fresh=True)
            term = lead.term if lead is not None and lead.name == name else None
        if kind in ("leader", "controller") and not (self.lab.procs.get(name) and self.lab.procs[name].alive):
            return f"skipped: {name} is not running"
        if kind == "host" and not self.lab.powered.get(name, True):
            return f"skipped: {name} is powered off"
        await self.snapshot(f"{name} cut off")
        t0 = time.monotonic()
        await self.lab.partition(name)
        self.members.cut.add(name)
        self.members.forget()
        try:
            taken = await self._takeover(term, t0) if cut_s > self.lab.layout.lease_ttl_s else ""
            await asyncio.sleep(max(0.0, t0 + cut_s - time.monotonic()))
        finally:
            await self.lab.heal(name)
            self.members.cut.discard(name)
            self.members.forget()
        return f"done: {name} cut off for {cut_s:.2f} s{taken}"

    # --- repair and judgement -------------------------------------------------------------------------
    async def repair(self, notes: list[str]) -> None:
        """Whatever an event left (a timeout mid-event): every member running, resumed, linked; etcd whole."""
        for name in list(self.members.paused):
            with contextlib.suppress(LabError):
                self.lab.resume_controller(name)
            self.members.paused.discard(name)
            notes.append(f"{name} resumed")
        for name in sorted(self.lab.partitioned):
            await self.lab.heal(name)
            self.members.cut.discard(name)
            notes.append(f"{name}'s link restored")
        for name in list(self.etcd_down):
            await self.lab.start_etcd(name)
            self.etcd_down.discard(name)
            notes.append(f"etcd member {name} started")
        for name in self.lab.controllers.names:
            if not (self.lab.procs.get(name) and self.lab.procs[name].alive):
                await self.lab.start_controller(name)
                self._check_own(name)
                notes.append(f"{name} restarted")
        self.members.forget()
        await self.members.wait_leader(30.0)

    async def judge(self) -> None:
        """After the run's repair: the journal across this run's leader changes, and the agents' terms."""
        snaps, self.snapshots = self.snapshots, []
        for snap in snaps:
            for name in list(snap.own):  # a member killed but never restarted cannot be: the repair starts it
                self._check_own(name)
        if snaps:
            await asyncio.to_thread(self._judge_journal, snaps)
        await asyncio.to_thread(self._judge_terms)

    def _judge_journal(self, snaps: list[Snapshot]) -> None:
        try:
            now = self._published()
        except EtcdViewError as exc:
            self.checker.violation("journal", f"etcd unreadable after the repair: {exc}")
            return
        highest: dict[str, int] = {}
        for key in now:
            member, _, ident = key.rpartition("/")
            m = member.rpartition("/")[2]
            highest[m] = max(highest.get(m, 0), int(ident))
        trimmed = {m: top - KEEP for m, top in highest.items()}
        wanted: dict[str, dict[str, Any]] = {}
        for snap in snaps:
            self.checker.count("journal", len(snap.published))
            for bad in published_loss(snap.published, now, trimmed):
                self.checker.violation("journal", f"{snap.event}: {bad}")
            for key, text in snap.published.items():
                if key in now:
                    wanted[key] = json.loads(text)
        deadline = time.monotonic() + CATCH_UP_S
        for member in self.lab.controllers.names:
            while True:
                gaps = copy_gaps(member, wanted, read_copy(self.journal_path(member), member, self.site))
                if not gaps or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            for bad in gaps[:5]:
                self.checker.violation("journal", f"{CATCH_UP_S:g} s after the repair: {bad}")

    def _judge_terms(self) -> None:
        lay = self.lab.layout
        for host in self.lab.site["hosts"]:
            state = lay.host_dir(host) / "agent"
            for act in read_acts(host, state):
                self.acts[(host, act.action_id)] = act
            highest = read_highest_term(state)
            mine = [a for (h, _), a in self.acts.items() if h == host]
            self.checker.count("stale_term", len(mine) - self._judged.get(host, 0))  # the new ones
            self._judged[host] = len(mine)
            for bad in stale_term_violations(host, mine):
                if bad not in self._said:
                    self._said.add(bad)
                    self.checker.violation("stale_term", bad)
            top = max((a.term for a in mine if a.term is not None), default=None)
            if top is not None and (highest is None or highest < top):
                self.checker.violation("stale_term", f"{host} ran term {top} but its term file says {highest}")
        bad_acting, self.overlaps = acting_violations(self.acts.values())
        self.checker.count("one_leader", len(self.acts) - self._judged.get("", 0))
        self._judged[""] = len(self.acts)
        for bad in bad_acting:  # judged over every action so far: each said once
            if bad not in self._said:
                self._said.add(bad)
                self.checker.violation("one_leader", bad)

    def refusals(self) -> int:
        """Agent 409s (stale term) the members journaled, each in its own file (a deposed leader's entries
        stay local)."""
        total = 0
        for member in self.lab.controllers.names:
            with contextlib.suppress(OSError, sqlite3.Error):
                total += sum(1 for r in read_journal(self.journal_path(member)) if "TermRefused" in str(r[10] or ""))
        return total

    def report(self) -> dict[str, Any]:
        t = sorted(self.takeovers)
        return {"leader_changes": len(t), **dict(self.figures),
                "takeover_s": {"median": round(statistics.median(t), 2), "max": round(t[-1], 2),
                               "over_ttl_plus_1s": sum(1 for x in t if x > self.lab.layout.lease_ttl_s + 1.0)}
                if t else {},
                "agent_actions_judged": len(self.acts), "older_term_actions_overlapping": self.overlaps,
                "stale_term_refusals_journaled": self.refusals()}

    def close(self) -> None:
        self.view.close()
