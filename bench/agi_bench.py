"""FastAGI admission latency over real TCP on loopback, beside a do-nothing AGI responder in the same run.

Each server runs in its own process (the client is this process), so client and server do not share an
event loop. A request is what Asterisk does for `AGI(agi://127.0.0.1:PORT/admit?kind=agent)`: connect,
send the environment block, answer each SET VARIABLE with `200 result=1`, read until the server closes.
The baseline answers the same two commands with no parsing, no capacity check and no timeouts.

    .venv/bin/python -m bench.agi_bench [--requests 10000] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
from typing import Any

ENV = (
    b"agi_network: yes\nagi_network_script: admit?kind=agent\nagi_request: agi://127.0.0.1:4573/admit?kind=agent\n"
    b"agi_channel: SIP/sipp-00000011\nagi_language: en\nagi_type: SIP\nagi_uniqueid: 1795427911.33\n"
    b"agi_version: 20.20.1\nagi_callerid: sipp\nagi_calleridname: sipp caller\nagi_callingpres: 0\n"
    b"agi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 200\nagi_rdnis: unknown\n"
    b"agi_context: from-trunk\nagi_extension: 200\nagi_priority: 4\nagi_enhanced: 0.0\nagi_accountcode: \n"
    b"agi_threadid: 139875737798336\n\n"
)


async def _baseline(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\n\n")
        for command in (b'SET VARIABLE CCFO_REASON "ok"\n', b'SET VARIABLE CCFO_ADMIT "yes"\n'):
            writer.write(command)
            await reader.readline()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _serve(kind: str, port_out: Any) -> None:
    async def main() -> None:
        if kind == "baseline":
            server = await asyncio.start_server(_baseline, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
        else:
            from agents.fastagi import AdmissionServer, LiveCapacity
            from ccfo.domain.capacity import HostLoad
            from ccfo.domain.site import CapacityPolicy

            live = LiveCapacity(60, HostLoad(27, 10), CapacityPolicy(reserve_for_transfers=2))
            admission = AdmissionServer(lambda: live, port=0)
            await admission.start()
            port = admission.port
        port_out.send(port)
        await asyncio.Event().wait()

    asyncio.run(main())


async def _one(port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ENV)
    answers = 0
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(b"200 result=1\n")
        answers += 1
    writer.close()
    if answers != 2:
        raise RuntimeError(f"expected 2 commands, got {answers}")
    return time.perf_counter() - started


async def _run(port: int, requests: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            latencies.append(await _one(port))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(requests: int, concurrencies: list[int]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    rows = []
    for kind in ("baseline", "ccfo"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(kind, child), daemon=True)
        proc.start()
        try:
            port = parent.recv()
            asyncio.run(_run(port, 500, 4))  # warm-up
            for conc in concurrencies:
                lat, wall = asyncio.run(_run(port, requests, conc))
                rows.append({"server": kind, "concurrency": conc, "requests": requests,
                             "p50_ms": _pct(lat, 50) * 1e3, "p90_ms": _pct(lat, 90) * 1e3,
                             "p99_ms": _pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3,
                             "mean_ms": statistics.fmean(lat) * 1e3, "per_s": requests / wall})
        finally:
            proc.terminate()
            proc.join(5)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", default="1,32", help="comma-separated client concurrency levels")
    args = ap.parse_args()
    rows = measure(args.requests, [int(c) for c in args.concurrency.split(",")])
    print("| server | concurrency | requests | p50 ms | p90 ms | p99 ms | max ms | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['max_ms']:.2f} | {r['per_s']:.0f} |")


if __name__ == "__main__":
    main()
