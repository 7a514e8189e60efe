"""Child process of bench.controller_failover: N simulated agents, each pushing one report per second.

A raw HTTP/1.1 keep-alive client on asyncio streams (httpx costs more CPU than the server under test on
this 2-core machine, which would measure the client, not the controller)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def report(host: str, seq: int) -> bytes:
    return json.dumps({
        "host": host, "role": "standby", "time": time.time(), "seq": seq, "ami": {"connected": True},
        "board": {"driver": "up"},
        "spans": [{"span": 1, "alarm": "ok", "dchannel": "up", "channels": 30, "healthy": True}],
        "services": {"kcxp": {"state": "active", "since": 0}, "kcbp": {"state": "active", "since": 0}},
        "calls": {"ivr": 3, "agent": 1, "fax": 0}, "channels": {"available": 30, "free": 25},
        "db": {"site": "shenzhen", "files": {}}}).encode()


async def connection(host: str, port: int, token: str, agents: list[str], seconds: float, counts: dict) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < seconds:
        seq += 1
        for name in agents:
            body = report(name, seq)
            writer.write(f"POST /api/v1/agents/{name}/report HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            counts["ok" if b" 204 " in status else "errors"] += 1
        await asyncio.sleep(max(0.0, start + seq - time.monotonic()))
    writer.close()


async def run(url: str, token: str, hosts: int, seconds: float) -> dict:
    parts = urlsplit(url)
    counts = {"ok": 0, "errors": 0}
    names = [f"h{i:03d}" for i in range(hosts)]
    groups = [names[i::20] for i in range(20)]
    await asyncio.gather(*(connection(parts.hostname or "", parts.port or 80, token, g, seconds, counts)
                           for g in groups))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.token, a.hosts, a.seconds))))


if __name__ == "__main__":
    main()
