"""The real agent process (`python -m controller agent ...`) against a stand-in controller (a tiny HTTP
receiver here) and the lab AMI server: heartbeats arrive with the agent token, a crashed service shows in a
pushed report within one heartbeat, AMI loss reads "not connected" (never "all lines down"), no token means
no start, SIGTERM stops the agent and leaves the managed services running."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents import lab_services
from agents.lab_services import alive
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "runtime-test-agent-token-0123456789"
AMI_SECRET = "runtime-test-ami-secret"
HEARTBEAT_S = 1.0


@dataclass
class Pushed:
    at: float
    auth: str | None
    report: dict[str, Any]


@dataclass
class Receiver:
    """The controller's report endpoint, and nothing else."""

    pushes: list[Pushed] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reports(self) -> list[Pushed]:
        with self.lock:
            return list(self.pushes)

    def last(self) -> dict[str, Any] | None:
        pushes = self.reports()
        return pushes[-1].report if pushes else None


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/api/v1/agents/ipc-a/report":
                with rec.lock:
                    rec.pushes.append(Pushed(time.monotonic(), self.headers.get("Authorization"), json.loads(body)))
            self.send_response(204 if self.path.endswith("/report") else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def services(run: Path) -> dict[str, Any]:
    def svc(name: str, **kw: Any) -> dict[str, Any]:
        return {**kw, **{verb: lab_services.command(verb, name, run) for verb in ("start", "stop", "status")}}
    return {"cti": svc("cti", runs_as=["primary", "takeover"], critical=True),
            "ivr": svc("ivr", runs_as=["primary", "takeover"], critical=True),
            "kcxp": svc("kcxp", runs_as=["primary", "standby"]),
            "kcxp-replica": svc("kcxp-replica", runs_as=["takeover"])}


def write_config(root: Path, controller_url: str, ami_port: int, *, token: bool = True) -> Path:
    cfg = root / "config"
    (cfg / "secrets").mkdir(parents=True)
    (cfg / "secrets" / "ami-secret").write_text(AMI_SECRET + "\n")
    if token:
        (cfg / "secrets" / "agent-token").write_text(TOKEN + "\n")
    for secret in (cfg / "secrets").iterdir():
        secret.chmod(0o600)  # the agent refuses secrets that others can read
    shutil.copy(REPO / "config" / "rules.yaml", cfg / "rules.yaml")

    def host(role: str, address: str) -> dict[str, Any]:
        return {"role": role, "address": address,
                "agent": {"url": f"http://{address}:9101", **({"token_file": "secrets/agent-token"} if token else {})},
                "ami": {"host": "127.0.0.1", "port": ami_port, "secret_file": "secrets/ami-secret",
                        "ping_interval_s": 0.5, "ping_timeout_s": 0.5},
                "board": {"spans": [{"span": 1, "channels": 30}, {"span": 2, "channels": 30}]},
                "service_backend": "command", "services": services(root / "run"),
                "db_config_files": [{"id": "cti-db", "path": "etc/db.properties", "format": "keyvalue",
                                     "key": "db.host", "readers": ["cti"]}],
                "backup_dir": "var/backups"}
    site = {"site": {"name": "runtime-test"},
            "hosts": {"ipc-a": host("primary", "127.0.0.1"), "ipc-b": host("standby", "127.0.0.2")},
            "databases": {"active": "shenzhen", "sites": {"shenzhen": {"host": "10.30.0.10"},
                                                         "shanghai": {"host": "10.40.0.10"}}},
            "controller": {"url": controller_url, "heartbeat_s": HEARTBEAT_S}}
    (cfg / "site.yaml").write_text(json.dumps(site, indent=1))  # JSON is YAML
    (cfg / "etc").mkdir()
    (cfg / "etc" / "db.properties").write_text("db.host=10.30.0.10\n")
    return cfg


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def start_agent(root: Path, cfg: Path, *extra: str) -> Agent:
    ready = root / "agent-ready.json"
    log = root / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controller", "agent", "--config", str(cfg), "--host", "ipc-a",
                                 "--listen", "127.0.0.1:0", "--ready-file", str(ready), *extra],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=20, describe=log.read_text)
    assert proc.poll() is None, log.read_text()
    return Agent(proc, json.loads(ready.read_text()), log)


@pytest.fixture
def lab_ami(tmp_path: Path) -> Iterator[dict[str, Any]]:
    proc, info = start_lab_ami(tmp_path)
    try:
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stop_daemons(run: Path) -> None:
    for pidfile in run.glob("*.pid"):
        subprocess.run(lab_services.command("stop", pidfile.stem, run), check=False, timeout=10)


