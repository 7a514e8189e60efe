"""SNMP GET / GETBULK round trips per second: the ccfo agent's responder beside net-snmp's snmpd, same run.

Both servers run as their own processes on 127.0.0.1; the client (pysnmp 7 hlapi, lookupMib=False, one
engine) is this process. The ccfo responder serves CCFO-MIB for a host with 2 spans and 6 services (49
instances with the system group and dsx1LineStatus); snmpd, started with a throwaway config in a temp dir,
serves its system group and ifTable (walked for GETBULK: a table of comparable size on this machine).
Each case: v2c and v3 authPriv (SHA/AES), GET of one scalar and GETBULK(max-repetitions 25) of the table,
`--count` requests with `--concurrency` outstanding.

    .venv/bin/python -m bench.snmp_bench [--count 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

AUTH, PRIV, USER, COMMUNITY = "bench-auth-1", "bench-priv-1", "bench", "bench-ro"
CCFO_GET = (1, 3, 6, 1, 4, 1, 32473, 1, 1, 4, 2, 0)  # ccfoCapIvrCalls.0
CCFO_TABLE = (1, 3, 6, 1, 4, 1, 32473, 1, 1)
SNMPD_GET = (1, 3, 6, 1, 2, 1, 1, 5, 0)  # sysName.0
SNMPD_TABLE = (1, 3, 6, 1, 2, 1, 2, 2)  # IF-MIB ifTable


def _serve_ccfo(port_out: Any) -> None:
    async def main() -> None:
        from agents.snmp.responder import SnmpResponder
        from ccfo.snmp.security import Secret, V3User
        from ccfo.snmp.view import HostView, ServiceView, SpanView

        view = HostView("ipc-a", "primary", "primary", "supervised",
                        tuple(ServiceView(n, "active", 1795427911.0) for n in
                              ("cti", "ivr", "kcxp", "kcbp", "kcxp-replica", "kcbp-replica")),
                        (SpanView(1, "ok", True, 30), SpanView(2, "ok", True, 30)), True, True, 60, 27, 10, 1,
                        13, 2, 47, 4)
        responder = SnmpResponder(lambda: view, user=V3User(USER, Secret(AUTH), Secret(PRIV)),
                                  community=Secret(COMMUNITY), port=0, watch_interval_s=None)
        await responder.start()
        port_out.send(responder.port)
        await asyncio.Event().wait()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_snmpd(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    snmpd = shutil.which("snmpd") or "/usr/sbin/snmpd"
    port = _free_port()
    conf = os.path.join(workdir, "snmpd.conf")
    with open(conf, "w") as f:
        f.write(f"agentaddress udp:127.0.0.1:{port}\nrocommunity {COMMUNITY} 127.0.0.1\n"
                f"createUser {USER} SHA {AUTH} AES {PRIV}\nrouser {USER} priv\ndontLogTCPWrappersConnects yes\n")
    env = dict(os.environ, SNMP_PERSISTENT_DIR=workdir, SNMPCONFPATH=workdir, MIBS="")
    proc = subprocess.Popen([snmpd, "-f", "-Lf", os.path.join(workdir, "snmpd.log"), "-C", "-c", conf, "-p",
                             os.path.join(workdir, "pid")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, port


def _v2c_packets(count: int, oid: tuple[int, ...], bulk: bool) -> list[bytes]:
    """Pre-encoded v2c GET / GETBULK(0, 25) requests, so the client spends no time encoding."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v2c

    out = []
    for reqid in range(1, count + 1):
        pdu = v2c.GetBulkRequestPDU() if bulk else v2c.GetRequestPDU()
        api = v2c.apiBulkPDU if bulk else v2c.apiPDU
        api.set_defaults(pdu)
        api.set_request_id(pdu, reqid)
        if bulk:
            v2c.apiBulkPDU.set_non_repeaters(pdu, 0)
            v2c.apiBulkPDU.set_max_repetitions(pdu, 25)
        api.set_varbinds(pdu, [(oid, v2c.null)])
        msg = v2c.Message()
        v2c.apiMessage.set_defaults(msg)
        v2c.apiMessage.set_community(msg, COMMUNITY)
        v2c.apiMessage.set_pdu(msg, pdu)
        out.append(encoder.encode(msg))
    return out


