"""Service backends against real processes: the command backend drives real daemons (agents.lab_services,
small sh scripts); systemd is not running in this container, so the systemd backend is tested against a
stand-in `systemctl` placed first on PATH that records its argv and answers like the real one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents import lab_services
from agents.lab_services import alive
from agents.services import (
    CommandBackend,
    ServiceError,
    ServiceManager,
    ServiceNotConfigured,
    ServiceSpec,
    ServiceState,
    ServiceTimeout,
    ServiceVerifyFailed,
    SystemdBackend,
    UnknownService,
)
from agents.services.proc import CommandTimeout, run_command
from agents.services.systemd import map_is_active
from tests.support import async_wait_until

LAB = lab_services.command("VERB", "NAME", "DIR")[:-4]  # python -S -P .../lab_services.py


def lab_spec(directory: Path, name: str) -> ServiceSpec:
    def argv(verb: str) -> tuple[str, ...]:
        return (*LAB, verb, name, "--dir", str(directory))
    return ServiceSpec(name, start=argv("start"), stop=argv("stop"), status=argv("status"))


def pid_of(directory: Path, name: str) -> int:
    return int((directory / f"{name}.pid").read_text())


@pytest.fixture
def piddir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    yield d
    for pidfile in d.glob("*.pid"):  # never leave a daemon behind
        subprocess.run([*LAB, "stop", pidfile.stem, "--dir", str(d)], check=False, timeout=10)


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


# --- command backend ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_command_backend_runs_a_real_daemon(piddir: Path) -> None:
    backend = CommandBackend()
    spec = lab_spec(piddir, "cti")
    assert await backend.status(spec) is ServiceState.INACTIVE
    await backend.start(spec)
    assert await backend.status(spec) is ServiceState.ACTIVE
    first = pid_of(piddir, "cti")
    assert alive(first)
    await backend.restart(spec)
    second = pid_of(piddir, "cti")
    assert second != first and alive(second) and not alive(first)
    await backend.stop(spec)
    assert await backend.status(spec) is ServiceState.INACTIVE
    assert not alive(second)


@pytest.mark.asyncio
async def test_a_crashed_daemon_is_failed(piddir: Path) -> None:
    backend = CommandBackend()
    spec = lab_spec(piddir, "ivr")
    await backend.start(spec)
    os.kill(pid_of(piddir, "ivr"), signal.SIGKILL)
    assert await async_wait_until(lambda: _is(backend, spec, ServiceState.FAILED))


async def _is(backend: CommandBackend, spec: ServiceSpec, state: ServiceState) -> bool:
    return await backend.status(spec) is state


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "state"), [(0, ServiceState.ACTIVE), (3, ServiceState.INACTIVE),
                                             (1, ServiceState.FAILED), (4, ServiceState.FAILED),
                                             (127, ServiceState.FAILED)])
async def test_status_exit_codes(code: int, state: ServiceState) -> None:
    spec = ServiceSpec("x", status=sh(f"exit {code}"))
    assert await CommandBackend().status(spec) is state


@pytest.mark.asyncio
async def test_status_timeout_is_unknown_and_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "sleeper.pid"
    spec = ServiceSpec("x", status=sh(f"sleep 30 & echo $! > {marker}; wait"))
    started = time.monotonic()
    assert await CommandBackend(status_timeout_s=0.3).status(spec) is ServiceState.UNKNOWN
    assert time.monotonic() - started < 5
    sleeper = int(marker.read_text())
    await async_wait_until(lambda: not alive(sleeper), timeout=5)


@pytest.mark.asyncio
async def test_missing_status_command_is_unknown_not_a_crash() -> None:
    backend = CommandBackend()
    assert await backend.status(ServiceSpec("x", status=("/nonexistent/ccfo-status",))) is ServiceState.UNKNOWN
    assert await backend.status(ServiceSpec("x")) is ServiceState.UNKNOWN


@pytest.mark.asyncio
async def test_failed_start_carries_the_exit_code_and_output() -> None:
    spec = ServiceSpec("kcxp", start=sh("echo cannot bind port 7000 >&2; exit 2"))
    with pytest.raises(ServiceError, match=r"kcxp: start command exited 2: cannot bind port 7000"):
        await CommandBackend().start(spec)


@pytest.mark.asyncio
async def test_start_timeout_and_unconfigured_stop() -> None:
    backend = CommandBackend(action_timeout_s=0.3)
    with pytest.raises(ServiceTimeout, match=r"did not finish within 0\.3 s"):
        await backend.start(ServiceSpec("kcbp", start=sh("exec sleep 30")))
    with pytest.raises(ServiceNotConfigured, match="no stop command configured"):
        await backend.stop(ServiceSpec("kcbp"))
    with pytest.raises(ServiceError, match="cannot run"):
        await backend.start(ServiceSpec("kcbp", start=("/nonexistent/ccfo-start",)))


@pytest.mark.asyncio
async def test_a_daemon_holding_stdout_does_not_block_the_start(tmp_path: Path) -> None:
    marker = tmp_path / "bg.pid"
    done = await run_command(sh(f"sleep 30 & echo $! > {marker}; echo started"), timeout_s=5)
    assert (done.returncode, done.output) == (0, "started")
    os.kill(int(marker.read_text()), signal.SIGKILL)


@pytest.mark.asyncio
async def test_run_command_timeout_raises() -> None:
    with pytest.raises(CommandTimeout):
        await run_command(("sleep", "30"), timeout_s=0.2)


# --- the manager: state, since, verified changes, the board driver -------------------------------------

@pytest.mark.asyncio
async def test_manager_tracks_since_and_notifies_changes(piddir: Path) -> None:
    clock = [1000.0]
    changes: list[str] = []
    mgr = ServiceManager(CommandBackend(), {"cti": lab_spec(piddir, "cti")}, lab_spec(piddir, "dahdi"),
                         clock=lambda: clock[0])
    mgr.add_listener(lambda: changes.append("x"))
    assert mgr.services()["cti"].state is ServiceState.UNKNOWN
    await mgr.check_all()
    assert mgr.services()["cti"].state is ServiceState.INACTIVE and mgr.services()["cti"].since == 1000.0
    clock[0] = 1005.0
    await mgr.check("cti")
    assert mgr.services()["cti"].since == 1000.0  # no change, same since
    n = len(changes)
    status = await mgr.start("cti")
    assert status.state is ServiceState.ACTIVE and status.since == 1005.0
    assert len(changes) > n
    stopped = await mgr.stop("cti")
    assert stopped.state is ServiceState.INACTIVE
    assert "dahdi" not in mgr.services() and mgr.has("cti") and not mgr.has("dahdi")
    with pytest.raises(UnknownService):
        await mgr.start("nope")


@pytest.mark.asyncio
async def test_isolate_and_restore_board_drive_the_driver_service(piddir: Path) -> None:
    mgr = ServiceManager(CommandBackend(), {}, lab_spec(piddir, "dahdi"))
    assert (await mgr.restore_board()).state is ServiceState.ACTIVE
    pid = pid_of(piddir, "dahdi")
    assert (await mgr.isolate_board()).state is ServiceState.INACTIVE
    assert not alive(pid)
    assert mgr.driver().state is ServiceState.INACTIVE


@pytest.mark.asyncio
async def test_stop_is_done_only_when_the_service_reports_inactive(piddir: Path) -> None:
    real = lab_spec(piddir, "ivr")
    liar = ServiceSpec("ivr", start=real.start, stop=sh("exit 0"), status=real.status)  # stop does nothing
    mgr = ServiceManager(CommandBackend(), {"ivr": liar}, ServiceSpec("dahdi"), verify_timeout_s=0.3)
    await mgr.start("ivr")
    with pytest.raises(ServiceVerifyFailed, match="service is active, not inactive"):
        await mgr.stop("ivr")
    assert mgr.services()["ivr"].state is ServiceState.ACTIVE


@pytest.mark.asyncio
async def test_poller_sees_a_crash(piddir: Path) -> None:
    mgr = ServiceManager(CommandBackend(), {"cti": lab_spec(piddir, "cti")}, ServiceSpec("dahdi"))
    await mgr.start("cti")
    task = asyncio.create_task(mgr.poll_forever(0.05))
    try:
        os.kill(pid_of(piddir, "cti"), signal.SIGKILL)
        await async_wait_until(lambda: mgr.services()["cti"].state is ServiceState.FAILED, timeout=5,
                               describe=mgr.services)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- systemd, through a stand-in systemctl ---------------------------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
d="$FAKE_SYSTEMCTL_DIR"
echo "$*" >> "$d/calls"
verb="$2"; unit="$3"
case "$verb" in
  is-active)
    [ -e "$d/hang" ] && exec sleep 30
    s=$(cat "$d/$unit" 2>/dev/null || echo inactive); echo "$s"; [ "$s" = active ] && exit 0; exit 3;;
  start|restart)
    [ -e "$d/hang" ] && exec sleep 30
    if [ -e "$d/fail-$verb" ]; then echo "Job for $unit failed because the control process exited." >&2; exit 1; fi
    echo active > "$d/$unit";;
  stop) [ -e "$d/hang-stop" ] && exec sleep 30; echo inactive > "$d/$unit";;
  kill) echo failed > "$d/$5";;
  *) exit 64;;
esac
"""


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """systemd does not run in this container: a stand-in `systemctl` first on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "systemctl"
    exe.write_text(FAKE_SYSTEMCTL)
    exe.chmod(0o755)
    state = tmp_path / "systemd"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_DIR", str(state))
    return state


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines()


@pytest.mark.asyncio
async def test_systemd_argv_and_states(systemctl: Path) -> None:
    backend = SystemdBackend()
    cti = ServiceSpec("cti", unit="cti-server.service")
    assert await backend.status(cti) is ServiceState.INACTIVE
    await backend.start(cti)
    assert await backend.status(cti) is ServiceState.ACTIVE
    await backend.restart(cti)
    await backend.stop(cti)
    await backend.status(ServiceSpec("dahdi"))
    assert calls(systemctl) == [
        "--no-ask-password is-active cti-server.service",
        "--no-ask-password start cti-server.service",
        "--no-ask-password is-active cti-server.service",
        "--no-ask-password restart cti-server.service",
        "--no-ask-password stop cti-server.service",
        "--no-ask-password is-active dahdi.service",
    ]
    (systemctl / "ivr.service").write_text("failed\n")
    assert await backend.status(ServiceSpec("ivr")) is ServiceState.FAILED
    (systemctl / "ivr.service").write_text("activating\n")
    assert await backend.status(ServiceSpec("ivr")) is ServiceState.UNKNOWN


@pytest.mark.asyncio
async def test_systemd_failure_and_timeout(systemctl: Path) -> None:
    backend = SystemdBackend(status_timeout_s=0.3, action_timeout_s=0.3)
    (systemctl / "fail-start").touch()
    with pytest.raises(ServiceError, match=r"systemctl start kcxp.service exited 1: Job for kcxp.service failed"):
        await backend.start(ServiceSpec("kcxp"))
    (systemctl / "hang").touch()
    assert await backend.status(ServiceSpec("kcxp")) is ServiceState.UNKNOWN
    with pytest.raises(ServiceTimeout):
        await backend.restart(ServiceSpec("kcxp"))


@pytest.mark.asyncio
async def test_systemd_stop_that_hangs_escalates_to_systemctl_kill_sigkill(systemctl: Path) -> None:
    """A hung unit: `systemctl stop` waits on it; after stop_timeout_s the manager kills the whole unit."""
    (systemctl / "cti.service").write_text("active\n")
    (systemctl / "hang-stop").touch()
    mgr = ServiceManager(SystemdBackend(), {"cti": ServiceSpec("cti", stop_timeout_s=0.3)}, ServiceSpec("dahdi"),
                         verify_interval_s=0.02)
    out = await mgr.stop_escalating("cti")
    assert out.escalated and out.status.state is ServiceState.FAILED
    assert "the stop command did not finish within 0.3 s" in out.detail
    assert "escalated to SIGKILL (systemctl kill --signal=SIGKILL cti.service)" in out.detail
    assert "--no-ask-password kill --kill-whom=all --signal=SIGKILL cti.service" in calls(systemctl)


@pytest.mark.asyncio
async def test_systemd_board_isolation_through_the_manager(systemctl: Path) -> None:
    (systemctl / "dahdi.service").write_text("active\n")
    mgr = ServiceManager(SystemdBackend(), {"cti": ServiceSpec("cti")}, ServiceSpec("dahdi"))
    assert (await mgr.isolate_board()).state is ServiceState.INACTIVE
    assert "--no-ask-password stop dahdi.service" in calls(systemctl)


@pytest.mark.parametrize(("code", "text", "state"), [
    (0, "active", ServiceState.ACTIVE), (3, "inactive", ServiceState.INACTIVE), (3, "failed", ServiceState.FAILED),
    (0, "reloading", ServiceState.ACTIVE), (3, "deactivating", ServiceState.UNKNOWN), (0, "", ServiceState.ACTIVE),
    (1, "", ServiceState.UNKNOWN)])
def test_is_active_mapping(code: int, text: str, state: ServiceState) -> None:
    assert map_is_active(code, text) is state