def test_heartbeats_and_a_crash_within_one_heartbeat(tmp_path: Path, receiver: tuple[Receiver, str],
                                                    lab_ami: dict[str, Any]) -> None:
    rec, url = receiver
    run = tmp_path / "run"
    agent = start_agent(tmp_path, write_config(tmp_path, url, lab_ami["ami_port"]))
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for action_id, service in (("rt-1", "cti"), ("rt-2", "ivr")):  # through the real process's API
            answer = httpx.post(f"{agent.ready['api']}/v1/actions", headers=auth, timeout=20,
                                json={"action_id": action_id, "action": "start", "service": service})
            assert answer.status_code == 200 and answer.json()["status"] == "done", answer.text
        report = wait_until(lambda: (r := rec.last()) and r["ami"]["connected"] and r["spans"]
                            and r["services"]["cti"]["state"] == "active" and r, timeout=10, describe=rec.last)
        assert [(s["span"], s["alarm"], s["dchannel"], s["healthy"]) for s in report["spans"]] == [
            (1, "ok", "up", True), (2, "ok", "up", True)]
        assert report["channels"] == {"available": 60, "free": 60} and report["db"]["site"] == "shenzhen"
        assert report["board"]["driver"] == "up"  # no driver commands configured: the AMI view decides
        first = len(rec.reports())
        wait_until(lambda: len(rec.reports()) >= first + 2, timeout=3 * HEARTBEAT_S + 2)  # unchanged: heartbeats
        beats = rec.reports()[-2:]
        assert 0.5 * HEARTBEAT_S <= beats[1].at - beats[0].at <= 1.6 * HEARTBEAT_S
        assert beats[1].report["seq"] > beats[0].report["seq"]
        assert all(p.auth == f"Bearer {TOKEN}" for p in rec.reports())

        os.kill(int((run / "cti.pid").read_text()), signal.SIGKILL)
        killed = time.monotonic()
        crash = wait_until(lambda: next((p for p in rec.reports() if p.at > killed
                                         and p.report["services"]["cti"]["state"] == "failed"), None),
                           timeout=5, describe=rec.last)
        assert crash.at - killed <= HEARTBEAT_S, f"crash reported after {crash.at - killed:.2f} s"
        ivr = int((run / "ivr.pid").read_text())
        assert agent.stop() == 0
        assert alive(ivr)  # the agent's exit never takes the services down
        text = agent.log.read_text()
        assert TOKEN not in text and AMI_SECRET not in text
        assert "rt-1 start cti by agent-token" in text
    finally:
        agent.stop()
        stop_daemons(run)