def _varbind_count(datagram: bytes) -> int:
    from pyasn1.codec.ber import decoder
    from pysnmp.proto.api import v2c

    msg, _ = decoder.decode(datagram, asn1Spec=v2c.Message())
    return len(v2c.apiPDU.get_varbinds(v2c.apiMessage.get_pdu(msg)))


class _Window(asyncio.DatagramProtocol):
    """Keeps `window` requests outstanding; responses arrive in order from a single-threaded server."""

    def __init__(self, packets: list[bytes], window: int, done: asyncio.Future[None]) -> None:
        self.packets, self.window, self.done = packets, window, done
        self.sent_at: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.first: bytes = b""
        self.next = 0
        self.transport: Any = None

    def _send(self) -> None:
        self.sent_at.append(time.perf_counter())
        self.transport.sendto(self.packets[self.next])
        self.next += 1

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        for _ in range(min(self.window, len(self.packets))):
            self._send()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.latencies.append(time.perf_counter() - self.sent_at.popleft())
        self.first = self.first or data
        if self.next < len(self.packets):
            self._send()
        elif not self.sent_at and not self.done.done():
            self.done.set_result(None)


async def _raw_v2c_cases(port: int, get_oid: tuple[int, ...], table: tuple[int, ...], count: int,
                         concurrency: int) -> list[dict[str, Any]]:
    rows = []
    loop = asyncio.get_running_loop()
    for op, oid in (("GET", get_oid), ("GETBULK", table)):
        packets = _v2c_packets(count, oid, op == "GETBULK")
        done: asyncio.Future[None] = loop.create_future()
        transport, proto = await loop.create_datagram_endpoint(functools.partial(_Window, packets, concurrency, done),
                                                               remote_addr=("127.0.0.1", port))
        started = time.perf_counter()
        try:
            await asyncio.wait_for(done, 120)
        finally:
            transport.close()
        wall = time.perf_counter() - started
        lat = sorted(proto.latencies)
        rows.append({"version": "v2c (raw client)", "op": op, "per_s": len(lat) / wall,
                     "varbinds": _varbind_count(proto.first), "p50_ms": lat[len(lat) // 2] * 1e3,
                     "p99_ms": lat[int(len(lat) * 0.99)] * 1e3})
    return rows


async def _timed(request: Any, count: int, concurrency: int) -> tuple[list[float], int, float]:
    """Run `count` calls of `request()` with `concurrency` outstanding: latencies, varbinds, wall time."""
    remaining = iter(range(count))
    latencies: list[float] = []
    varbinds = 0

    async def worker() -> None:
        nonlocal varbinds
        for _ in remaining:
            t = time.perf_counter()
            varbinds = max(varbinds, await request())
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(latencies), varbinds, time.perf_counter() - started


async def _client_cases(port: int, get_oid: tuple[int, ...], table: tuple[int, ...], count: int,
                        concurrency: int) -> list[dict[str, Any]]:
    """The same cases through pysnmp's own manager (hlapi, lookupMib=False): v2c and v3 authPriv."""
    from pysnmp.hlapi.v3arch.asyncio import (
        USM_AUTH_HMAC96_SHA,
        USM_PRIV_CFB128_AES,
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        bulk_cmd,
        get_cmd,
    )

    engine = SnmpEngine()

    async def request(op: str, auth: Any, target: Any) -> int:
        if op == "GET":
            err, status, _, binds = await get_cmd(engine, auth, target, ContextData(),
                                                  ObjectType(ObjectIdentity(get_oid)), lookupMib=False)
        else:
            err, status, _, binds = await bulk_cmd(engine, auth, target, ContextData(), 0, 25,
                                                   ObjectType(ObjectIdentity(table)), lookupMib=False)
        if err or int(status):
            raise RuntimeError(f"{op}: {err or status}")
        return len(binds)

    rows = []
    auths = {"v2c (pysnmp client)": CommunityData("bench-ro-index", COMMUNITY, mpModel=1),
             "v3 authPriv (pysnmp client)": UsmUserData(USER, AUTH, PRIV, authProtocol=USM_AUTH_HMAC96_SHA,
                                                        privProtocol=USM_PRIV_CFB128_AES)}
    for version, auth in auths.items():
        target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=2, retries=0)
        for op in ("GET", "GETBULK"):
            call = functools.partial(request, op, auth, target)
            for attempt in range(50):  # warm-up (v3 discovery); also waits until snmpd answers
                try:
                    await call()
                    break
                except RuntimeError:
                    if attempt == 49:
                        raise
            lat, varbinds, wall = await _timed(call, count, concurrency)
            rows.append({"version": version, "op": op, "per_s": count / wall, "varbinds": varbinds,
                         "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3})
    engine.close_dispatcher()
    return rows


async def _poll_cases(port: int, count: int) -> list[dict[str, Any]]:
    """The controller's safety-net poll (GETBULK walk of CCFO-MIB + parse into a HostView), one at a time."""
    from ccfo.snmp.security import Secret, V3User
    from controller.snmp import AgentEndpoint, SnmpPoller

    rows = []
    poller = SnmpPoller()
    for version, ep in (("v2c", AgentEndpoint("127.0.0.1", port, community=Secret(COMMUNITY))),
                        ("v3 authPriv", AgentEndpoint("127.0.0.1", port, user=V3User(USER, Secret(AUTH),
                                                                                      Secret(PRIV))))):
        first = await poller.poll(ep)
        lat, _, wall = await _timed(lambda ep=ep: _count_rows(poller, ep), count, 1)
        rows.append({"version": f"{version} (SnmpPoller)", "op": "poll", "per_s": count / wall,
                     "varbinds": first.view and len(first.view.services) * 3 + len(first.view.spans) * 4 + 14,
                     "p50_ms": lat[len(lat) // 2] * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3})
    await poller.close()
    return rows


async def _count_rows(poller: Any, ep: Any) -> int:
    await poller.poll(ep)
    return 1


def measure(count: int, concurrency: int) -> list[dict[str, Any]]:
    rows = []
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_ccfo, args=(child,), daemon=True)
    proc.start()
    try:
        port = parent.recv()
        for r in asyncio.run(_raw_v2c_cases(port, CCFO_GET, CCFO_TABLE, count, concurrency)):
            rows.append({"server": "ccfo responder (pysnmp)", **r})
        for r in asyncio.run(_client_cases(port, CCFO_GET, CCFO_TABLE, count // 4, concurrency)):
            rows.append({"server": "ccfo responder (pysnmp)", **r})
        for r in asyncio.run(_poll_cases(port, max(50, count // 20))):
            rows.append({"server": "ccfo responder (pysnmp)", **r})
    finally:
        proc.terminate()
        proc.join(5)
    with tempfile.TemporaryDirectory() as workdir:
        snmpd, port = _start_snmpd(workdir)
        try:
            for r in asyncio.run(_client_cases(port, SNMPD_GET, SNMPD_TABLE, count // 4, concurrency)):
                rows.append({"server": "net-snmp snmpd", **r})  # also waits for snmpd to answer
            for r in asyncio.run(_raw_v2c_cases(port, SNMPD_GET, SNMPD_TABLE, count, concurrency)):
                rows.append({"server": "net-snmp snmpd", **r})
        finally:
            snmpd.terminate()
            snmpd.wait(5)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    rows = measure(args.count, args.concurrency)
    print("| server | version | op | varbinds/response | round trips/s | p50 ms | p99 ms |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['version']} | {r['op']} | {r['varbinds']} | {r['per_s']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")


if __name__ == "__main__":
    main()
