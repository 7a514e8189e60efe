"""AMI event ingestion throughput of the agent (`AmiMonitor`), beside two references measured in the same run.

The lab AMI server runs in its own process (`python -m lab.ami`) and, on `POST /blast`, sends N complete
agent-call event sequences (16 call-class events each: Newchannel, DAHDIChannel, Newstate,
BridgeCreate/Enter/Leave/Destroy, HangupRequest, Hangup) to every logged-in session as fast as TCP lets
it. Each client runs alone in this process, on one core, and is timed from the request until it has
handled the last event:

* **agent**: `agents.ami.AmiMonitor` - panoramisk parsing (our tolerant protocol), conversion to
  `AmiMessage`, the queue, the X/Y/fax model, snapshot and change notification;
* **panoramisk**: a plain `panoramisk.Manager` with one `'*'` handler that only counts;
* **baseline**: a bare asyncio protocol that splits at CRLF CRLF and parses headers into a dict.

    .venv/bin/python -m bench.ami_ingest [--calls 6000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from lab.ami.blast import EVENTS_PER_CALL

SECRET = "bench-secret"
REPO = Path(__file__).resolve().parents[1]


class _Baseline(asyncio.Protocol):
    """The least a client can do: split messages, parse `Key: value` lines, count events."""

    def __init__(self) -> None:
        self.buf = b""
        self.events = 0
        self.responses = 0

    def data_received(self, data: bytes) -> None:
        parts = (self.buf + data).split(b"\r\n\r\n")
        self.buf = parts.pop()
        for part in parts:
            headers = {}
            for line in part.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(": ")
                headers[key] = value
            if "Event" in headers:
                self.events += 1
            elif "Response" in headers:
                self.responses += 1


async def _run_baseline(port: int, blast: Callable[[], Awaitable[None]], events: int) -> float:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Baseline, "127.0.0.1", port)
    transport.write(f"Action: Login\r\nUsername: ccfo\r\nSecret: {SECRET}\r\nEvents: call\r\n\r\n".encode())
    while not proto.responses:
        await asyncio.sleep(0.001)
    elapsed = await _timed(blast, lambda: proto.events >= events)
    transport.close()
    return elapsed


async def _run_panoramisk(port: int, blast: Callable[[], Awaitable[None]], events: int) -> float:
    from panoramisk import Manager

    count = [0]
    manager = Manager(host="127.0.0.1", port=port, username="ccfo", secret=SECRET, events="call",
                      ping_delay=3600, loop=asyncio.get_running_loop())
    manager.register_event("*", lambda _m, _e: count.__setitem__(0, count[0] + 1))
    await manager.connect()
    await asyncio.wait_for(manager.authenticated_future, 5)
    count[0] = 0
    elapsed = await _timed(blast, lambda: count[0] >= events)
    manager.close()
    return elapsed


async def _run_agent(port: int, blast: Callable[[], Awaitable[None]], events: int) -> float:
    from agents.ami import AmiMonitor

    monitor = AmiMonitor("127.0.0.1", port, "ccfo", SECRET, reconcile_interval_s=3600, ping_interval_s=3600)
    await monitor.start()
    while not (monitor.link.connected and monitor.reconciles):
        await asyncio.sleep(0.001)
    start = monitor.events_processed
    elapsed = await _timed(blast, lambda: monitor.events_processed - start >= events)
    calls = monitor.snapshot().calls
    await monitor.stop()
    if (calls.ivr, calls.agent) != (0, 0):
        raise RuntimeError(f"the agent's model is off after the burst: {calls}")
    return elapsed


async def _timed(blast: Callable[[], Awaitable[None]], done: Callable[[], bool]) -> float:
    started = time.perf_counter()
    sender = asyncio.get_running_loop().create_task(blast())
    while not done():
        await asyncio.sleep(0.0005)
    elapsed = time.perf_counter() - started
    await sender
    return elapsed


def _start_lab(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    secret, ready = workdir / "secret", workdir / "ready.json"
    secret.write_text(SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.ami", "--host", "127.0.0.1", "--port", "0", "--control-port", "0",
         "--spans", "1:30,2:30", "--secret-file", str(secret), "--ready-file", str(ready), "--log-level", "ERROR"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the lab AMI server did not start")
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    """Events per second per client and round."""
    events = calls * EVENTS_PER_CALL
    with tempfile.TemporaryDirectory() as tmp:
        proc, info = _start_lab(Path(tmp))
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{info['control_port']}", timeout=120) as http:
                async def blast() -> None:
                    reply = await http.post("/blast", json={"calls": calls})
                    reply.raise_for_status()

                runners = {"baseline": _run_baseline, "panoramisk": _run_panoramisk, "agent": _run_agent}
                rates: dict[str, list[float]] = {name: [] for name in runners}
                for _ in range(rounds):
                    for name, run in runners.items():
                        rates[name].append(events / await run(info["ami_port"], blast, events))
                return rates
        finally:
            proc.terminate()
            proc.wait(10)


def run(calls: int = 6000, rounds: int = 3) -> dict[str, float]:
    rates = asyncio.run(measure(calls, rounds))
    med = {name: statistics.median(values) for name, values in rates.items()}
    print(f"AMI ingestion, {calls} agent calls x {EVENTS_PER_CALL} events = {calls * EVENTS_PER_CALL} events per "
          f"round, {rounds} rounds, median events/s (Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print("| client | events/s (median) | rounds | vs baseline |")
    print("|---|---:|---|---:|")
    for name, values in rates.items():
        rounds_text = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {med[name]:,.0f} | {rounds_text} | {med[name] / med['baseline']:.2f} |")
    verdict = "meets" if med["agent"] >= 20_000 else "MISSES"
    print(f"agent {verdict} the 20,000 events/s target ({med['agent']:,.0f} events/s)")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=6000, help="agent calls per burst (16 events each)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    med = run(args.calls, args.rounds)
    sys.exit(0 if med["agent"] >= 20_000 else 1)


if __name__ == "__main__":
    main()