def test_ami_unreachable_reads_not_connected_and_lab_token(tmp_path: Path, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    cfg = write_config(tmp_path, url, closed.getsockname()[1], token=False)
    agent = start_agent(tmp_path, cfg, "--lab", "--state-dir", str(tmp_path / "state"))
    try:
        token = (tmp_path / "state" / "agent-token").read_text().strip()
        report = wait_until(rec.last, timeout=5)
        assert report["ami"]["connected"] is False and report["ami"]["error"]
        assert report["spans"] is None and report["calls"] is None and report["channels"] is None
        assert report["services"]["cti"]["state"] == "inactive"
        assert rec.reports()[0].auth == f"Bearer {token}"
        assert httpx.get(f"{agent.ready['api']}/v1/report", timeout=5).status_code == 401
        assert agent.stop() == 0
        assert token not in agent.log.read_text()
    finally:
        agent.stop()
        closed.close()
        stop_daemons(tmp_path / "run")


def test_no_token_no_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", 9, token=False)
    done = subprocess.run([sys.executable, "-m", "controller", "agent", "--config", str(cfg), "--host", "ipc-a",
                           "--listen", "127.0.0.1:0"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "no agent token configured" in done.stderr and "refusing to start" in done.stderr


# --- the reporter alone ------------------------------------------------------------------------------------

def _report(seq: int, state: str = "active") -> dict[str, Any]:
    return {"host": "ipc-a", "time": float(seq), "seq": seq, "ami": {"connected": False, "last_ok": None},
            "services": {"cti": {"state": state, "since": 0.0}}}


@pytest.mark.asyncio
async def test_reporter_pushes_on_change_at_once_and_heartbeats_otherwise() -> None:
    import asyncio

    from agents.auth import Token
    from agents.reporter import Reporter
    from tests.support import async_wait_until

    state = {"cti": "active", "seq": 0}
    got: list[tuple[float, str | None, dict[str, Any]]] = []

    async def build() -> dict[str, Any]:
        state["seq"] += 1
        return _report(int(state["seq"]), str(state["cti"]))

    def handler(request: httpx.Request) -> httpx.Response:
        got.append((time.monotonic(), request.headers.get("authorization"), json.loads(request.content)))
        return httpx.Response(204)

    reporter = Reporter(build, "http://controller/api/v1/agents/ipc-a/report", Token("t", "tok-secret"),
                        heartbeat_s=0.3, transport=httpx.MockTransport(handler))
    task = asyncio.create_task(reporter.run())
    try:
        await async_wait_until(lambda: len(got) >= 3, timeout=3)  # idle: one push per heartbeat
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
        assert all(0.2 <= g <= 0.6 for g in gaps), gaps
        before = len(got)
        state["cti"] = "failed"
        poked = time.monotonic()
        reporter.poke()
        await async_wait_until(lambda: any(r["services"]["cti"]["state"] == "failed" for _, _, r in got[before:]))
        arrival = next(t for t, _, r in got[before:] if r["services"]["cti"]["state"] == "failed")
        assert arrival - poked < 0.15  # on change: at once, not at the next heartbeat
        assert {auth for _, auth, _ in got} == {"Bearer tok-secret"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_reporter_logs_failures_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    from agents.auth import Token
    from agents.reporter import Reporter

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # nothing listens: connection refused, for real
    url = f"http://127.0.0.1:{closed.getsockname()[1]}/api/v1/agents/ipc-a/report"
    reporter = Reporter(lambda: None, url, Token("t", "tok-secret"), heartbeat_s=0.1)  # type: ignore[arg-type]
    caplog.set_level("INFO", logger="ccfo.agent.reporter")
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(5):
                assert not await reporter.push(client, _report(1))
        denied = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(401, text="bad token")))
        async with denied:
            for _ in range(3):
                assert not await reporter.push(denied, _report(1))
        ok = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204)))
        async with ok:
            assert await reporter.push(ok, _report(2))
    finally:
        closed.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings  # 8 failures, 2 kinds: connection refused, HTTP 401
    assert "ConnectError: All connection attempts failed (Connection refused)" in warnings[0]
    assert "HTTP 401: bad token" in warnings[1]
    assert any("works again after 8 failed pushes" in r.getMessage() for r in caplog.records)
    assert "tok-secret" not in caplog.text



@pytest.mark.asyncio
async def test_reporter_pushes_to_every_member_and_counts_only_the_acting_leader_as_contact() -> None:
    """A cluster: each report goes to every member; a follower's 2xx is a taken report but not leader
    contact (a primary that reaches only a follower must fence itself); no header is a controller alone."""
    from agents.auth import Token
    from agents.reporter import Reporter, report_urls

    urls = report_urls("http://vip:8080", "0.0.0.0:8080", "ipc-a", ["http://ctl-a:8080", "http://ctl-b:8081/"])
    assert urls == ["http://ctl-a:8080/api/v1/agents/ipc-a/report", "http://ctl-b:8081/api/v1/agents/ipc-a/report"]
    answers: dict[str, httpx.Response | None] = {}
    got: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.append(request.url.host)
        answer = answers[request.url.host]
        if answer is None:
            raise httpx.ConnectError("connection refused", request=request)
        return answer

    contacts: list[int] = []
    reporter = Reporter(lambda: None, urls, Token("t", "tok-secret"),  # type: ignore[arg-type]
                        on_leader=lambda: contacts.append(1))
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        answers.update({"ctl-a": None, "ctl-b": httpx.Response(204, headers={"X-Ccfo-Acting": "no"})})
        assert await reporter.push(client, _report(1)), "a follower took the report"
        assert sorted(got) == ["ctl-a", "ctl-b"] and contacts == [], "a follower's answer is no contact"
        answers["ctl-a"] = httpx.Response(204, headers={"X-Ccfo-Acting": "yes"})
        assert await reporter.push(client, _report(2)) and contacts == [1]
        answers.update({"ctl-a": httpx.Response(503), "ctl-b": None})
        assert not await reporter.push(client, _report(3)) and contacts == [1]
        assert reporter.failed == 1 and reporter.last_error is not None and "http://ctl-" in reporter.last_error
    alone = Reporter(lambda: None, "http://ctl/api/v1/agents/ipc-a/report", Token("t", "s"),  # type: ignore[arg-type]
                     on_leader=lambda: contacts.append(2))
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(204))) as client:
        assert await alone.push(client, _report(4)) and contacts == [1, 2], "no header: a controller alone acts"

