"""The fencing PDU client (ccfo.clients.pdu.SnmpPdu) against the lab's SNMP PDU over real UDP: power off and
on read back, an unknown host is refused, and `aclose()` leaves no socket behind (a leaked UDP socket of its
SNMP engine once failed CI as a ResourceWarning in an unrelated test)."""

from __future__ import annotations

import gc
import os
import socket

import pytest

from ccfo.clients.pdu import OFF, ON, SnmpPdu
from ccfo.ports import FenceFailed
from lab.pdu import start_pdu


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_fds() -> set[str]:
    """This process's open UDP socket inodes (from /proc), to see that closing really closed."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    with open("/proc/net/udp") as f:
        udp = {line.split()[9] for line in f.readlines()[1:]}
    return inodes & udp


@pytest.mark.asyncio
async def test_power_off_and_on_read_back_and_close_leaves_no_socket() -> None:
    switched: list[tuple[str, bool]] = []

    async def switch(host: str, on: bool) -> None:
        switched.append((host, on))

    port = _free_udp_port()
    transport, _ = await start_pdu("127.0.0.1", port, {3: "ipc-a"}, "private", switch)
    before = _udp_fds()
    try:
        pdu = SnmpPdu("127.0.0.1", port, "private", {"ipc-a": 3}, timeout_s=0.5, retries=1)
        await pdu.power_off("ipc-a")
        assert await pdu.state("ipc-a") == OFF
        await pdu.power_on("ipc-a")
        assert await pdu.state("ipc-a") == ON
        with pytest.raises(FenceFailed, match="no PDU outlet configured for ipc-b"):
            await pdu.power_off("ipc-b")
        assert len(_udp_fds() - before) == 1  # the engine's client socket
        await pdu.aclose()
        gc.collect()
        assert _udp_fds() - before == set()
    finally:
        transport.close()
    assert switched == [("ipc-a", False), ("ipc-a", True)]
