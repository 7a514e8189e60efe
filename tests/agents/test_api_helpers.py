"""Shared builders for the agent API and action tests (no tests here): a host with real lab daemons as its
services, a real config file to repoint, and a small fake of the AMI side (the AmiPort protocol)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agents import lab_services
from agents.actions import ActionExecutor
from agents.auth import Token
from agents.files import ConfigFiles, DbTarget, FileSpec
from agents.idempotency import ResultStore
from agents.report import ReportBuilder, driver_state
from agents.services import CommandBackend, ServiceManager, ServiceSpec, ServiceState

LAB = lab_services.command("VERB", "NAME", "DIR")[:-4]  # python -S -P .../lab_services.py
TOKEN = Token("controller-token", "s3cret-agent-token-0123456789")
SITES = {"shenzhen": DbTarget("shenzhen", "10.30.0.10", 1521), "shanghai": DbTarget("shanghai", "10.40.0.10", 1521)}


@dataclass(frozen=True)
class Span:
    span: int
    alarm: str = "ok"
    dchannel: str = "up"
    channels: int = 30
    healthy: bool = True


@dataclass(frozen=True)
class Calls:
    ivr: int = 0
    agent: int = 0
    fax: int = 0


@dataclass(frozen=True)
class Snapshot:
    connected: bool = True
    last_ok: float | None = 1000.0
    error: str | None = None
    driver: str = "up"
    spans: tuple[Span, ...] = (Span(1), Span(2))
    calls: Calls = Calls()
    channels_available: int = 60
    channels_free: int = 60


@dataclass
class FakeAmi:
    """The AMI side as the agent's actions and report see it."""

    snap: Snapshot = field(default_factory=Snapshot)
    db: dict[tuple[str, str], str] = field(default_factory=dict)
    line_test_result: dict[str, Any] = field(default_factory=lambda: {"ok": True, "reason": "answered (reason 4)"})
    line_tests: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        return self.snap

    def disconnect(self) -> None:
        self.snap = replace(self.snap, connected=False, error="connection refused")

    async def db_put(self, family: str, key: str, value: str) -> None:
        self.db[(family, key)] = value

    async def line_test(self, number: str, context: str, timeout_s: float) -> dict[str, Any]:
        self.line_tests.append({"number": number, "context": context, "timeout_s": timeout_s})
        return self.line_test_result


def counted_spec(directory: Path, name: str) -> ServiceSpec:
    """A lab daemon whose start and stop commands also log a line each (to count real executions)."""
    def argv(verb: str) -> tuple[str, ...]:
        return (*LAB, verb, name, "--dir", str(directory))
    log = directory / f"{name}.log"
    def logged(verb: str) -> tuple[str, ...]:
        return ("sh", "-c", f'echo {verb} >> "$0" && exec "$@"', str(log), *argv(verb))
    return ServiceSpec(name, start=logged("start"), stop=logged("stop"), status=argv("status"))


def executions(directory: Path, name: str) -> list[str]:
    log = directory / f"{name}.log"
    return log.read_text().split() if log.exists() else []


@dataclass
class Host:
    root: Path
    services: ServiceManager
    files: ConfigFiles
    ami: FakeAmi
    executor: ActionExecutor
    report: ReportBuilder
    db_file: Path

    def stop_daemons(self) -> None:
        for pidfile in (self.root / "run").glob("*.pid"):
            subprocess.run([*LAB, "stop", pidfile.stem, "--dir", str(self.root / "run")], check=False, timeout=10)


def make_host(root: Path, *, store: ResultStore | None = None, verify_timeout_s: float = 5.0) -> Host:
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    services = {"cti": counted_spec(run, "cti"), "ivr": counted_spec(run, "ivr")}
    manager = ServiceManager(CommandBackend(), services, counted_spec(run, "dahdi"), verify_timeout_s=verify_timeout_s)
    db_file = root / "etc" / "db.properties"
    db_file.parent.mkdir(parents=True, exist_ok=True)
    if not db_file.exists():
        db_file.write_text("# CTI database\ndb.host=10.30.0.10\n")
    files = ConfigFiles([FileSpec("cti-db", db_file, "keyvalue", key="db.host")], SITES, root / "backups")
    ami = FakeAmi()
    executor = ActionExecutor("ipc-a", manager, files, ami, hosts=["ipc-a", "ipc-b"], store=store)
    report = ReportBuilder("ipc-a", "primary", manager, files, ami)
    return Host(root, manager, files, ami, executor, report, db_file)


@pytest.mark.parametrize(("service", "connected", "ami_driver", "expected"), [
    (ServiceState.INACTIVE, True, "up", "down"),  # isolated or stopped: down whatever AMI says
    (ServiceState.FAILED, False, None, "down"),
    (ServiceState.ACTIVE, True, "up", "up"),
    (ServiceState.ACTIVE, True, "down", "down"),  # the service runs, Asterisk sees no channels
    (ServiceState.ACTIVE, False, None, "unknown"),  # AMI lost: not the service manager's "up"
    (ServiceState.UNKNOWN, False, None, "unknown"),
])
def test_board_driver_state(service: ServiceState, connected: bool, ami_driver: str | None, expected: str) -> None:
    snap = SimpleNamespace(connected=connected, driver=ami_driver)
    assert driver_state(service, snap) == expected  # type: ignore[arg-type]


def test_board_driver_without_any_ami_link_is_the_service_managers_view() -> None:
    assert driver_state(ServiceState.ACTIVE, None) == "up"