def test_runtime_wiring_in_process(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from agents.reporter import report_url
    from agents.runtime import AgentRuntime, Options, StartupError, bind_address
    from ccfo.config.loader import load_config

    loaded = load_config(write_config(tmp_path, "http://127.0.0.1:9", 9))
    with pytest.raises(StartupError, match=r"unknown host 'ipc-z' \(hosts: ipc-a, ipc-b\)"):
        AgentRuntime(loaded, Options("ipc-z"))
    runtime = AgentRuntime(loaded, Options("ipc-b", state_dir=tmp_path / "state"))
    assert runtime.server.host == "127.0.0.2" and runtime.server.port == 9101  # from agent.url
    assert runtime.reporter.url == "http://127.0.0.1:9/api/v1/agents/ipc-b/report"
    assert runtime.services.names() == ["cti", "ivr", "kcxp", "kcxp-replica"]
    assert runtime.token.name == "agent-token" and runtime.executor.routing == ("astdb", "ccfo", "inbound_hosts")
    url = SimpleNamespace(listen=None, url="https://10.20.1.11:9101")
    assert bind_address(Options("x"), url) == ("10.20.1.11", 9101)  # type: ignore[arg-type]
    assert bind_address(Options("x", listen="127.0.1.1:0"), url) == ("127.0.1.1", 0)  # type: ignore[arg-type]
    assert report_url(None, "0.0.0.0:8080", "ipc-a") == "http://127.0.0.1:8080/api/v1/agents/ipc-a/report"


# --- health and readiness ----------------------------------------------------------------------------------

def start_lab_ami(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    secret = tmp_path / "lab-ami-secret"
    secret.write_text(AMI_SECRET)
    ready = tmp_path / "lab-ami.json"
    proc = subprocess.Popen([sys.executable, "-m", "lab.ami", "--port", "0", "--control-port", "0", "--spans",
                             "1:30,2:30", "--secret-file", str(secret), "--ready-file", str(ready)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=20)
    assert proc.poll() is None, "the lab AMI server did not start"
    return proc, json.loads(ready.read_text())


def probe(api: str, path: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{api}{path}", timeout=5)  # no token: load balancers and keepalived have none
    return r.status_code, r.json()


def test_healthz_and_readyz_answer_without_a_token_and_follow_the_ami_session(
        tmp_path: Path, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    ami, info = start_lab_ami(tmp_path)
    agent = start_agent(tmp_path, write_config(tmp_path, url, info["ami_port"]))
    try:
        api = agent.ready["api"]
        assert probe(api, "/healthz") == (200, {"status": "ok"})
        wait_until(lambda: probe(api, "/readyz") == (200, {"status": "ready", "ami": "connected"}), timeout=10,
                   describe=lambda: probe(api, "/readyz"))
        ami.terminate()
        ami.wait(timeout=10)
        wait_until(lambda: probe(api, "/readyz") == (503, {"status": "not ready", "ami": "disconnected"}),
                   timeout=10, describe=lambda: probe(api, "/readyz"))
        assert probe(api, "/healthz") == (200, {"status": "ok"}), "the process still serves"
        r = httpx.get(f"{api}/readyz", timeout=5)
        assert r.headers["cache-control"] == "no-store"
        assert AMI_SECRET not in r.text and TOKEN not in r.text and "127.0.0.1" not in r.text
    finally:
        agent.stop()
        if ami.poll() is None:
            ami.terminate()
            ami.wait(timeout=10)
        stop_daemons(tmp_path / "run")


@pytest.mark.parametrize(("secret", "expected"), [
    (None, (True, "not configured")),  # no AMI on purpose: ready
    ("", (False, "no secret")),  # a configured secret that is empty: not ready
])
def test_readiness_without_ami(tmp_path: Path, secret: str | None, expected: tuple[bool, str]) -> None:
    from agents.runtime import AgentRuntime, NoAmi, Options
    from ccfo.config.loader import load_config

    cfg = write_config(tmp_path, "http://127.0.0.1:9", 9)
    site = json.loads((cfg / "site.yaml").read_text())
    if secret is None:
        del site["hosts"]["ipc-a"]["ami"]["secret_file"]
    else:
        (cfg / "secrets" / "ami-secret").write_text(secret)
    (cfg / "site.yaml").write_text(json.dumps(site))
    runtime = AgentRuntime(load_config(cfg), Options("ipc-a", state_dir=tmp_path / "state"))
    assert isinstance(runtime.ami, NoAmi)
    assert runtime.readiness() == expected
