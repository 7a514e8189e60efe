"""The lab site: a whole simulated call center on one machine, and its fault-injection surface.

Per host, on its own loopback address: a lab AMI server (the simulated Asterisk with its DAHDI board),
the managed services as real stand-in daemons (cti, ivr, kcxp, kcbp, replicas, the board driver), and
the real agent; with LabLayout(servers=True) the site's managed servers too (their agents with the server
profile at NET.11, NET.12, ..., stand-in services, whitelisted files and real cron files); then the
database sites (TCP endpoints), the lab PDU (SNMP, one outlet per host), the
SIP front (a real Kamailio on NET.200, lab/front.py: every lab call enters there) and the real controller
(with LabLayout(controllers=3): a 3-member etcd and three controller members, lab/controllers.py).
`LabSite` owns these processes; `ccfo lab up` runs it in a background supervisor
and `ccfo lab inject` talks to its control API. Tests use it in-process on their own 127.x.y network.
With LabLayout(netns=True) (after lab/world.py `enter_world`) the controllers, etcd members and IPC hosts
each run in a network namespace of their own: `partition(node)` cuts one's link, `heal(node)` restores
it, and `down()` deletes every namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from lab.children import LabError, Proc, wait_file
from lab.controllers import LabControllers, Leader
from lab.front import FrontError, kamailio_argv, kamailio_binary, lab_router, wait_ready
from lab.labconfig import LAB_ENTRY, LabLayout, _svc_cmd, build
from lab.netns import NetnsError, NetnsLab, http_in_netns
from lab.pdu import LabDatabase, start_pdu
from lab.world import WORLD, current_world, leave_world, node_argv

log = logging.getLogger("lab.site")
REPO = Path(__file__).resolve().parent.parent


class LabSite:
    def __init__(self, layout: LabLayout, source: Path = REPO / "config", netns: NetnsLab | None = None) -> None:
        """`netns`: with LabLayout(netns=True), the namespaces `enter_world` made (by default the ones this
        process entered)."""
        self.layout, self.source = layout, source
        self.netns = netns
        self.site: dict[str, Any] = {}
        self.procs: dict[str, Proc] = {}
        self.dbs: dict[str, LabDatabase] = {}
        self.pdu: Any = None
        self._pdu_transport: Any = None
        self.powered: dict[str, bool] = {}
        self._power_locks: dict[str, asyncio.Lock] = {}
        self.http = httpx.AsyncClient(timeout=5.0)
        self.controllers = LabControllers(layout, self.procs)

    # --- bring-up -------------------------------------------------------------------------------

    async def up(self, timeout: float = 60.0) -> None:
        """Bring the whole site up. On an error, call `down()` all the same (it deletes the namespaces)."""
        root = self.layout.root
        if self.layout.netns:
            self._world()
        root.mkdir(parents=True, exist_ok=True)
        for sub in ("hosts", "var", "etcd"):  # a fresh site: etcd's data too (an old site state would be taken over)
            if (root / sub).exists():
                shutil.rmtree(root / sub)
        self.site = build(self.source, self.layout)
        if self.netns is not None:
            for host, addr in self.layout.hosts.items():
                node = self.netns.nodes.get(host)
                if node is None or node.address != addr:
                    raise LabError(f"host {host} at {addr} is not a node of the lab's namespaces; enter_world was "
                                   f"given another site than {self.source}")
        self._write_db_files()
        for name, db in self.site["databases"]["sites"].items():
            self.dbs[name] = LabDatabase(name, db["host"], db["port"])
            await self.dbs[name].start()
        community = (self.layout.config / "secrets" / "pdu-community").read_text().strip()
        outlets = self.site["fencing"]["pdu"]["outlets"]
        self._pdu_transport, self.pdu = await start_pdu(self.layout.pdu_host, self.layout.pdu_port,
                                                        {n: h for h, n in outlets.items()}, community, self.power)
        for host in self.site["hosts"]:
            await self._boot_host(host, start_services=True, timeout=timeout)
        await asyncio.gather(*(self._boot_server(s, timeout=timeout) for s in self.site.get("servers", {})))
        await self._start_front(timeout)
        await self.controllers.up(timeout)

    def _write_db_files(self) -> None:
        active = self.site["databases"]["active"]
        db = self.site["databases"]["sites"][active]
        for host in [*self.site["hosts"].values(), *self.site.get("servers", {}).values()]:
            for f in host["db_config_files"]:
                value = f.get("value", "{host}").format(host=db["host"], port=db["port"], site=active)
                path = Path(f["path"])
                if f["format"] == "ini":
                    text = f"# lab copy of {path.name}\n[{f['section']}]\n{f['key']} = {value}\nport = {db['port']}\n"
                elif f["format"] == "keyvalue":
                    text = f"# lab copy of {path.name}\n{f['key']}={value}\ndb.pool=8\n"
                else:
                    text = f"url = jdbc://{value}/fund\n"
                path.write_text(text)

    async def _boot_host(self, host: str, *, start_services: bool, timeout: float) -> None:
        lay, spec = self.layout, self.site["hosts"][host]
        addr = spec["address"]
        spans = ",".join(f"{s['span']}:{s['channels']}" for s in spec["board"]["spans"])
        ready = lay.host_dir(host) / "ami.ready"
        ready.unlink(missing_ok=True)
        trunks = ",".join(f"{t['name']}:{t.get('driver', 'pjsip')}:{t['channels']}" for t in spec.get("trunks", []))
        ami_argv = [sys.executable, "-m", "lab.ami", "--host", addr, "--port", str(lay.ami_port),
                    "--control-host", lay.ami_control_host(addr), "--control-port", str(lay.control_port),
                    "--spans", spans, "--fax", str(spec.get("fax_channels", 4)), "--trunks", trunks,
                    # a SIP-trunk lab grants the agent's AMI user only what the shipped
                    # manager-ccfo.conf grants: PJSIPShowEndpoints (system) is refused there
                    *(["--write-classes", "reporting,originate"] if lay.telephony == "sip" else []),
                    "--secret-file", str(lay.config / "secrets" / "ami-secret"),
                    "--login-fail-delay", "0.2", "--ready-file", str(ready)]
        ami = Proc(f"{host}-ami", self._in_node(host, ami_argv), lay.root / "logs" / f"{host}-ami.log")
        await ami.start()
        self.procs[ami.name] = ami
        await wait_file(ready, ami, timeout)
        self.powered[host] = True
        if start_services:
            await self._lab_service(host, "start", spec["board"]["driver_service"], control=True)
            duty = spec["role"]
            for svc, s in spec["services"].items():
                if duty in s.get("runs_as", []):
                    await self._lab_service(host, "start", svc)
        agent_ready = lay.host_dir(host) / "agent.ready"
        agent_ready.unlink(missing_ok=True)
        agent = Proc(f"{host}-agent", self._in_node(host, [
            sys.executable, "-m", "controller", "agent", "--config", str(lay.config), "--host", host, "--lab",
            "--state-dir", str(lay.host_dir(host) / "agent"), "--ready-file", str(agent_ready),
            "--lab-ami-control", f"http://{lay.ami_control_host(addr)}:{lay.control_port}"]),
                     lay.root / "logs" / f"{host}-agent.log")
        await agent.start()
        self.procs[agent.name] = agent
        await wait_file(agent_ready, agent, timeout)

    async def _boot_server(self, name: str, *, timeout: float) -> None:
        """A managed server: its cron files (enabled on an active server, commented out on a backup one, as a
        kept-ready environment), its services (running on an active server), then its agent. Before the
        migration (LabLayout.before_migration) the Shanghai servers are the active ones."""
        lay, spec = self.layout, self.site["servers"][name]
        active = (spec["datacenter"] == "shanghai" if lay.before_migration  # the migration runbook's start
                  else spec.get("role", "active") == "active")
        for job, j in spec["jobs"].items():
            _write_cron(Path(j["cron_file"]), job, f"{j['schedule']} {j['user']} {j['command']}", active)
        if active:
            await asyncio.gather(*(self._lab_service(name, "start", svc) for svc in spec["services"]))
        for f in spec.get("switch_files", []):
            await self._start_entry(name, f, timeout)
        ready = lay.host_dir(name) / "agent.ready"
        ready.unlink(missing_ok=True)
        agent = Proc(f"{name}-agent", [sys.executable, "-m", "controller", "agent", "--config", str(lay.config),
                                       "--host", name, "--lab", "--state-dir", str(lay.host_dir(name) / "agent"),
                                       "--ready-file", str(ready)], lay.root / "logs" / f"{name}-agent.log")
        await agent.start()
        self.procs[agent.name] = agent
        await wait_file(ready, agent, timeout)

    async def _start_entry(self, name: str, f: dict[str, Any], timeout: float) -> None:
        """A switch file's first content (the value named after the active database site, else its first), and
        for an entry point (a file with a reload command) its HTTP stand-in, which reads the file (lab/entry.py)."""
        values = f["values"]
        value = values.get(self.site["databases"]["active"], next(iter(values.values())))
        path = Path(f["path"])
        if f["format"] == "ini":
            path.write_text(f"# lab copy of {path.name}\n[{f['section']}]\n{f['key']} = {value}\n")
        elif f["format"] == "keyvalue":
            path.write_text(f"# lab copy of {path.name}\n{f['key']}={value}\n")
        else:  # the pattern's line with its group replaced by the value (the lab's patterns are that simple)
            line = re.sub(r"\([^)]*\)", lambda _m: value, f["pattern"], count=1).strip("^$")
            path.write_text(f"# lab copy of {path.name}\n{line}\n")
            if re.findall(f["pattern"], path.read_text(), re.MULTILINE) != [value]:
                raise LabError(f"{name} {f['id']}: cannot write a line that {f['pattern']!r} reads")
        if not f.get("reload"):
            return
        ready = self.layout.host_dir(name) / f"entry-{f['id']}.ready"
        ready.unlink(missing_ok=True)
        addr = self.site["servers"][name]["agent"]["url"].split("//", 1)[1].rsplit(":", 1)[0]
        proc = Proc(f"{name}-entry", [sys.executable, "-S", str(LAB_ENTRY), "serve", "--listen",
                                      f"{addr}:{self.layout.entry_port}", "--file", str(path), "--pattern",
                                      f["pattern"], "--ready-file", str(ready)],
                    self.layout.root / "logs" / f"{name}-entry.log")
        await proc.start()
        self.procs[proc.name] = proc
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if not proc.alive or time.monotonic() > deadline:
                raise LabError(f"{proc.name} did not start; see {proc.log_path}")
            await asyncio.sleep(0.05)

    def entry_url(self, server: str) -> str:
        """The server's HTTP entry point stand-in (GET it: 302 to the URL its file names)."""
        addr = self.site["servers"][server]["agent"]["url"].split("//", 1)[1].rsplit(":", 1)[0]
        return f"http://{addr}:{self.layout.entry_port}/"

    async def _lab_service(self, host: str, verb: str, name: str, control: bool = False) -> int:
        addr = self.layout.ami_control_host(self.site["hosts"][host]["address"]) if control else ""
        argv = self._in_node(host, _svc_cmd(verb, name, self.layout.run_dir(host),
                                            f"http://{addr}:{self.layout.control_port}" if control else None))
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        return await proc.wait()

    async def _start_front(self, timeout: float) -> None:
        """Kamailio on NET.200, routing new calls to every host (the one whose IVR answers OPTIONS serves)."""
        lay, routing = self.layout, self.site["routing"]
        lay.front_dir.mkdir(parents=True, exist_ok=True)
        lay.front_socket.parent.mkdir(parents=True, exist_ok=True)
        lay.front_socket.unlink(missing_ok=True)
        router = lab_router(self.site)
        router.write(list(self.site["hosts"]))
        try:
            argv = kamailio_argv(kamailio_binary(), f"{lay.front_host}:{lay.sip_port}", router.list_file,
                                 lay.front_socket, lay.front_dir, hold_s=float(routing.get("hold_s", 8.0)),
                                 hold_retry_s=float(routing.get("hold_retry_s", 0.5)))
        except FrontError as exc:
            raise LabError(str(exc)) from exc
        front = Proc("front", argv, lay.root / "logs" / "front.log")
        await front.start()
        self.procs["front"] = front
        try:
            await wait_ready(router.rpc, front, front.log_path, timeout)
        except FrontError as exc:
            raise LabError(str(exc)) from exc

    async def front(self, how: str) -> str:
        """`ccfo lab inject front down|up`: stop or start the SIP front (its list file stays)."""
        if how == "down":
            if "front" in self.procs:
                await self.procs["front"].stop()
            return "SIP front (Kamailio) stopped"
        if "front" in self.procs and self.procs["front"].alive:
            return "SIP front (Kamailio) already running"
        router = lab_router(self.site)
        argv = self.procs["front"].argv
        front = Proc("front", argv, self.layout.root / "logs" / "front.log")
        await front.start()
        self.procs["front"] = front
        try:
            await wait_ready(router.rpc, front, front.log_path, 30.0)
        except FrontError as exc:
            raise LabError(str(exc)) from exc
        return "SIP front (Kamailio) started; it read its list file"

    async def _start_controller(self, timeout: float) -> None:
        """Start the controller again (the campaign's repair); with several, every member not running."""
        for name in self.controllers.names:
            if not (self.procs.get(name) and self.procs[name].alive):
                await self.controllers.start(name, timeout)

    async def kill_controller(self, name: str | None = None, sig: int = signal.SIGKILL) -> int:
        """Kill a controller (kill -9 by default: no shutdown code runs, as in a power cut); its exit status.
        Without a name: the controller alone, or the member that leads now."""
        if name is None:
            lead = await self.controllers.leader()
            if lead is None:
                raise LabError("no controller leads now" if self.layout.clustered else "the controller is not running")
            name = lead.name
        return await self.controllers.kill(name, sig)

    async def start_controller(self, name: str | None = None, timeout: float = 60.0) -> None:
        """Start a controller again over the same config and journal (after `kill_controller`); without a name:
        the controller alone (an error when it runs)."""
        name = name or self.controllers.names[0]
        await self.controllers.start(name, timeout)

    async def leader(self) -> Leader | None:
        """The controller that leads now (name, term, url), None during an election."""
        return await self.controllers.leader()

    def pause_controller(self, name: str) -> int:
        """SIGSTOP one controller; its pid."""
        return self.controllers.pause(name)

    def resume_controller(self, name: str) -> int:
        """SIGCONT a paused controller; its pid."""
        return self.controllers.resume(name)

    async def kill_etcd(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Kill one etcd member (several controllers only); the pid it had."""
        return await self.controllers.kill_etcd(name, sig)

    async def start_etcd(self, name: str, timeout: float = 30.0) -> None:
        """Start a killed etcd member again on its data dir."""
        await self.controllers.start_etcd(name, timeout)

    # --- network namespaces (LabLayout(netns=True)) ---------------------------------------------

    def _world(self) -> NetnsLab:
        if not self.layout.netns:
            raise LabError("this lab does not run in network namespaces (LabLayout(netns=True))")
        if self.netns is None:
            self.netns = current_world()
        if self.netns is None:
            raise LabError("LabLayout(netns=True) needs lab.world.enter_world(layout) first, in the main thread "
                           "before any other thread starts")
        return self.netns

    def _in_node(self, node: str, argv: list[str]) -> list[str]:
        """`argv` started inside the node's namespace when `node` is one (a managed server lives in world)."""
        if self.netns is not None and node in self.netns.nodes and node != WORLD:
            return node_argv(self.layout, node, argv)
        return argv

    @property
    def nodes(self) -> list[str]:
        """What `partition` can cut: the controllers, the etcd members, the IPC hosts (netns mode only)."""
        return [n for n in self._world().nodes if n != WORLD]

    def _node(self, node: str) -> NetnsLab:
        lab = self._world()
        if node not in lab.nodes or node == WORLD:
            raise LabError(f"no node {node!r} to partition (nodes: {', '.join(self.nodes)})")
        return lab

    async def partition(self, node: str) -> None:
        """Cut a node (a controller member, an etcd member or a host) from every other and from world: its link
        to the bridge goes down; its processes run on, their packets are lost. Returns once the link is down."""
        lab = self._node(node)
        try:
            await asyncio.to_thread(lab.cut, node)
        except NetnsError as exc:
            raise LabError(str(exc)) from exc

    async def heal(self, node: str) -> None:
        """Restore a cut node's link (up again when this returns)."""
        lab = self._node(node)
        try:
            await asyncio.to_thread(lab.restore, node)
        except NetnsError as exc:
            raise LabError(str(exc)) from exc

    @property
    def partitioned(self) -> frozenset[str]:
        """The nodes cut now (empty without netns)."""
        return frozenset(self.netns.cut_nodes) if self.netns is not None else frozenset()

    # --- operations ---------------------------------------------------------------------------

    def token(self, role: str) -> str:
        return (self.layout.config / "secrets" / f"{role}.token").read_text().strip()

    @property
    def api(self) -> str:
        """The first controller's URL (the controller alone; with several, ctl-a, which may not lead: see
        `leader()` and `api_urls`)."""
        return f"http://{self.layout.controller_address}"

    @property
    def api_urls(self) -> list[str]:
        """Every controller's URL, as CCFO_URL takes them (the CLI sends a change to the leader)."""
        return self.controllers.urls

    async def power(self, host: str, on: bool) -> None:
        """The PDU switched this host's outlet: kill everything on it, or boot it (services stay down).
        One switch at a time per host: two "on"s arriving together (the PDU's and a campaign repair's) once
        booted two agents, and the second died on the SNMP port the first held ("exited during start-up")."""
        async with self.power_lock(host):
            await self._power(host, on)

    def power_lock(self, host: str) -> asyncio.Lock:
        """Held while a host's processes change (power, an agent restart), so a PDU switch never lands in
        the middle of a restart and misses the agent just started."""
        return self._power_locks.setdefault(host, asyncio.Lock())

    async def _power(self, host: str, on: bool) -> None:
        if not on:
            self.powered[host] = False
            for name in (f"{host}-agent", f"{host}-ami"):
                if name in self.procs:
                    self.procs[name].signal(signal.SIGKILL)
            await self._kill_services(host)
        elif not self.powered.get(host):
            await self._boot_host(host, start_services=False, timeout=30)

    async def _kill_services(self, host: str) -> None:
        """Kill the host's stand-ins. An agent stopped mid-`start` may leave a `lab_services start` (or
        `run`) process behind that spawns a stand-in after a single pass over the pid files, so: kill every
        process naming the run directory, then every pid file's process, until no such process is left."""
        run = self.layout.run_dir(host)
        for _ in range(40):
            helpers = _pids_naming(str(run))
            for pid in helpers:
                with contextlib.suppress(ProcessLookupError, OSError):
                    os.kill(pid, signal.SIGKILL)
            for pidfile in run.glob("*.pid"):
                with contextlib.suppress(ValueError, ProcessLookupError, OSError):
                    os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            if not helpers:
                return
            await asyncio.sleep(0.05)

    async def ami_control(self, host: str, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        """One request to the host's lab AMI control endpoint (GET /snapshot, POST /spans/1/alarm ...); its JSON.
        With netns the endpoint is on the host namespace's loopback, reached through a socket opened in that
        namespace: it answers even while the host is partitioned (a console, not the site's network)."""
        if self.netns is not None and host in self.netns.nodes:
            try:
                status, answer = await http_in_netns(self.netns.nodes[host].netns, self.layout.control_port, method,
                                                     path, body if method != "GET" else None)
            except (OSError, NetnsError, ValueError, IndexError, TimeoutError) as exc:
                raise LabError(f"lab AMI control {host}{path}: {exc!r}") from exc
            if status != 200:
                raise LabError(f"lab AMI control {host}{path}: HTTP {status} {answer}")
            return answer
        addr = self.site["hosts"][host]["address"]
        url = f"http://{addr}:{self.layout.control_port}{path}"
        r = await (self.http.get(url) if method == "GET" else self.http.request(method, url, json=body or {}))
        if r.status_code != 200:
            raise LabError(f"lab AMI control {host}{path}: HTTP {r.status_code} {r.text}")
        return r.json()

    async def inject(self, target: str, what: str, *args: str) -> str:
        """The `ccfo lab inject` vocabulary; returns a sentence saying what was done."""
        if target == "front" and what in ("down", "up"):
            return await self.front(what)
        if target in ("controller", "etcd"):
            return await self._inject_cluster(target, what, *args)
        if target == "net":  # netns mode: `net NODE cut|heal`
            how = args[0] if len(args) == 1 else ""
            if how not in ("cut", "heal"):
                raise LabError("usage: net NODE cut|heal")
            await (self.partition if how == "cut" else self.heal)(what)
            return f"{what} {'partitioned (its link is down)' if how == 'cut' else 'healed (its link is up)'}"
        if target == "db":
            site, state = what, (args[0] if args else "")
            if site not in self.dbs or state not in ("down", "up"):
                raise LabError("usage: db SITE down|up")
            await (self.dbs[site].stop() if state == "down" else self.dbs[site].start())
            return f"database site {site} {state}"
        if target not in self.site.get("hosts", {}):
            raise LabError(f"unknown host {target!r}")
        host = target
        if what == "span" and len(args) == 2 and args[1] in ("red", "yellow", "blue", "clear"):
            await self.ami_control(host, f"/spans/{int(args[0])}/alarm", {"alarm": args[1]})
            return f"{host} span {args[0]} {args[1]}"
        if what == "dchannel" and len(args) == 2 and args[1] in ("up", "down"):
            await self.ami_control(host, f"/spans/{int(args[0])}/dchannel", {"up": args[1] == "up"})
            return f"{host} span {args[0]} D-channel {args[1]}"
        if what == "trunk" and len(args) == 2 and args[1] in ("down", "up"):
            if args[0] not in {t["name"] for t in self.site["hosts"][host].get("trunks", [])}:
                raise LabError(f"{host} has no trunk {args[0]!r}")
            await self.ami_control(host, f"/trunks/{args[0]}", {"up": args[1] == "up"})
            return f"{host} trunk {args[0]} {args[1]}"
        if what == "board" and args and args[0] in ("down", "up"):
            driver = self.site["hosts"][host]["board"]["driver_service"]
            await self._lab_service(host, "stop" if args[0] == "down" else "start", driver, control=True)
            return f"{host} board driver {args[0]}"
        if what == "service" and len(args) == 2 and args[1] in ("crash", "hang", "resume", "start", "stop"):
            return await self._service_fault(host, args[0], args[1])
        if what == "asterisk" and args and args[0] in ("hang", "resume"):  # freeze the lab Asterisk (AMI server)
            self.procs[f"{host}-ami"].signal(signal.SIGSTOP if args[0] == "hang" else signal.SIGCONT)
            return f"{host} asterisk {'hung (SIGSTOP)' if args[0] == 'hang' else 'resumed (SIGCONT)'}"
        if what in ("unreachable", "reachable"):
            sig = signal.SIGSTOP if what == "unreachable" else signal.SIGCONT
            for name in (f"{host}-agent", f"{host}-ami"):
                self.procs[name].signal(sig)
            return f"{host} {what}"
        raise LabError("usage: HOST span N red|yellow|blue|clear | HOST dchannel N up|down | HOST board down|up | "
                       "HOST trunk NAME down|up | "
                       "HOST service NAME crash|hang|resume | HOST asterisk hang|resume | HOST unreachable|reachable | "
                       "db SITE down|up | front down|up | controller NAME kill|start|pause|resume | "
                       "etcd NAME kill|start | net NODE cut|heal")

    async def _inject_cluster(self, target: str, name: str, *args: str) -> str:
        how = args[0] if len(args) == 1 else ""
        if target == "etcd" and how in ("kill", "start"):
            if how == "kill":
                return f"etcd member {name} killed (SIGKILL, pid {await self.kill_etcd(name)})"
            await self.start_etcd(name)
            return f"etcd member {name} started again on its data dir (healthy)"
        if target == "controller" and how in ("kill", "start", "pause", "resume"):
            if how == "kill":
                pid = self.controllers.pid(name)
                await self.kill_controller(name)
                return f"controller {name} killed (SIGKILL, pid {pid})"
            if how == "start":
                await self.start_controller(name)
                return f"controller {name} started (pid {self.controllers.pid(name)})"
            pid = self.pause_controller(name) if how == "pause" else self.resume_controller(name)
            return f"controller {name} {'paused (SIGSTOP)' if how == 'pause' else 'resumed (SIGCONT)'}, pid {pid}"
        raise LabError("usage: controller NAME kill|start|pause|resume | etcd NAME kill|start")

    async def _service_fault(self, host: str, name: str, how: str) -> str:
        if name not in self.site["hosts"][host]["services"]:
            raise LabError(f"{host} has no service {name!r}")
        if how in ("hang", "resume"):  # SIGSTOP / SIGCONT of the stand-in's process group
            if await self._lab_service(host, how, name) != 0:
                raise LabError(f"{host} {name} is not running")
            return f"{host} {name} {'hung (SIGSTOP)' if how == 'hang' else 'resumed (SIGCONT)'}"
        if how != "crash":
            await self._lab_service(host, how, name)
            return f"{host} {name} {how}"
        pidfile = self.layout.run_dir(host) / f"{name}.pid"
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (OSError, ValueError) as exc:
            raise LabError(f"{host} {name} is not running ({exc})") from exc
        return f"{host} {name} crashed (SIGKILL)"

    async def calls(self, host: str, ivr: int, agent: int) -> dict[str, Any]:
        await self.ami_control(host, "/calls/set", {"ivr": ivr, "agent": agent})
        return {"host": host, "ivr": ivr, "agent": agent}

    async def down(self) -> None:
        """Stop everything; with netns, then delete every namespace (always, even when a stop fails)."""
        try:
            await self._down()
        finally:
            if self.netns is not None:
                t0 = time.monotonic()
                if self.netns is current_world():
                    leave_world()
                else:
                    self.netns.close()
                log.info("lab down: namespaces deleted in %.2f s", time.monotonic() - t0)

    async def _down(self) -> None:
        await self.controllers.down()
        for name in ["front", *[n for n in self.procs if n.endswith(("-agent", "-entry"))],
                     *[n for n in self.procs if n.endswith("-ami")]]:
            if name in self.procs:
                t0 = time.monotonic()
                await self.procs[name].stop()
                log.info("lab down: %s stopped in %.2f s", name, time.monotonic() - t0)
        t0 = time.monotonic()
        for host in [*self.site.get("hosts", {}), *self.site.get("servers", {})]:
            await self._kill_services(host)
        log.info("lab down: the hosts' stand-ins killed in %.2f s", time.monotonic() - t0)
        t0 = time.monotonic()
        for db in self.dbs.values():
            await db.stop()
        if self._pdu_transport is not None:
            self._pdu_transport.close()
        await self.http.aclose()
        log.info("lab down: databases, PDU and control client closed in %.2f s", time.monotonic() - t0)

    def summary(self) -> dict[str, Any]:
        hosts = {h: {"address": s["address"], "agent": s["agent"]["url"],
                     "ami": f"{s['ami']['host']}:{s['ami']['port']}",
                     "ami_control": f"http://{self.layout.ami_control_host(s['address'])}:{self.layout.control_port}",
                     "logs": str(self.layout.root / "logs")} for h, s in self.site["hosts"].items()}
        netns = ({n: node.netns for n, node in self.netns.nodes.items()} if self.netns is not None else {})
        return {"dashboard": self.api + "/", "api": self.api + "/api/v1", "api_urls": self.api_urls,
                **({"netns": netns} if netns else {}),
                **self.controllers.summary(), "config": str(self.layout.config),
                "hosts": hosts, "databases": {n: f"{d.host}:{d.port}" for n, d in self.dbs.items()},
                "pdu": f"{self.layout.pdu_host}:{self.layout.pdu_port}",
                "front": {"sip": f"{self.layout.front_host}:{self.layout.sip_port}",
                          "rpc_socket": str(self.layout.front_socket),
                          "list_file": str(self.layout.front_dir / "dispatcher.list"),
                          "log": str(self.layout.root / "logs" / "front.log")},
                "servers": {n: {"datacenter": s["datacenter"], "kind": s["kind"], "agent": s["agent"]["url"],
                                "dir": str(self.layout.host_dir(n))} for n, s in self.site.get("servers", {}).items()},
                "tokens": {r: str(self.layout.config / "secrets" / f"{r}.token")
                           for r in ("viewer", "operator", "admin")}}


def _write_cron(path: Path, job: str, line: str, enabled: bool) -> None:
    """A job's cron file exactly as the agent writes it (agents/jobs.py CronJobs: its header, and a disabled
    job's line commented out with its marker), so the agent's first change is not taken for foreign content."""
    head = f"# Managed by ccfo (server job {job}): enable and disable it through ccfo, not by hand.\n"
    path.write_text(head + ("" if enabled else "#ccfo-disabled# ") + line + "\n")
    path.chmod(0o644)


def _pids_naming(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have an empty one and are skipped)."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            out.append(int(entry.name))
    return out
