"""The lab's two IPC hosts and its controller, each in its own network namespace on one bridge (lab/netns.py),
for the self-fencing test: links can be cut with `ip link set ... down`, not processes frozen.

Node `ipc-a` (NET.1) holds the primary: its lab AMI server (the simulated Asterisk), its stand-in services
(real daemons with pid files, agents/lab_services.py) and its real agent; node `ipc-b` (NET.2) the same for
the standby; node `ctl` (NET.3) the real controller and the two database sites' TCP stand-ins (NET.101,
NET.102). The config is the lab's (lab/labconfig.py `build`) on the namespaces' subnet, with
`fencing.method: self` and no inbound routing step (no SIP front here); the controller starts first, in
manual mode, and is put in automatic mode once it sees both hosts. Every process is
started inside its node's namespace (`ip netns exec`); the stand-in daemons the agents start inherit it.
The test process stays outside: it reads the pid files (the process table is shared; only the network is
not) and asks the controller's API through `curl` run inside `ctl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from lab.labconfig import LabLayout, _svc_cmd, build
from lab.netns import NetnsLab
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("ipc-a", "ipc-b")
CRITICAL = ("cti", "ivr")
DB_SERVER = """
import asyncio, sys
from lab.pdu import LabDatabase
async def main():
    for i, (host, port) in enumerate(zip(sys.argv[1::2], sys.argv[2::2])):
        await LabDatabase(f"db{i}", host, int(port)).start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


