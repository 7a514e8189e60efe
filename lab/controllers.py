"""The lab's controllers: one `ccfo controller` process (the embedded default: SQLite, no etcd), or, with
LabLayout(controllers=3), a 3-member etcd cluster (lab/etcd.py, data under LAB/etcd, logs beside it) and
three `ccfo controller --member NAME` processes (ctl-a, ctl-b, ctl-c; logs LAB/logs/NAME.log), all children
of the lab that die with it.

`LabControllers` starts and stops them and is the fault surface of the HA tests, the campaign and the
benchmark: which member leads now (`leader()`, from the members' unauthenticated `GET /leader`), kill a
member (kill -9 by default) and start it again, pause (SIGSTOP) and resume (SIGCONT) one, kill and restart
an etcd member. Processes are started from the event loop's thread (lab/children.py says why). With
LabLayout(netns=True) each controller and each etcd member runs in its node's namespace (lab/world.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from lab.children import LabError, Proc, wait_file
from lab.etcd import EtcdCluster, EtcdLabError
from lab.labconfig import LabLayout
from lab.world import node_argv

log = logging.getLogger("lab.controllers")
# etcd keeps a bounded history (docs/ha.md: the journal's keys are deleted as new ones come; compaction
# frees their revisions)
# pre-vote: a member back from a partition does not force a raft election (and with it a controller
# leader change) by the term it raised alone (docs/ha.md, "The lab in network namespaces")
ETCD_FLAGS = ("--auto-compaction-mode=revision", "--auto-compaction-retention=10000", "--pre-vote=true")


@dataclass(frozen=True, slots=True)
class Leader:
    name: str
    term: int | None  # None: a controller alone (no election, no term)
    url: str


class LabControllers:
    def __init__(self, layout: LabLayout, procs: dict[str, Proc]) -> None:
        self.layout = layout
        self.procs = procs  # the lab's process table: the controllers are in it under their names
        self.etcd: EtcdCluster | None = None
        if layout.clustered:
            self.etcd = EtcdCluster(layout.etcd_dir, layout.etcd_addresses, names=layout.etcd_names,
                                    client_port=layout.etcd_client_port, peer_port=layout.etcd_peer_port,
                                    netns=[layout.node_netns(n) for n in layout.etcd_names] if layout.netns else None,
                                    extra_args=ETCD_FLAGS, die_with_parent=True)
        self.http = httpx.AsyncClient(timeout=2.0)

    # --- views ---------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.layout.controller_members)

    def url(self, name: str) -> str:
        try:
            return f"http://{self.layout.controller_members[name]}"
        except KeyError:
            raise LabError(f"no controller {name!r} (controllers: {', '.join(self.names)})") from None

    @property
    def urls(self) -> list[str]:
        return [self.url(n) for n in self.names]

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc is not None else None

    def summary(self) -> dict[str, list[dict[str, Any]]]:
        return {"controllers": [{"name": n, "url": self.url(n), "pid": self.pid(n),
                                 "log": str(self.layout.root / "logs" / f"{n}.log")} for n in self.names],
                "etcd": self.etcd.summary() if self.etcd is not None else []}

    async def _leader_answer(self, name: str) -> tuple[int, dict[str, Any]]:
        try:
            r = await self.http.get(self.url(name) + "/leader", timeout=1.0)
        except httpx.HTTPError:
            return 0, {}
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, {}

    async def leader(self) -> Leader | None:
        """The member whose `GET /leader` answers 200 now (a controller alone: itself while it runs); None
        during an election. Two answering at once (never expected) gives the higher term."""
        if not self.layout.clustered:
            name = self.names[0]
            return Leader(name, None, self.url(name)) if self.procs.get(name) and self.procs[name].alive else None
        live = [n for n in self.names if self.procs.get(n) and self.procs[n].alive]
        answers = await asyncio.gather(*(self._leader_answer(n) for n in live))
        leading = [Leader(n, body.get("term"), self.url(n)) for n, (code, body) in zip(live, answers, strict=True)
                   if code == 200]
        return max(leading, key=lambda ld: ld.term or 0) if leading else None

    async def wait_leader(self, timeout: float, *, above: int = 0) -> Leader:
        """The leader, once one leads with a term above `above` (polled under a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            lead = await self.leader()
            if lead is not None and (lead.term or 0) > above:
                return lead
            if time.monotonic() >= deadline:
                raise LabError(f"no controller leads (term above {above}) within {timeout:g} s; see "
                               f"{self.layout.root / 'logs'}")
            await asyncio.sleep(0.05)

    # --- life cycle ----------------------------------------------------------------------------------
    async def up(self, timeout: float) -> None:
        """etcd first (several controllers), then every controller; returns once one of them leads."""
        if self.etcd is not None:
            await self.start_etcd_cluster(timeout)
        await asyncio.gather(*(self.start(n, timeout) for n in self.names))
        if self.etcd is not None:
            lead = await self.wait_leader(timeout)
            log.info("lab controllers: %s leads with term %s", lead.name, lead.term)

    async def start_etcd_cluster(self, timeout: float) -> None:
        assert self.etcd is not None
        self.etcd.base.mkdir(parents=True, exist_ok=True)
        try:
            for m in self.etcd.members:
                self.etcd.start_member(m.name, wait=False)  # here, on the loop's thread (die with the lab)
            await asyncio.to_thread(self.etcd.wait_healthy, timeout)
        except EtcdLabError as exc:
            await asyncio.to_thread(self.etcd.stop, 0)
            raise LabError(str(exc)) from exc

    async def start(self, name: str, timeout: float = 60.0) -> None:
        """Start one controller (again, after a kill) over its config, journal and plan store."""
        url = self.url(name)
        if self.procs.get(name) and self.procs[name].alive:
            raise LabError(f"controller {name} is already running (pid {self.pid(name)})")
        ready = self.layout.root / f"{name}.ready"
        ready.unlink(missing_ok=True)
        member = ["--member", name] if self.layout.clustered else []
        argv = [sys.executable, "-m", "controller", "controller", "--config", str(self.layout.config), *member,
                "--ready-file", str(ready)]
        proc = Proc(name, node_argv(self.layout, name, argv), self.layout.root / "logs" / f"{name}.log")
        await proc.start()
        self.procs[name] = proc
        info = await wait_file(ready, proc, timeout)
        if info.get("api") != url:
            raise LabError(f"controller {name} serves at {info.get('api')}, not at {url}")

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to one controller (kill -9 by default: no shutdown code runs, as in a power cut) and
        wait for it to end; its exit status. For SIGSTOP/SIGCONT use pause/resume."""
        proc = self.procs.get(name)
        if proc is None or proc.proc is None or not proc.alive:
            raise LabError(f"controller {name} is not running")
        if sig in (signal.SIGSTOP, signal.SIGCONT, signal.SIGTSTP):
            raise LabError("use pause/resume to stop and continue a controller")
        proc.signal(sig)
        return await proc.proc.wait()

    def pause(self, name: str) -> int:
        """SIGSTOP one controller (a frozen process: its lease runs out, its sockets stay open); its pid."""
        return self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> int:
        return self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: int) -> int:
        proc = self.procs.get(name)
        if proc is None or proc.proc is None or not proc.alive:
            raise LabError(f"controller {name} is not running")
        proc.signal(sig)
        return proc.proc.pid

    # --- etcd members --------------------------------------------------------------------------------
    def _cluster(self) -> EtcdCluster:
        if self.etcd is None:
            raise LabError("this lab has one controller and no etcd (ccfo lab up --controllers 3)")
        return self.etcd

    async def kill_etcd(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill one etcd member (kill -9 by default) and reap it; the pid it had."""
        cluster = self._cluster()
        try:
            cluster.member(name)
            return await asyncio.to_thread(cluster.kill_member, name, sig)
        except (KeyError, EtcdLabError) as exc:
            raise LabError(str(exc).strip('"')) from exc

    async def start_etcd(self, name: str, timeout: float = 30.0) -> None:
        """Start one etcd member again on its data dir; returns once it is healthy."""
        cluster = self._cluster()
        try:
            m = cluster.member(name)
            cluster.start_member(name, wait=False)  # on the loop's thread (die with the lab)
            await asyncio.to_thread(cluster.wait_healthy, timeout, [m])
        except (KeyError, EtcdLabError) as exc:
            raise LabError(str(exc).strip('"')) from exc

    async def down(self) -> None:
        """Every controller at once (SIGTERM: the leader resigns; SIGKILL after 8 s), then etcd."""
        async def stop(name: str) -> None:
            t0 = time.monotonic()
            await self.procs[name].stop(grace=8.0)
            log.info("lab down: %s stopped in %.2f s", name, time.monotonic() - t0)

        await asyncio.gather(*(stop(n) for n in self.names if n in self.procs))
        if self.etcd is not None:
            t0 = time.monotonic()
            await asyncio.to_thread(self.etcd.stop, 5.0)
            log.info("lab down: etcd stopped in %.2f s", time.monotonic() - t0)
        await self.http.aclose()
