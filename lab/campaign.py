"""`ccfo lab campaign`: the randomized fault campaign on one live lab.

One lab comes up for the whole campaign; then each run draws its events from its seed
(lab.campaign_plan), carries them out under a steady SIPp call load and a stream of FastAGI admission
requests for agent transfers (admitted ones are really set up in the lab AMI server), repairs the site
and requires it to return to normal. The independent checker (lab.campaign_check) watches throughout.
A failing run prints its seed, its index and the command that replays it.

Campaign-only settings, so runs on one controller stay independent: every rule's debounce is short,
the automatic-action hold-down is 5 s and the flap window 20 s (the site's 600 s and 300 s would turn
every run after the first into "report only").

With `controllers=3` the lab runs a controller cluster on a 3-member etcd and the draw gives way to the
cluster's events (lab.campaign_ha: leader kill -9 and SIGSTOP, member and etcd member kills, with
`partitions` link cuts in network namespaces); the checker reads the journal and the plan records from
etcd and adds the cluster's invariants (lab.campaign_cluster). The operator's calls go to the member that
leads (lab.campaign_ha `Members`).

What it must not do: judge from the controller's API (only the checker judges, from the lab itself);
leave a process behind (everything it starts is stopped in `finally`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from lab.campaign_check import (
    CRITICAL,
    HANDLE_S,
    Checker,
    Hang,
    Load,
    critical_hosts,
    hang_verdict,
    normal_violations,
    running,
)
from lab.campaign_ha import ClusterFaults, Members
from lab.campaign_plan import Event, Topology, draw_run, replay_command
from lab.labconfig import LabLayout
from lab.site import REPO, LabError, LabSite, Proc

log = logging.getLogger("lab.campaign")
REASON = "fault campaign"
CLUSTER_EVENTS = ("leader_kill", "leader_pause", "member_kill", "etcd_kill", "partition")


@dataclass
class Settings:
    runs: int = 200
    seed: str = "1"
    only_run: int | None = None
    root: Path = Path(".lab-campaign")
    net: str = "127.0.7"
    controller_listen: str = "127.0.7.100:8080"
    debounce_s: float = 0.5
    hold_down_s: float = 5.0
    flap_window_s: float = 20.0
    load_cps: float = 2.0
    repair_timeout_s: float = 90.0
    sip_load: bool = True
    progress: bool = True
    weights: dict[str, float] = field(default_factory=dict)  # event kind -> weight, over lab.campaign_plan's
    controllers: int = 1  # 3: a controller cluster on etcd, with the cluster's events
    partitions: bool = False  # the lab in network namespaces (needs root and controllers=3): link cuts

    def run_indices(self) -> list[int]:
        return [self.only_run] if self.only_run is not None else list(range(self.runs))

    def replay(self, run: int) -> str:
        cluster = (f" --controllers {self.controllers}" if self.controllers > 1 else "") + (
            " --partitions" if self.partitions else "")
        return replay_command(self.seed, run, self.weights) + cluster


@dataclass
class RunResult:
    run: int
    events: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    plans_started: int = 0
    duration_s: float = 0.0
    repair: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)


def _signal_group(pid: int, sig: int) -> None:
    """Signal a stand-in's process group (the daemon and, for the IVR, its SIP endpoint)."""
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def campaign_source(root: Path, s: Settings) -> Path:
    """The example site's config with the campaign's hold-down and flap window (see the module doc)."""
    src = root / "source"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(REPO / "config", src)
    rules = yaml.safe_load((src / "rules.yaml").read_text())
    rules["policy"]["hold_down_s"] = s.hold_down_s
    rules["policy"].setdefault("flap", {})["window_s"] = s.flap_window_s
    (src / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    return src


def campaign_layout(s: Settings) -> LabLayout:
    """The campaign's lab layout (the same before the loop, for `enter_world`, and inside it)."""
    return LabLayout(s.root.resolve() / "lab", net=s.net, controller_listen=s.controller_listen,
                     debounce_s=s.debounce_s, controllers=s.controllers, netns=s.partitions)


class Controller:
    """The operator's view of the controller API (what the campaign does, never what it judges)."""

    def __init__(self, lab: LabSite, members: Members | None = None) -> None:
        self.lab = lab
        self.members = members  # a cluster: each call goes to the member that leads (or a reachable one)
        self.http = httpx.AsyncClient(timeout=5.0)

    async def _url(self, path: str) -> str:
        return (await self.members.base() if self.members is not None else self.lab.api) + path

    def _h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.lab.token(role)}"}

    async def status(self) -> dict[str, Any] | None:
        try:
            r = await self.http.get(await self._url("/api/v1/status"), headers=self._h("viewer"))
            return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError, LabError):
            return None

    async def plans(self, status: str) -> list[dict[str, Any]]:
        r = await self.http.get(await self._url("/api/v1/plans"), params={"status": status},
                                headers=self._h("viewer"))
        r.raise_for_status()
        return r.json()["plans"]  # type: ignore[no-any-return]

    async def plan(self, plan_id: str) -> dict[str, Any]:
        r = await self.http.get(await self._url(f"/api/v1/plans/{plan_id}"), headers=self._h("viewer"))
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def post(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        return await self.http.post(await self._url(path), json={**body, "reason": REASON}, headers=self._h(role))

    async def mode(self, mode: str) -> httpx.Response:
        return await self.http.put(await self._url("/api/v1/mode"), json={"mode": mode, "reason": REASON},
                                   headers=self._h("admin"))

    async def aclose(self) -> None:
        await self.http.aclose()


def _said(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail", "")
    except ValueError:
        detail = r.text
    return f"HTTP {r.status_code}" + (f": {str(detail)[:120]}" if r.status_code >= 300 else "")


async def agi_admit(host: str, port: int, timeout: float = 3.0) -> dict[str, str]:
    """Asterisk's side of `AGI(agi://HOST:PORT/admit?kind=agent)`: the variables the server set."""
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races with the inner
    # read finishing, and the admissions task would never stop (the campaign hung on it once).
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
    env = {"agi_network": "yes", "agi_network_script": "admit?kind=agent",
           "agi_request": f"agi://{host}:{port}/admit?kind=agent", "agi_channel": "DAHDI/i1/13800000000-1",
           "agi_uniqueid": f"{time.time():.3f}", "agi_context": "ivr-menu", "agi_extension": "200",
           "agi_priority": "4"}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    found: dict[str, str] = {}
    try:
        while True:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
            if not line:
                break
            name, _, value = line.decode().strip().removeprefix("SET VARIABLE ").partition(" ")
            found[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            writer.write(b"200 result=1\n")
    finally:
        writer.close()
    return found


class Campaign:
    def __init__(self, s: Settings) -> None:
        self.s = s
        root = s.root.resolve()
        self.layout = campaign_layout(s)
        self.source = campaign_source(root, s)
        self.lab = LabSite(self.layout, self.source)
        self.members = Members(self.lab) if self.layout.clustered else None
        self.ctl = Controller(self.lab, self.members)
        self.cluster: ClusterFaults | None = None
        self.http = httpx.AsyncClient(timeout=1.0)
        self.checker = Checker({}, self.layout.root / "var" / "journal.sqlite",
                               self.layout.root / "var" / "state.sqlite")
        self.topo: Topology | None = None
        self.kinds: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.agi: Counter[str] = Counter()
        self.results: list[RunResult] = []
        self.hung: dict[tuple[str, str], int] = {}
        self.run_hangs: list[dict[str, Any]] = []  # this run's SIGSTOPs, judged by the checker before the repair
        self._hang_watch: list[asyncio.Task[None]] = []
        self.unreachable: set[str] = set()
        self.load: Any = None
        self.sip: Any = None
        self.load_note = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self.t0 = time.monotonic()
        self._admitting = False

    # --- the whole campaign -------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        t0 = self.t0 = time.monotonic()
        try:
            await self.lab.up()
            self.topo = Topology.from_site(self.lab.site)
            if self.members is not None:
                self._start_cluster()
            self.checker.run_dirs = {h: self.layout.run_dir(h) for h in self.lab.site["hosts"]}
            await self._wait(self._normal, 60, "the lab to come up normal")
            self.checker.start()
            self._tasks.append(asyncio.create_task(self._sample_ami(), name="campaign-ami"))
            await self._start_load()
            for i in self.s.run_indices():
                result = await self.one_run(i)
                self.results.append(result)
                self._print_run(result)
        finally:
            await self._shutdown()
        return self.report(time.monotonic() - t0)

    def _start_cluster(self) -> None:
        """The cluster's faults and judges; the checker reads the journal and the plans from etcd."""
        assert self.members is not None and self.topo is not None
        self.cluster = ClusterFaults(self.lab, self.checker, self.members, str(self.lab.site["site"]["name"]))
        etcd = tuple(m["name"] for m in self.lab.controllers.summary()["etcd"])
        self.topo = self.topo.with_cluster(etcd, self.s.partitions)
        self.checker.journal_reader = self.cluster.view.journal_rows
        self.checker.plans_reader = self.cluster.view.plans

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.load is not None:
            with contextlib.suppress(Exception):
                await self.load.stop()
        if self.sip is not None:
            with contextlib.suppress(Exception):
                await self.sip.close()
        self.checker.stop()
        for pid in self.hung.values():
            _signal_group(pid, signal.SIGCONT)
        await self.ctl.aclose()
        await self.http.aclose()
        if self.members is not None:
            await self.members.aclose()
        if self.cluster is not None:
            self.cluster.close()
        await self.lab.down()

    async def _start_load(self) -> None:
        """The steady call load (drills.load: SIPp UAC at `load_cps` through the lab's SIP front)."""
        if not self.s.sip_load:
            self.load_note = "no SIP load (disabled)"
            return
        from drills.load import Load as SipLoad
        from drills.sipp import Sip, SippError, SipPlan
        eps = {}
        for host in self.lab.site["hosts"]:
            sipfile = self.layout.run_dir(host) / "ivr.sip"
            kv = dict(x.split("=", 1) for x in sipfile.read_text().split() if "=" in x)
            eps[host] = kv
        first = next(iter(eps.values()))

        def ep(text: str) -> tuple[str, int]:
            h, _, p = text.rpartition(":")
            return h, int(p)

        plan = SipPlan({h: ep(v["sip"]) for h, v in eps.items()}, first["caller"], ep(first["agent"]),
                       ep(first["dialout"]), front=ep(first["front"]),
                       hold_s=float(self.lab.site.get("routing", {}).get("hold_s", 8.0)))
        work = self.layout.root / "sipp"
        work.mkdir(parents=True, exist_ok=True)
        try:
            self.sip = Sip(plan, work)
        except SippError as exc:
            self.load_note = f"no SIP load: {exc}"
            return
        budget = max(600.0, 60.0 * len(self.s.run_indices()) + 600)
        self.load = SipLoad(self.sip, self.s.load_cps, budget)
        await self.load.enter("campaign")

    # --- one run --------------------------------------------------------------------------------

    async def one_run(self, i: int) -> RunResult:
        assert self.topo is not None
        plan = draw_run(self.s.seed, i, self.topo, self.s.weights)
        result = RunResult(i)
        self.checker.run = i
        self.run_hangs = []
        before = len(self.checker.violations)
        since = await asyncio.to_thread(self.checker.last_id)
        t0 = time.monotonic()
        self._admitting = True
        admissions = asyncio.create_task(self._admissions(random.Random(f"{self.s.seed}:{i}:agi")))
        try:
            for ev in plan.events:
                self.kinds[ev.kind] += 1
                started, started_at = time.monotonic(), time.time()
                await self._cluster_disturbs_hangs(ev)
                try:
                    async with asyncio.timeout(45):
                        outcome = await self.do(ev)
                except TimeoutError:
                    outcome = "timed out after 45 s"
                except (LabError, httpx.HTTPError, OSError, KeyError, ValueError) as exc:
                    outcome = f"failed: {type(exc).__name__}: {exc}"
                self._disturb_hangs(ev, started_at)
                self.outcomes[outcome.split(":")[0].split(" ")[0]] += 1
                result.events.append({**ev.to_dict(), "outcome": outcome,
                                      "took_s": round(time.monotonic() - started, 2)})
                await asyncio.sleep(ev.gap_s)
        finally:
            self._admitting = False  # the loop's own stop, should a cancellation be swallowed on its way
            admissions.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(10):
                    await admissions
        result.hangs = await self._judge_hangs()
        result.repair = await self.repair(i)
        if self.cluster is not None:
            await self.cluster.judge()
        result.plans_started = await asyncio.to_thread(self.checker.plans, True, since)
        await asyncio.to_thread(self.checker.one_plan_at_a_time, since)
        result.duration_s = round(time.monotonic() - t0, 2)
        result.violations = self.checker.violations[before:]
        return result

    async def do(self, ev: Event) -> str:
        """Carry out one event; returns what happened (`done`, `refused ...`, `skipped ...`)."""
        lab, a = self.lab, ev.args
        k = ev.kind
        if k in ("span_alarm", "span_clear", "board_down", "board_up") and a[0] in self.unreachable:
            return "skipped: host unreachable (its AMI server is frozen)"
        if k == "span_alarm":
            return "done: " + await lab.inject(a[0], "span", a[1], a[2])
        if k == "span_clear":
            return "done: " + await lab.inject(a[0], "span", a[1], "clear")
        if k in ("board_down", "board_up"):
            return "done: " + await lab.inject(a[0], "board", k.removeprefix("board_"))
        if k == "service_crash":
            try:
                return "done: " + await lab.inject(a[0], "service", a[1], "crash")
            except LabError as exc:
                return f"skipped: {exc}"
        if k == "service_hang":
            return self._hang(a[0], a[1])
        if k in ("unreachable", "reachable"):
            if not lab.powered.get(a[0], True):
                return "skipped: host powered off"
            (self.unreachable.add if k == "unreachable" else self.unreachable.discard)(a[0])
            return "done: " + await lab.inject(a[0], k)
        if k in ("db_down", "db_up"):
            return "done: " + await lab.inject("db", a[0], k.removeprefix("db_"))
        if k == "controller_kill":
            return await self.kill_controller(a[0] == "mid-plan", float(a[1]))
        if k == "agent_restart":
            return await self.restart_agent(a[0])
        if k in CLUSTER_EVENTS:
            if self.cluster is None:
                raise ValueError(f"{k} needs a controller cluster (--controllers 3)")
            host = a[0].partition(":")[2] if k == "partition" and a[0].startswith("host:") else None
            frozen = host in self.unreachable
            if host is not None:  # cut off, its AMI server does not answer the campaign either
                self.unreachable.add(host)
            try:
                return await self.cluster.do(ev, self._plan_running_soon)
            finally:
                if host is not None and not frozen:
                    self.unreachable.discard(host)
        if k == "failover":
            return _said(await self.ctl.post("/api/v1/failover", {"to": a[0]}))
        if k == "switchover":
            return _said(await self.ctl.post("/api/v1/switchover", {"to": a[0], "drain_timeout_s": float(a[1])}))
        if k == "failback":
            return _said(await self.ctl.post("/api/v1/failback", {"drain_timeout_s": float(a[0])}))
        if k in ("approve", "reject"):  # the operator looks for up to 2 s: a proposal may be on its way
            deadline = time.monotonic() + 2.0
            while not (proposed := await self.ctl.plans("proposed")) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if not proposed:
                return "skipped: nothing proposed"
            return _said(await self.ctl.post(f"/api/v1/plans/{proposed[0]['id']}/{k}", {}))
        if k == "mode":
            return _said(await self.ctl.mode(a[0]))
        if k == "burst":
            return await self.burst(a)
        raise ValueError(f"unknown event {k}")

    async def burst(self, requests: tuple[str, ...]) -> str:
        """Several operators (the operator and the admin token, alternately) send their requests in the
        same instant; the checker's one-plan invariant judges what the controller let through."""
        proposed = await self.ctl.plans("proposed")
        calls = []
        for i, req in enumerate(requests):
            kind, *args = req.split(":")
            role = ("operator", "admin")[i % 2]
            if kind == "failover":
                calls.append(self.ctl.post("/api/v1/failover", {"to": args[0]}, role))
            elif kind == "switchover":
                calls.append(self.ctl.post("/api/v1/switchover", {"to": args[0], "drain_timeout_s": float(args[1])},
                                           role))
            elif kind == "failback":
                calls.append(self.ctl.post("/api/v1/failback", {"drain_timeout_s": float(args[0])}, role))
            elif proposed:
                calls.append(self.ctl.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {}, role))
        answers = await asyncio.gather(*calls, return_exceptions=True)
        codes = Counter(a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in answers)
        accepted = sum(n for c, n in codes.items() if isinstance(c, int) and c < 300)
        return f"done: burst of {len(calls)}: {accepted} accepted; " + ", ".join(f"{c}x{n}" for c, n in codes.items())

    def _hang(self, host: str, svc: str) -> str:
        """A hung service: its processes stop (SIGSTOP of the stand-in's group) but stay alive, and its status
        command still says running; only its liveness probe can tell. The checker judges (`Checker.hangs`)
        that a hang of CTI/IVR on the active host is seen within the probe's interval_s x failures + 1 s and
        handled; stop steps must still get rid of it (the agent escalates to SIGKILL)."""
        run_dir = self.layout.run_dir(host)
        try:
            pid = int((run_dir / f"{svc}.pid").read_text().strip())
            already = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
            active = critical_hosts(self.checker.run_dirs)
            at = time.time()
            os.killpg(pid, signal.SIGSTOP)
        except (OSError, ValueError, IndexError) as exc:
            return f"skipped: {host} {svc} not running ({exc})"
        self.hung[(host, svc)] = pid
        probe = self.lab.site["hosts"][host]["services"][svc].get("probe") or {}
        deadline = float(probe.get("interval_s", 1.0)) * int(probe.get("failures", 3)) + 1.0
        excuse = ("already hung" if already else "not CTI/IVR" if svc not in CRITICAL
                  else f"{host} is not the active host" if active != [host]
                  else f"{host}'s agent is frozen" if host in self.unreachable else None)
        hang = {"host": host, "service": svc, "at": at, "deadline_s": deadline, "excuse": excuse, "pid": pid}
        self.run_hangs.append(hang)
        if excuse is None:
            self._hang_watch.append(asyncio.create_task(self._watch_hang(hang)))
        return f"done: {host} {svc} hung (SIGSTOP pid {pid})"

    async def _watch_hang(self, hang: dict[str, Any]) -> None:
        """Just before the detection deadline: is the hung process still there? (A plan or a crash that
        killed it first leaves nothing to detect.)"""
        await asyncio.sleep(max(0.0, hang["at"] + hang["deadline_s"] - 0.1 - time.time()))
        try:
            os.kill(hang["pid"], 0)
        except OSError:
            hang["excuse"] = hang["excuse"] or "the process was gone before the deadline"

    async def _cluster_disturbs_hangs(self, ev: Event) -> None:
        """A leader change while a hang's verdict is pending makes it unjudgeable: the successor starts with
        its own view (it may see the process already killed, `down`, and never journal the `hung` it did
        not see clear). Judged before the event: a hang already handled stays judged."""
        if ev.kind not in CLUSTER_EVENTS or (ev.kind == "partition" and ev.args[0].startswith("host:")):
            return
        open_ = [h for h in self.run_hangs if not h["excuse"]]
        if not open_:
            return
        rows = await asyncio.to_thread(self.checker.rows)
        now = time.time()
        for hang in open_:
            verdict, _ = hang_verdict(Hang(hang["host"], hang["service"], hang["at"], hang["deadline_s"]), rows, now)
            if verdict == "pending":
                hang["excuse"] = f"the controller cluster was disturbed around it ({ev.kind})"

    def _disturb_hangs(self, ev: Event, started_at: float) -> None:
        """An event that takes the controller or the host's agent away around a hang makes it unjudgeable
        (`started_at`: the event's start, Unix time: an event lasting seconds must not outrun the window)."""
        for hang in self.run_hangs:
            if hang["excuse"] or started_at > hang["at"] + hang["deadline_s"] + HANDLE_S:
                continue
            a = ev.args
            if ev.kind == "controller_kill":
                hang["excuse"] = "the controller was killed around it"
            elif ev.kind == "partition" and a[0] == f"host:{hang['host']}":
                hang["excuse"] = f"{hang['host']} was cut off around it"
            elif ev.kind in ("agent_restart", "unreachable") and a and a[0] == hang["host"]:
                hang["excuse"] = f"{hang['host']}'s agent was {ev.kind.replace('_', 'ed ')} around it"
            elif ev.kind == "service_crash" and tuple(a[:2]) == (hang["host"], hang["service"]):
                hang["excuse"] = "the hung process was killed (service_crash)"

    async def _judge_hangs(self) -> list[str]:
        if not self.run_hangs:
            return []
        for task in self._hang_watch:
            with contextlib.suppress(Exception):
                await task
        self._hang_watch = []
        hangs = [Hang(h["host"], h["service"], h["at"], h["deadline_s"], h["excuse"]) for h in self.run_hangs]
        return await asyncio.to_thread(self.checker.hangs, hangs)

    async def _plan_running_soon(self, within_s: float = 3.0) -> bool:
        """Wait up to `within_s` for a plan to run (a mid-plan fault); whether one did."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                plans = await asyncio.to_thread(self.checker.plan_statuses)
                if "running" in plans.values():
                    return True
            await asyncio.sleep(0.05)
        return False

    async def kill_controller(self, mid_plan: bool, dead_s: float) -> str:
        """kill -9 the controller (at once, or as soon as a plan runs), check the journal, restart it."""
        ctl = self.lab.procs["controller"]
        when = "now"
        if mid_plan:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                plans = await asyncio.to_thread(self.checker.plan_statuses)
                if "running" in plans.values():
                    when = "mid-plan"
                    break
                await asyncio.sleep(0.05)
            else:
                when = "now (no plan ran within 3 s)"
        before = await asyncio.to_thread(self.checker.journal_before_kill)
        ctl.signal(signal.SIGKILL)
        if ctl.proc is not None:
            await ctl.proc.wait()
        await asyncio.to_thread(self.checker.journal_after_restart, before)  # nothing lost by the kill itself
        dead = await asyncio.to_thread(self.checker.journal_before_kill)
        await asyncio.to_thread(self.checker.plans, False)
        await asyncio.sleep(dead_s)
        await self.lab._start_controller(60)
        await asyncio.to_thread(self.checker.journal_after_restart, dead)
        return f"done: controller killed ({when}), restarted after {dead_s:.2f} s"

    async def restart_agent(self, host: str) -> str:
        # under the host's power lock: a plan's fence (PDU off) during the restart once killed the old agent
        # object only, the new agent kept the SNMP port, and the repair's boot died on it
        async with self.lab.power_lock(host):
            return await self._restart_agent(host)

    async def _restart_agent(self, host: str) -> str:
        if not self.lab.powered.get(host, True):
            return "skipped: host powered off"
        name = f"{host}-agent"
        old = self.lab.procs[name]
        await old.stop(grace=5)
        ready = Path(old.argv[old.argv.index("--ready-file") + 1])
        ready.unlink(missing_ok=True)
        new = Proc(name, old.argv, old.log_path)
        await new.start()
        self.lab.procs[name] = new
        await self._wait(lambda: ready.exists() or not new.alive, 60, f"{name} to be ready")
        return f"done: {name} restarted" if new.alive else f"failed: {name} exited at start-up"

    # --- admissions: the dialplan asks before an agent transfer ------------------------------

    def _addr(self, host: str) -> str:
        return str(self.lab.site["hosts"][host]["address"])

    async def _ami(self, host: str, path: str = "/snapshot", body: dict[str, Any] | None = None) -> Any:
        if self.layout.netns:  # the control endpoint is on the host namespace's loopback (lab.site ami_control)
            async with asyncio.timeout(2.0):
                return await self.lab.ami_control(host, path, body, method="GET" if body is None else "POST")
        url = f"http://{self._addr(host)}:{self.layout.control_port}{path}"
        r = await (self.http.get(url) if body is None else self.http.post(url, json=body))
        if r.status_code != 200:
            raise LabError(f"{host}{path}: HTTP {r.status_code}")
        return r.json()

    async def _agent_load(self, host: str) -> Load | None:
        token = (self.layout.config / "secrets" / f"agent-token-{host}").read_text().strip()
        try:
            r = await self.http.get(f"{self.lab.site['hosts'][host]['agent']['url']}/v1/report",
                                    headers={"Authorization": f"Bearer {token}"})
            return Load.from_agent(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    async def _admissions(self, rng: random.Random) -> None:
        """Keep the hosts near full of IVR calls and ask for agent transfers, as callers pressing 0 would;
        an admitted transfer is really bridged in the lab AMI server."""
        assert self.topo is not None
        while self._admitting:
            await asyncio.sleep(rng.uniform(0.1, 0.3))
            host = rng.choice(self.topo.hosts)
            if host in self.unreachable or not self.lab.powered.get(host, True):
                continue
            try:
                await self._admission_tick(host, rng)
            except (httpx.HTTPError, LabError, OSError, TimeoutError, KeyError, ValueError) as exc:
                self.agi[f"error {type(exc).__name__}"] += 1

    async def _admission_tick(self, host: str, rng: random.Random) -> None:
        snap = await self._ami(host)
        load = Load.from_ami(snap)
        ivr = [c["id"] for c in snap["calls"] if c["kind"] == "ivr"]
        agents = [c["id"] for c in snap["calls"] if c["kind"] == "agent"]
        free = load.c - load.x - 2 * load.y
        if free > 3 and rng.random() < 0.7:
            want = load.x + free - rng.randint(0, 2)
            with contextlib.suppress(LabError):
                await self._ami(host, "/calls/set", {"ivr": want, "agent": load.y})
            self.agi["fill"] += 1
            return
        if agents and rng.random() < 0.25:
            await self._ami(host, f"/calls/{rng.choice(agents)}/end", {})
            self.agi["hang up"] += 1
            return
        if not ivr:
            return
        agent = await self._agent_load(host)
        before = Load.from_ami(await self._ami(host))
        answer = await agi_admit(self._addr(host), self.layout.agi_port)
        after = Load.from_ami(await self._ami(host))
        admitted = answer.get("CCFO_ADMIT") == "yes"
        fallback = "policy" in answer.get("CCFO_REASON", "")
        self.agi["asked"] += 1
        self.agi["fallback" if fallback else "admitted" if admitted else "refused"] += 1
        self.checker.admission(host, before, after, agent, admitted, fallback)
        if admitted:
            try:
                await self._ami(host, f"/calls/{rng.choice(ivr)}/transfer", {})
                self.agi["transferred"] += 1
            except LabError:
                self.agi["transfer refused by the board"] += 1

    async def _sample_ami(self) -> None:
        while True:
            for host in self.lab.site["hosts"]:
                if host in self.unreachable or not self.lab.powered.get(host, True):
                    continue
                with contextlib.suppress(httpx.HTTPError, LabError, ValueError):
                    self.checker.ami(host, await self._ami(host))
            await asyncio.sleep(0.2)

    # --- repair -------------------------------------------------------------------------------

    async def repair(self, i: int) -> list[str]:
        """Clear every fault, settle every plan, fail back, and require the site to be normal."""
        notes: list[str] = []
        try:
            async with asyncio.timeout(self.s.repair_timeout_s):
                await self._repair(notes)
        except (TimeoutError, LabError, httpx.HTTPError) as exc:
            notes.append(f"repair did not finish: {type(exc).__name__}: {exc}")
        critical = critical_hosts(self.checker.run_dirs)
        status = await self.ctl.status()
        assert self.topo is not None
        self.checker.count("normal")
        for bad in normal_violations(status, critical, self.topo.primary):
            self.checker.violation("normal", bad)
        return notes

    async def _repair(self, notes: list[str]) -> None:
        t0 = time.monotonic()

        def lap(what: str) -> None:
            notes.append(f"[{time.monotonic() - t0:.1f} s] {what}")

        lab = self.lab
        if self.cluster is not None:
            await self.cluster.repair(notes)
        elif not lab.procs["controller"].alive:
            await lab._start_controller(60)
            notes.append("controller restarted")
        for (host, svc), pid in list(self.hung.items()):
            _signal_group(pid, signal.SIGCONT)
            notes.append(f"{host} {svc} resumed (SIGCONT)")
        self.hung.clear()
        await self._power_on(notes)
        for host in self.topo.hosts if self.topo else ():
            if host in self.unreachable:
                await lab.inject(host, "reachable")
                self.unreachable.discard(host)
            for span in self.topo.spans[host] if self.topo else ():
                await lab.inject(host, "span", str(span), "clear")
            await self._ami(host, "/calls/set", {"ivr": 0, "agent": 0})
        for site in lab.dbs:
            if not lab.dbs[site].up:
                await lab.inject("db", site, "up")
        lap("faults cleared")
        r = await self.ctl.mode("manual")
        if r.status_code != 200:
            notes.append(f"mode manual: {_said(r)}")
        await self._settle_plans(notes)
        lap("plans settled")
        await self._power_on(notes)  # a plan that was still running may have fenced a host meanwhile
        await self._restore_services(notes)
        lap("services restored")
        await self._wait(self._no_faults, 30, "the faults to clear")
        lap("controller sees no faults")
        status = await self.ctl.status() or {}
        if status.get("state") != "normal":
            for _attempt in range(3):
                r = await self.ctl.post("/api/v1/failback", {"drain_timeout_s": 1.0})
                if r.status_code == 409 and "is running" in r.text:  # an automatic plan began as we repaired
                    notes.append(f"failback: {_said(r)}; waiting for it")
                    await self._settle_plans(notes)
                    await self._restore_services(notes)
                    continue
                if r.status_code != 202:
                    notes.append(f"failback: {_said(r)}")
                    break
                done = await self._plan_end(r.json()["id"])
                notes.append(f"failback {r.json()['id']}: {done}")
                if done == "finished":
                    break
                await self._settle_plans(notes)
                await self._restore_services(notes)
        lap("failed back")
        r = await self.ctl.mode("supervised")
        await self._wait(self._normal, 30, "the site to be normal")
        lap("normal")

    async def _power_on(self, notes: list[str]) -> None:
        """The operator switches a fenced host's outlet back on (it boots with its services down)."""
        lab = self.lab
        for host in self.topo.hosts if self.topo else ():
            if not lab.powered.get(host, True):
                outlet = lab.site["fencing"]["pdu"]["outlets"][host]
                lab.pdu.state[outlet] = 1
                await lab.power(host, True)
                notes.append(f"{host} powered on again")

    async def _settle_plans(self, notes: list[str]) -> None:
        """Wait for a running plan to end; resume or abort interrupted ones, abort failed ones, reject proposals."""
        await self._wait(self._nothing_running, 60, "the running plan to end")
        rng = random.Random(f"{self.s.seed}:{self.checker.run}:repair")
        for plan in await self.ctl.plans("interrupted,failed"):
            verb = "resume" if plan["status"] == "interrupted" and rng.random() < 0.5 else "abort"
            r = await self.ctl.post(f"/api/v1/plans/{plan['id']}/{verb}", {})
            self.checker.count("plans")
            if r.status_code != 200:
                self.checker.violation("plans", f"{plan['status']} plan {plan['id']} cannot be {verb}d: {_said(r)}")
                continue
            if verb == "resume":
                end = await self._plan_end(plan["id"])
                notes.append(f"resumed {plan['id']}: {end}")
                if end == "failed":
                    r = await self.ctl.post(f"/api/v1/plans/{plan['id']}/abort", {})
                    notes.append(f"aborted {plan['id']}: {_said(r)}")
            else:
                notes.append(f"aborted {plan['status']} plan {plan['id']}")
        for plan in await self.ctl.plans("proposed"):
            r = await self.ctl.post(f"/api/v1/plans/{plan['id']}/reject", {})
            notes.append(f"rejected proposal {plan['id']}: {_said(r)}")

    async def _restore_services(self, notes: list[str]) -> None:
        """The operator's repair: start what each host's duty runs and is not running (CTI/IVR only on the
        active host, never while another host runs them); stop CTI/IVR a host's duty does not run."""
        status = await self.ctl.status() or {}
        hosts = status.get("hosts", {})
        for host, h in hosts.items():
            duty, spec = h["duty"], self.lab.site["hosts"][host]
            run = self.layout.run_dir(host)
            for svc, s in spec["services"].items():
                should = duty in s.get("runs_as", [])
                if not should and svc in ("cti", "ivr") and running(run, svc):
                    await self.lab._lab_service(host, "stop", svc)
                    notes.append(f"stopped stray {svc} on {host} ({duty})")
        for host, h in hosts.items():
            duty, spec = h["duty"], self.lab.site["hosts"][host]
            run = self.layout.run_dir(host)
            driver = spec["board"]["driver_service"]
            # the board too on a host that is out: it must be whole before the failback brings it back
            if not h.get("board_isolated") and not running(run, driver):
                await self.lab.inject(host, "board", "up")
                notes.append(f"board driver started on {host}")
            if duty == "out":
                continue
            for svc, s in spec["services"].items():
                if duty not in s.get("runs_as", []) or running(run, svc):
                    continue
                if svc in ("cti", "ivr") and [x for x in critical_hosts(self.checker.run_dirs) if x != host]:
                    continue
                await self.lab._lab_service(host, "start", svc)
                notes.append(f"started {svc} on {host}")

    async def _plan_end(self, plan_id: str, timeout: float = 60) -> str:
        async def ended() -> str | None:
            with contextlib.suppress(httpx.HTTPError):
                st = (await self.ctl.plan(plan_id))["status"]
                return st if st not in ("running", "proposed") else None
            return None
        return str(await self._wait(ended, timeout, f"plan {plan_id} to end"))

    async def _nothing_running(self) -> bool:
        s = await self.ctl.status()
        return s is not None and s.get("running_plan") is None

    async def _no_faults(self) -> bool:
        s = await self.ctl.status()
        return s is not None and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())

    async def _normal(self) -> bool:
        s = await self.ctl.status()
        assert self.topo is not None or self.lab.site
        primary = self.topo.primary if self.topo else "ipc-a"
        return s is not None and not normal_violations(s, critical_hosts(self.checker.run_dirs) if
                                                       self.checker.run_dirs else [primary], primary)

    @staticmethod
    async def _wait(predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(0.1)

    # --- reporting ------------------------------------------------------------------------------

    def _print_run(self, r: RunResult) -> None:
        if not self.s.progress:
            return
        kinds = ", ".join(" ".join([e["kind"], *e["args"]]) for e in r.events)
        print(f"run {r.run} (seed {self.s.seed}): {len(r.events)} events [{kinds}], {r.plans_started} plan(s), "
              f"{len(r.violations)} violation(s), {r.duration_s:.1f} s", flush=True)
        for h in r.hangs:
            print(f"  hang {h}", flush=True)
        for v in r.violations:
            print(f"  VIOLATION {v['invariant']}: {v['text']}", flush=True)
        if r.violations:
            print(f"  replay: {self.s.replay(r.run)}", flush=True)
            for e in r.events:
                print(f"    {e['kind']} {' '.join(e['args'])} -> {e['outcome']}", flush=True)
            for note in r.repair:
                print(f"    repair: {note}", flush=True)

    def report(self, wall_s: float) -> dict[str, Any]:
        failing = sorted({v["run"] for v in self.checker.violations if v["run"] is not None})
        load = self.load.figures() if self.load is not None else None
        return {
            "seed": self.s.seed, "runs": len(self.results), "wall_s": round(wall_s, 1),
            "command": (f"ccfo lab campaign --runs {self.s.runs} --seed {self.s.seed}"
                        + "".join(f" --weight {k}={v:g}" for k, v in sorted(self.s.weights.items()))
                        if self.s.only_run is None
                        else self.s.replay(self.s.only_run)),
            "events": sum(self.kinds.values()), "events_by_kind": dict(sorted(self.kinds.items())),
            "event_outcomes": dict(self.outcomes), "plans_started": sum(r.plans_started for r in self.results),
            "checks": sum(self.checker.checks.values()), "checks_by_invariant": dict(self.checker.checks),
            "violations": len(self.checker.violations), "violation_list": self.checker.violations[:50],
            "failing_runs": [{"run": r, "replay": self.s.replay(r)} for r in failing],
            "hangs": dict(Counter(h.rsplit(": ", 1)[-1].split(":")[0] for r in self.results for h in r.hangs)),
            "admissions": dict(self.agi), "sip_load": load or self.load_note,
            "run_seconds": {"mean": round(sum(r.duration_s for r in self.results) / max(1, len(self.results)), 2),
                            "max": max((r.duration_s for r in self.results), default=0.0)},
            "runs_detail": [r.__dict__ for r in self.results],
            **({"cluster": self.cluster.report()} if self.cluster is not None else {}),
        }


def summary_lines(rep: dict[str, Any]) -> list[str]:
    lines = [f"campaign seed {rep['seed']}: {rep['runs']} run(s) in {rep['wall_s']:.0f} s "
             f"(mean {rep['run_seconds']['mean']:.1f} s, max {rep['run_seconds']['max']:.1f} s per run)",
             f"  events injected: {rep['events']} ({', '.join(f'{k} {v}' for k, v in rep['events_by_kind'].items())})",
             f"  plans run: {rep['plans_started']}",
             f"  invariant checks: {rep['checks']} "
             f"({', '.join(f'{k} {v}' for k, v in rep['checks_by_invariant'].items())})",
             f"  admissions: {', '.join(f'{k} {v}' for k, v in sorted(rep['admissions'].items()))}",
             f"  hangs (SIGSTOP): {', '.join(f'{k} {v}' for k, v in sorted(rep.get('hangs', {}).items())) or 'none'}",
             f"  violations: {rep['violations']}"]
    load = rep["sip_load"]
    if isinstance(load, dict):
        lines.append(f"  SIP load: {load['rate_cps']} calls/s, {load['attempted']} attempted, "
                     f"{load['succeeded']} answered, {load['failed']} failed")
    else:
        lines.append(f"  SIP load: {load}")
    if "cluster" in rep:
        c = rep["cluster"]
        took = c.get("takeover_s") or {}
        lines.append(f"  cluster: {c['leader_changes']} leader change(s)"
                     + (f", takeover median {took['median']:.2f} s, max {took['max']:.2f} s, "
                        f"{took['over_ttl_plus_1s']} over lease_ttl_s + 1 s" if took else "")
                     + f"; {c['agent_actions_judged']} agent actions judged by term, "
                       f"{c['stale_term_refusals_journaled']} stale-term refusals journaled, "
                       f"{c['older_term_actions_overlapping']} older-term actions still running at a new term")
    for f in rep["failing_runs"]:
        lines.append(f"  FAILED run {f['run']}: replay with {f['replay']}")
    return lines


async def run_campaign(s: Settings) -> dict[str, Any]:
    """The campaign; SIGTERM or SIGINT stop it cleanly (the lab comes down, the figures so far are reported)."""
    campaign = Campaign(s)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    stopped = []

    def stop() -> None:
        stopped.append(True)
        if task is not None:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        return await campaign.run()
    except asyncio.CancelledError:
        if not stopped:
            raise
        print("campaign stopped by a signal: the figures so far", file=sys.stderr)
        return campaign.report(time.monotonic() - campaign.t0)


def enter_partitions(s: Settings) -> None:
    """With `partitions`: make the lab's network namespaces and move this process into their world
    (lab.world): before asyncio.run, while this is the only thread."""
    if s.partitions:
        from lab.world import enter_world
        enter_world(campaign_layout(s), campaign_source(s.root.resolve(), s))


def main(s: Settings, json_path: Path | None = None, as_json: bool = False) -> int:
    """Run the campaign; print its summary (or, `as_json`, the whole report); write the report to `json_path`."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    enter_partitions(s)
    rep = asyncio.run(run_campaign(s))
    for line in [json.dumps(rep, indent=2, default=str)] if as_json else summary_lines(rep):
        print(line)
    if json_path is not None:
        json_path.write_text(json.dumps(rep, indent=2, default=str))
    return 1 if rep["violations"] else 0
