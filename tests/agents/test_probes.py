"""Liveness probes against real sockets and real processes: a SIGSTOPped daemon is `hung`, a probe that
cannot run is a probe error, a slow probe delays no other, and a hung service's stop escalates to SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents import lab_services
from agents.lab_services import alive
from agents.probes import ProbeRunner, ProbeSpec, ProbeVerdict
from agents.report import ReportBuilder
from agents.services import CommandBackend, ServiceManager, ServiceSpec, ServiceState
from tests.support import async_wait_until

LAB = lab_services.command("VERB", "NAME", "DIR")[:-4]
pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_spec(directory: Path, name: str, stop_timeout_s: float = 5.0) -> ServiceSpec:
    def argv(verb: str) -> tuple[str, ...]:
        return (*LAB, verb, name, "--dir", str(directory))
    return ServiceSpec(name, start=argv("start"), stop=argv("stop"), status=argv("status"), kill=argv("kill"),
                       stop_timeout_s=stop_timeout_s)


def pid_of(directory: Path, name: str) -> int:
    return int((directory / f"{name}.pid").read_text())


@pytest.fixture
def piddir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "run"
    d.mkdir()
    yield d
    for pidfile in d.glob("*.pid"):  # never leave a daemon behind, hung or not
        subprocess.run([*LAB, "kill", pidfile.stem, "--dir", str(d)], check=False, timeout=10)


def start_daemon(directory: Path, name: str) -> int:
    port = free_port()
    (directory / f"{name}.health").write_text(f"127.0.0.1:{port}\n")
    subprocess.run([*LAB, "start", name, "--dir", str(directory)], check=True, timeout=10)
    return port


def http_spec(port: int, failures: int = 2, interval_s: float = 0.2) -> ProbeSpec:
    return ProbeSpec("http", http=f"http://127.0.0.1:{port}/health", interval_s=interval_s,
                     timeout_s=interval_s, failures=failures)


async def test_http_probe_of_a_sigstopped_daemon_says_hung_then_clears_on_sigcont(piddir: Path) -> None:
    port = start_daemon(piddir, "cti")
    seen: list[ProbeVerdict] = []
    runner = ProbeRunner({"cti": http_spec(port)}, is_active=lambda n: True, on_change=lambda n, v: seen.append(v))
    await runner.start()
    try:
        await async_wait_until(lambda: (v := runner.verdict("cti")) and v.last_ok is not None, 5)
        assert not runner.verdict("cti").hung  # type: ignore[union-attr]
        os.killpg(pid_of(piddir, "cti"), signal.SIGSTOP)
        stopped = time.time()
        verdict = await async_wait_until(lambda: (v := runner.verdict("cti")) and v.hung and v, 5)
        assert verdict.failures >= 2
        assert "no answer within 0.2 s" in (verdict.error or "")
        assert verdict.failing_since is not None and verdict.failing_since >= stopped - 0.01
        assert verdict.hung_since is not None and verdict.hung_since - stopped < 2 * 0.2 + 0.2 + 0.5
        os.killpg(pid_of(piddir, "cti"), signal.SIGCONT)
        await async_wait_until(lambda: (v := runner.verdict("cti")) and not v.hung and v.failures == 0, 5)
        assert runner.verdict("cti").error is None  # type: ignore[union-attr]
    finally:
        await runner.stop()


async def test_tcp_probe_needs_expect_to_see_a_hang(piddir: Path) -> None:
    """The kernel completes the handshake for a stopped listener: a bare connect passes, expect fails."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accepts, never sends: a hung process's listening socket
    port = listener.getsockname()[1]
    try:
        runner = ProbeRunner({}, is_active=lambda n: True)
        assert await runner.attempt(ProbeSpec("tcp", tcp=f"127.0.0.1:{port}", timeout_s=0.3)) == "connected"
        with pytest.raises(Exception, match=r"no answer within 0\.3 s"):
            await runner.attempt(ProbeSpec("tcp", tcp=f"127.0.0.1:{port}", expect="OK", timeout_s=0.3))
        closed = free_port()
        with pytest.raises(Exception, match="refused"):
            await runner.attempt(ProbeSpec("tcp", tcp=f"127.0.0.1:{closed}", timeout_s=0.3))
    finally:
        listener.close()


async def test_tcp_probe_reads_the_greeting() -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 CTI ready\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        runner = ProbeRunner({}, is_active=lambda n: True)
        assert await runner.attempt(ProbeSpec("tcp", tcp=f"127.0.0.1:{port}", expect="CTI ready",
                                              timeout_s=1)) == "got 'CTI ready'"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_probe_command_that_cannot_run_is_a_probe_error_not_a_crash() -> None:
    spec = ProbeSpec("command", command=("/nonexistent/ivr-health",), interval_s=0.1, timeout_s=0.1, failures=2)
    runner = ProbeRunner({"ivr": spec}, is_active=lambda n: True)
    await runner.start()
    try:
        verdict = await async_wait_until(lambda: (v := runner.verdict("ivr")) and v.hung and v, 5)
        assert verdict.error is not None and verdict.error.startswith("probe command cannot run: cannot run "
                                                                      "/nonexistent/ivr-health")
        attempts = runner.attempts
        await async_wait_until(lambda: runner.attempts >= attempts + 2, 5)  # the probe task lives on
        assert runner.alive()
    finally:
        await runner.stop()


