"""The agent's smaller profile, for a managed server (site.yaml `servers`): the real agent process without AMI or
board starts, heartbeats to a stand-in controller, reports its services, files and jobs, restarts a service,
repoints its whitelisted file, lists its cron job with the next run and disables/enables it by rewriting the cron
file; the board actions are refused. The systemd timer backend is driven through a stand-in `systemctl` script
(no systemd in the test machine), the one thing mocked here."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents import lab_services
from agents.jobs import CronJobs, JobSpec, SystemdTimers
from ccfo.domain.schedule import parse_cron
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "server-profile-test-token-0123456789"
HEARTBEAT_S = 0.5
SERVER = "app-1"
CRON = "15 2 * * *"


@dataclass
class Receiver:
    """The controller's report endpoint for the server, and nothing else."""

    pushes: list[tuple[float, str | None, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def last(self) -> dict[str, Any] | None:
        with self.lock:
            return self.pushes[-1][2] if self.pushes else None

    def count(self) -> int:
        with self.lock:
            return len(self.pushes)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == f"/api/v1/agents/{SERVER}/report":
                with rec.lock:
                    rec.pushes.append((time.monotonic(), self.headers.get("Authorization"), json.loads(body)))
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


def write_config(root: Path, controller_url: str) -> Path:
    cfg, run = root / "config", root / "run"
    (cfg / "secrets").mkdir(parents=True)
    (cfg / "secrets" / "agent-token").write_text(TOKEN + "\n")
    (cfg / "secrets" / "agent-token").chmod(0o600)
    shutil.copy(REPO / "config" / "rules.yaml", cfg / "rules.yaml")
    (root / "etc").mkdir()
    (root / "etc" / "datasource.properties").write_text("jdbc.url=jdbc:oracle:thin:@10.30.0.10:1521:fund\n")
    (root / "cron.d").mkdir()

    def host(role: str, n: int) -> dict[str, Any]:
        return {"role": role, "address": f"127.0.0.{n}", "agent": {"url": f"http://127.0.0.{n}:9101",
                                                                   "token_file": "secrets/agent-token"},
                "board": {"spans": [{"span": 1, "channels": 30}]},
                "services": {"cti": {"runs_as": ["primary", "takeover"], "critical": True},
                             "ivr": {"runs_as": ["primary", "takeover"], "critical": True},
                             "kcxp-replica": {"runs_as": ["takeover"]}}}
    site = {"site": {"name": "server-test"},
            "hosts": {"ipc-a": host("primary", 1), "ipc-b": host("standby", 2)},
            "databases": {"active": "shenzhen", "sites": {"shenzhen": {"host": "10.30.0.10"},
                                                         "shanghai": {"host": "10.40.0.10"}}},
            "controller": {"url": controller_url, "heartbeat_s": HEARTBEAT_S},
            "datacenters": {"shenzhen": {}, "shanghai": {}},
            "servers": {SERVER: {
                "datacenter": "shenzhen", "kind": "application",
                "agent": {"url": "http://127.0.0.3:9101", "token_file": "secrets/agent-token"},
                "service_backend": "command",
                "services": {"appserver": {verb: lab_services.command(verb, "appserver", run)
                                           for verb in ("start", "stop", "status")}},
                "db_config_files": [{"id": "app-datasource", "path": str(root / "etc" / "datasource.properties"),
                                     "format": "keyvalue", "key": "jdbc.url",
                                     "value": "jdbc:oracle:thin:@{host}:{port}:fund", "readers": ["appserver"]}],
                "backup_dir": str(root / "backups"),
                "jobs": {"ta-load": {"backend": "cron", "schedule": CRON, "command": "/opt/ta/bin/load --all",
                                     "user": "taimport", "cron_file": str(root / "cron.d" / "ta-load")}}}}}
    (cfg / "site.yaml").write_text(json.dumps(site, indent=1))  # JSON is YAML
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


def start_agent(root: Path, cfg: Path) -> Agent:
    ready, log = root / "agent-ready.json", root / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controller", "agent", "--config", str(cfg), "--host", SERVER,
                                 "--listen", "127.0.0.1:0", "--ready-file", str(ready),
                                 "--state-dir", str(root / "state")],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=20, describe=log.read_text)
    assert proc.poll() is None, log.read_text()
    return Agent(proc, json.loads(ready.read_text()), log)


def action(agent: Agent, action_id: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{agent.ready['api']}/v1/actions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20,
                      json={"action_id": action_id, **body})