def pid_running(run_dir: Path, name: str) -> bool:
    """A stand-in service runs: its pid file names a live process (what `lab_services status` answers)."""
    try:
        pid = int((run_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, OSError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class NetnsSite:
    def __init__(self, root: Path, net: NetnsLab, *, after_s: float, margin_s: float) -> None:
        self.root, self.net = root, net
        self.after_s, self.margin_s = after_s, margin_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in (*HOSTS, "ctl"):  # in this order: ipc-a at NET.1, ipc-b at NET.2, the controller at NET.3
            net.add_node(name)
        self.prefix = net.prefix
        self.layout = LabLayout(root / "lab", net=self.prefix, controller_listen=f"{self.prefix}.3:8080",
                                debounce_s=1.0, mode="manual")
        self.site: dict[str, Any] = {}

    @property
    def api(self) -> str:
        return f"http://{self.layout.controller_listen}"

    @property
    def control(self) -> str:
        """A host's lab AMI control endpoint, on the loopback of the host's own namespace."""
        return f"http://127.0.0.1:{self.layout.control_port}"

    def run_dir(self, host: str) -> Path:
        return self.layout.run_dir(host)

    def running(self, host: str) -> frozenset[str]:
        """The critical services (CTI, IVR) whose process lives on `host` now."""
        return frozenset(s for s in CRITICAL if pid_running(self.run_dir(host), s))

    def log(self, name: str) -> Path:
        return self.layout.root / "logs" / f"{name}.log"

    # --- bring-up ---------------------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> None:
        lay = self.layout
        self.site = build(REPO / "config", lay)
        self.site["fencing"] = {"method": "self", "self_fence_after_s": self.after_s,
                                "self_fence_margin_s": self.margin_s}
        self.site["routing"] = {"method": "none"}  # no SIP front in the namespaces
        for host, spec in self.site["hosts"].items():  # the lab AMI's control binds loopback only: its node's own
            driver = spec["board"]["driver_service"]
            spec["board"]["driver"] = {verb: _svc_cmd(verb, driver, self.run_dir(host), self.control)
                                       for verb in ("start", "stop", "status")}
        (lay.config / "site.yaml").write_text(yaml.safe_dump(self.site, sort_keys=False))
        self._db_files()
        dbs = [(db["host"], db["port"]) for db in self.site["databases"]["sites"].values()]
        for host, _ in dbs:
            self.net.add_address("ctl", host)
        self._spawn("db", "ctl", [sys.executable, "-c", DB_SERVER, *(str(x) for pair in dbs for x in pair)])
        # the controller first, in manual mode: an agent that no controller answers for after_s fences itself
        # (even at start-up), and a controller in automatic mode would fail over from a primary not booted yet
        ready = lay.root / "controller.ready"
        self._spawn("controller", "ctl", [sys.executable, "-m", "controller", "controller", "--config",
                                          str(lay.config), "--ready-file", str(ready)])
        self._wait_ready("controller", ready, timeout)
        for host in HOSTS:
            self._boot_host(host, timeout)
        wait_until(lambda: self._healthy(self.get("/api/v1/status")) or None, timeout=timeout,
                   describe=lambda: {k: v for k, v in self.get("/api/v1/status").items() if k in ("hosts", "faults")})
        self.call("PUT", "/api/v1/mode", {"mode": "automatic", "reason": "the netns site is up"}, role="admin")

    @staticmethod
    def _healthy(status: dict[str, Any]) -> bool:
        """Both hosts reachable, no fault, nothing running or proposed: automatic mode would do nothing."""
        return (all(h["reachable"] for h in status["hosts"].values()) and not status["faults"]
                and status["running_plan"] is None)

    def _db_files(self) -> None:
        """Each host's database config files, naming the active database site (as the lab writes them)."""
        active = self.site["databases"]["active"]
        db = self.site["databases"]["sites"][active]
        for host in self.site["hosts"].values():
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

    def _boot_host(self, host: str, timeout: float) -> None:
        lay, spec = self.layout, self.site["hosts"][host]
        addr = spec["address"]
        spans = ",".join(f"{s['span']}:{s['channels']}" for s in spec["board"]["spans"])
        ami_ready = lay.host_dir(host) / "ami.ready"
        self._spawn(f"{host}-ami", host, [
            sys.executable, "-m", "lab.ami", "--host", addr, "--port", str(lay.ami_port), "--control-host", "127.0.0.1",
            "--control-port", str(lay.control_port), "--spans", spans, "--fax", str(spec.get("fax_channels", 4)),
            "--trunks", ",".join(f"{t['name']}:{t.get('driver', 'pjsip')}:{t['channels']}"
                                 for t in spec.get("trunks", [])),
            "--secret-file", str(lay.config / "secrets" / "ami-secret"), "--login-fail-delay", "0.2",
            "--ready-file", str(ami_ready)])
        self._wait_ready(f"{host}-ami", ami_ready, timeout)
        control = self.control
        self._service(host, spec["board"]["driver_service"], control)
        for svc, s in spec["services"].items():
            if spec["role"] in s.get("runs_as", []):
                self._service(host, svc)
        agent_ready = lay.host_dir(host) / "agent.ready"
        self._spawn(f"{host}-agent", host, [
            sys.executable, "-m", "controller", "agent", "--config", str(lay.config), "--host", host, "--lab",
            "--state-dir", str(lay.host_dir(host) / "agent"), "--ready-file", str(agent_ready),
            "--lab-ami-control", control])
        self._wait_ready(f"{host}-agent", agent_ready, timeout)

    def _service(self, host: str, name: str, control: str | None = None) -> None:
        argv = self.net.exec_argv(host, _svc_cmd("start", name, self.run_dir(host), control))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO)
        assert done.returncode == 0, f"{host}: start {name}: {done.stdout}{done.stderr}"

    def _spawn(self, name: str, node: str, argv: list[str]) -> None:
        path = self.log(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(self.net.exec_argv(node, argv), stdout=out, stderr=out, cwd=REPO,
                                                start_new_session=True)

    def _wait_ready(self, name: str, ready: Path, timeout: float) -> None:
        proc = self.procs[name]
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=timeout,
                   describe=lambda: self.log(name).read_text()[-2000:])
        assert proc.poll() is None, f"{name} exited during start-up: {self.log(name).read_text()[-2000:]}"

    # --- the controller's API, asked from inside its namespace ---------------------------------------

    def get(self, path: str, role: str = "viewer") -> Any:
        return self.call("GET", path, role=role)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, role: str = "viewer") -> Any:
        token = (self.layout.config / "secrets" / f"{role}.token").read_text().strip()
        argv = ["curl", "-sS", "--fail-with-body", "--max-time", "5", "-X", method,
                "-H", f"Authorization: Bearer {token}", self.api + path]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        done = subprocess.run(self.net.exec_argv("ctl", argv), capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, f"{method} {path}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    # --- tear-down -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process: the children, then the stand-in daemons the agents or the test started."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            del name
        for host in HOSTS:
            for pidfile in self.run_dir(host).glob("*.pid"):
                with contextlib.suppress(ValueError, OSError):
                    os.killpg(int(pidfile.read_text().strip()), signal.SIGKILL)