async def test_command_probe_exit_code_and_timeout() -> None:
    runner = ProbeRunner({}, is_active=lambda n: True)
    assert await runner.attempt(ProbeSpec("command", command=("true",), timeout_s=1)) == "exit 0"
    with pytest.raises(Exception, match="exited 3: sick"):
        await runner.attempt(ProbeSpec("command", command=("sh", "-c", "echo sick; exit 3"), timeout_s=1))
    t0 = time.monotonic()
    with pytest.raises(Exception, match=r"no exit within 0\.2 s"):
        await runner.attempt(ProbeSpec("command", command=("sleep", "5"), timeout_s=0.2))
    assert time.monotonic() - t0 < 2


async def test_a_slow_probe_delays_neither_other_probes_nor_the_loop() -> None:
    """One probe waits its full timeout on a silent peer; the other keeps its 0.1 s rhythm, and the loop
    (the heartbeat's) stays responsive."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    slow = ProbeSpec("tcp", tcp=f"127.0.0.1:{port}", expect="never", interval_s=1.0, timeout_s=1.0, failures=3)
    fast = ProbeSpec("command", command=("true",), interval_s=0.1, timeout_s=0.1, failures=3)
    counts: dict[str, int] = {"slow": 0, "fast": 0}
    runner = ProbeRunner({"slow": slow, "fast": fast}, is_active=lambda n: True,
                         on_change=lambda n, v: counts.__setitem__(n, counts[n] + 1))
    await runner.start()
    lags: list[float] = []
    try:
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            await asyncio.sleep(0.02)
            lags.append(time.monotonic() - t0 - 0.02)
    finally:
        await runner.stop()
        listener.close()
    assert counts["slow"] <= 2  # at most one attempt finished: it waits its timeout
    assert counts["fast"] >= 8, counts  # ~15 in 1.5 s; 8 leaves room for a loaded machine
    assert max(lags) < 0.25, max(lags)


async def test_inactive_services_are_not_probed_and_reset() -> None:
    state = {"active": False}
    spec = ProbeSpec("command", command=("false",), interval_s=0.05, timeout_s=0.05, failures=1)
    runner = ProbeRunner({"cti": spec}, is_active=lambda n: state["active"])
    await runner.start()
    try:
        await asyncio.sleep(0.3)
        assert runner.attempts == 0
        state["active"] = True
        await async_wait_until(lambda: (v := runner.verdict("cti")) and v.hung, 5)
        state["active"] = False
        await async_wait_until(lambda: (v := runner.verdict("cti")) and not v.hung and v.failures == 0, 5)
    finally:
        await runner.stop()


def manager_for(piddir: Path, stop_timeout_s: float) -> ServiceManager:
    driver = ServiceSpec("dahdi", start=("true",), stop=("true",), status=("true",))
    return ServiceManager(CommandBackend(status_timeout_s=5), {"cti": lab_spec(piddir, "cti", stop_timeout_s)},
                          driver, verify_interval_s=0.05)


class _Files:
    sites: tuple[str, ...] = ()

    def current_all(self) -> dict[str, object]:
        return {}


async def test_manager_reports_a_hung_service_with_its_probe_error_and_since(piddir: Path) -> None:
    port = start_daemon(piddir, "cti")
    services = manager_for(piddir, 1.0)
    await services.check_all()
    runner = ProbeRunner({"cti": http_spec(port)}, on_change=services.set_probe,
                         is_active=lambda n: services.backend_state(n) is ServiceState.ACTIVE)
    services.add_reset_listener(runner.reset)
    changes: list[ServiceState] = []
    services.add_listener(lambda: changes.append(services.effective("cti").state))
    await runner.start()
    try:
        await async_wait_until(lambda: (v := runner.verdict("cti")) and v.last_ok, 5)
        assert services.services()["cti"].state is ServiceState.ACTIVE
        os.killpg(pid_of(piddir, "cti"), signal.SIGSTOP)
        await async_wait_until(lambda: services.services()["cti"].state is ServiceState.HUNG, 5)
        assert changes[-1] is ServiceState.HUNG  # the reporter is poked at once
        report = await ReportBuilder("ipc-a", "primary", services, _Files(), None).build()  # type: ignore[arg-type]
        cti = report["services"]["cti"]
        assert cti["state"] == "hung"
        assert cti["probe"]["hung"] is True and "no answer within" in cti["probe"]["error"]
        assert cti["since"] == cti["probe"]["hung_since"]
        assert cti["probe"]["failing_since"] <= cti["since"]
    finally:
        await runner.stop()


async def test_the_stop_of_a_hung_service_escalates_to_sigkill(piddir: Path) -> None:
    start_daemon(piddir, "cti")
    pid = pid_of(piddir, "cti")
    services = manager_for(piddir, 0.8)
    await services.check_all()
    os.killpg(pid, signal.SIGSTOP)  # SIGTERM stays pending: the lab stop command waits 5 s
    t0 = time.monotonic()
    out = await services.stop_escalating("cti")
    took = time.monotonic() - t0
    assert out.escalated
    assert "did not stop (the stop command did not finish within 0.8 s" in out.detail
    assert "escalated to SIGKILL (kill command" in out.detail
    assert out.status.state is ServiceState.INACTIVE
    assert not alive(pid)
    assert took < 4.0, took


async def test_a_healthy_stop_is_not_escalated(piddir: Path) -> None:
    start_daemon(piddir, "cti")
    services = manager_for(piddir, 3.0)
    await services.check_all()
    out = await services.stop_escalating("cti")
    assert not out.escalated
    assert out.detail.startswith("cti stopped by its stop command (SIGTERM)")
    assert out.status.state is ServiceState.INACTIVE