def test_the_server_agent_heartbeats_reports_and_runs_its_actions_and_jobs(tmp_path: Path,
                                                                          receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    run = tmp_path / "run"
    agent = start_agent(tmp_path, write_config(tmp_path, url))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert agent.ready["profile"] == "server"
        report = wait_until(rec.last, timeout=10, describe=agent.log.read_text)
        assert (report["host"], report["profile"], report["role"], report["board"]) == (SERVER, "server", "active",
                                                                                        None)
        assert report["ami"]["state"] == "none" and report["spans"] is None
        assert report["services"]["appserver"]["state"] == "inactive"
        assert report["db"]["site"] == "shenzhen"
        assert [(j["name"], j["state"]) for j in report["jobs"]] == [("ta-load", "absent")]
        first = rec.count()
        wait_until(lambda: rec.count() >= first + 2, timeout=4 * HEARTBEAT_S + 2)  # heartbeats, nothing changed

        r = action(agent, "s-1", action="restart", service="appserver")
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        assert wait_until(lambda: (x := rec.last()) and x["services"]["appserver"]["state"] == "active", timeout=5)

        r = action(agent, "s-2", action="repoint_db", to_site="shanghai")
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert (tmp_path / "etc" / "datasource.properties").read_text() == \
            "jdbc.url=jdbc:oracle:thin:@10.40.0.10:1521:fund\n"
        assert len(list((tmp_path / "backups").glob("app-datasource.*.bak"))) == 1

        cron = tmp_path / "cron.d" / "ta-load"
        r = action(agent, "s-3", action="job_enable", job="ta-load")
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert cron.read_text().splitlines()[-1] == f"{CRON} taimport /opt/ta/bin/load --all"
        assert cron.stat().st_mode & 0o777 == 0o644  # cron ignores group- or other-writable files
        listed = httpx.get(f"{agent.ready['api']}/v1/jobs", headers=auth, timeout=5).json()["jobs"]
        (job,) = listed
        assert job["state"] == "enabled" and job["schedule"] == CRON
        now = datetime.now().astimezone()
        expected = parse_cron(CRON).next_run(now).timestamp()
        assert job["next_run"] == pytest.approx(expected, abs=60), "the next 02:15 local time"

        r = action(agent, "s-4", action="job_disable", job="ta-load")
        assert r.status_code == 200 and r.json()["ok"], r.text
        assert cron.read_text().splitlines()[-1] == f"#ccfo-disabled# {CRON} taimport /opt/ta/bin/load --all"
        assert wait_until(lambda: (x := rec.last()) and x["jobs"][0]["state"] == "disabled", timeout=5)
        assert rec.last()["jobs"][0]["next_run"] is None

        refused = action(agent, "s-5", action="isolate_board")
        assert refused.status_code == 400 and "a managed server has no board" in refused.text
        unknown = action(agent, "s-6", action="job_enable", job="nightly")
        assert unknown.status_code == 400 and "unknown job 'nightly' on app-1 (jobs: ta-load)" in unknown.text
        assert httpx.get(f"{agent.ready['api']}/v1/jobs", timeout=5).status_code == 401

        pid = int((run / "appserver.pid").read_text())
        assert agent.stop() == 0
        assert lab_services.alive(pid), "the agent's exit leaves the managed services running"
        assert TOKEN not in agent.log.read_text()
    finally:
        agent.stop()
        for pidfile in run.glob("*.pid"):
            subprocess.run(lab_services.command("stop", pidfile.stem, run), check=False, timeout=10)


def test_a_hand_edited_cron_file_is_kept_before_the_agent_rewrites_it(tmp_path: Path) -> None:
    path = tmp_path / "ta-load"
    path.write_text("0 3 * * * root /usr/local/bin/something-else\n")
    spec = JobSpec("ta-load", "cron", CRON, "/opt/ta/bin/load", "taimport", path)
    cron = CronJobs(tmp_path / "backups")
    assert cron.status(spec).state == "unknown"
    assert cron.set(spec, False).state == "disabled"
    (kept,) = (tmp_path / "backups").glob("job-ta-load.*.cron.bak")
    assert kept.read_text() == "0 3 * * * root /usr/local/bin/something-else\n"
    assert cron.set(spec, True).state == "enabled"
    assert len(list((tmp_path / "backups").iterdir())) == 1, "ccfo's own content is not backed up again"


def test_systemd_timers_through_systemctl(tmp_path: Path) -> None:
    state = tmp_path / "enabled"
    fake = tmp_path / "systemctl"  # a stand-in for systemctl: no systemd here
    fake.write_text(f"""#!{sys.executable}
import sys, pathlib
state = pathlib.Path({str(state)!r})
args = sys.argv[1:]
if args[0] == "is-enabled":
    print("enabled" if state.exists() else "disabled")
elif args[0] == "enable":
    assert args[1:] == ["--now", "sms-send.timer"], args
    state.write_text("1")
elif args[0] == "disable":
    state.unlink(missing_ok=True)
elif args[0] == "show":
    print("@1796526000" if state.exists() else "")
""")
    fake.chmod(0o755)
    timers = SystemdTimers((str(fake),))
    spec = JobSpec("sms-send", "systemd", timer="sms-send.timer")
    assert timers.status(spec).state == "disabled"
    on = timers.set(spec, True)
    assert (on.state, on.next_run, on.where) == ("enabled", 1796526000.0, "sms-send.timer")
    assert timers.set(spec, False).state == "disabled" and not state.exists()
