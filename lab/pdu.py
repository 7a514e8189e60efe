"""The lab's switched PDU: an SNMPv2c agent with one outlet per host, for fencing.

It answers GET/GETNEXT/SET on APC PowerNet's outlet OIDs (what ccfo.clients.pdu speaks):
rPDUOutletControlOutletCommand (.3.3.1.1.4.N, write 1 on / 2 off) and rPDUOutletStatusOutletState
(.3.5.1.1.4.N, read 1 on / 2 off). Switching an outlet calls back into the lab, which kills or restarts
that host's processes, as cutting the power would. Written directly on pysnmp's v2c message API (a few
dozen lines) rather than pysnmp's VACM-based responder: the lab needs a writable table, and pysnmp 7's
VACM treats an empty write view as full access (see shared/reference/pysnmp7-notes.md). A wrong
community is dropped silently, as real agents do. Loopback only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

log = logging.getLogger("lab.pdu")

CONTROL = (1, 3, 6, 1, 4, 1, 318, 1, 1, 12, 3, 3, 1, 1, 4)
STATE = (1, 3, 6, 1, 4, 1, 318, 1, 1, 12, 3, 5, 1, 1, 4)
ON, OFF = 1, 2
P = api.v2c


class LabPdu(asyncio.DatagramProtocol):
    def __init__(self, outlets: dict[int, str], community: str,
                 switch: Callable[[str, bool], Awaitable[None]]) -> None:
        self.outlets = dict(outlets)  # outlet number -> host
        self.state = dict.fromkeys(outlets, ON)
        self.community = community
        self.switch = switch
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _table(self) -> list[tuple[tuple[int, ...], int]]:
        rows = [((*STATE, n), v) for n, v in self.state.items()]
        rows += [((*CONTROL, n), v) for n, v in self.state.items()]
        return sorted(rows)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self._handle(data)
        except (PyAsn1Error, ValueError, KeyError, IndexError) as exc:
            log.warning("malformed SNMP from %s skipped: %s (%r)", addr, exc, data[:64])
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def _handle(self, data: bytes) -> bytes | None:
        if api.decodeMessageVersion(data) != api.SNMP_VERSION_2C:
            return None
        msg, _ = decoder.decode(data, asn1Spec=P.Message())
        if str(P.apiMessage.get_community(msg)) != self.community:
            return None
        req = P.apiMessage.get_pdu(msg)
        rsp = P.apiMessage.get_response(msg)
        rsp_pdu = P.apiMessage.get_pdu(rsp)
        binds = []
        table = self._table()
        for oid, value in P.apiPDU.get_varbinds(req):
            key = tuple(oid)
            if req.isSameTypeWith(P.GetRequestPDU()):
                found = dict(table).get(key)
                binds.append((oid, P.Integer(found) if found is not None else P.NoSuchInstance()))
            elif req.isSameTypeWith(P.GetNextRequestPDU()):
                nxt = next(((o, v) for o, v in table if o > key), None)
                binds.append((P.ObjectIdentifier(nxt[0]), P.Integer(nxt[1])) if nxt else (oid, P.EndOfMibView()))
            elif req.isSameTypeWith(P.SetRequestPDU()):
                if key[:-1] != CONTROL or key[-1] not in self.outlets or int(value) not in (ON, OFF):
                    P.apiPDU.set_error_status(rsp_pdu, 17)  # notWritable
                    P.apiPDU.set_error_index(rsp_pdu, len(binds) + 1)
                    binds.append((oid, value))
                    continue
                self._set(key[-1], int(value))
                binds.append((oid, value))
            else:
                return None
        P.apiPDU.set_varbinds(rsp_pdu, binds)
        return encoder.encode(rsp)

    def _set(self, outlet: int, value: int) -> None:
        if self.state[outlet] == value:
            return
        self.state[outlet] = value
        host = self.outlets[outlet]
        log.warning("PDU outlet %d (%s) switched %s", outlet, host, "on" if value == ON else "off")
        task = asyncio.get_running_loop().create_task(self.switch(host, value == ON))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def start_pdu(host: str, port: int, outlets: dict[int, str], community: str,
                    switch: Callable[[str, bool], Awaitable[None]]) -> tuple[asyncio.DatagramTransport, LabPdu]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: LabPdu(outlets, community, switch),
                                                           local_addr=(host, port))
    return transport, proto  # type: ignore[return-value]


class LabDatabase:
    """A database site stand-in: a TCP listener that accepts (up) or is closed (down)."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self._server: asyncio.Server | None = None

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._client, self.host, self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"lab database {self.name}\n".encode())
        writer.close()
