"""pysnmp glue shared by the agent's responder and the controller's SNMP adapter.

Converts our `Typed` values to pysnmp types and received pysnmp values to plain Python, binds UDP
sockets ourselves (pysnmp's own bind hides "address in use" in a private future, leaving a deaf agent),
and attaches a UDP transport to an engine. This package is the only agent-side importer of pysnmp.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.proto import rfc1905
from pysnmp.proto.api import v2c

from ccfo.snmp.layout import Oid, Typed

log = logging.getLogger(__name__)
_EXCEPTIONS = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)


class SnmpValueError(ValueError):
    """A received value is of a type we do not read (Counter64, Opaque, an exception value, ...)."""


def to_pysnmp(value: Typed) -> Any:
    kind, v = value
    if kind == "int":
        return v2c.Integer32(v)
    if kind == "gauge":
        return v2c.Gauge32(v)
    if kind == "str":
        return v2c.OctetString(str(v).encode("utf-8"))
    if kind == "octets":
        return v2c.OctetString(v)
    if kind == "oid":
        return v2c.ObjectIdentifier(v)
    if kind == "ticks":
        return v2c.TimeTicks(v)
    raise ValueError(f"unknown value kind {kind!r}")


def from_pysnmp(value: Any) -> int | bytes | Oid | None:
    """Integer-like -> int, OCTET STRING -> bytes, OID -> tuple; noSuch*/endOfMibView -> None."""
    if isinstance(value, _EXCEPTIONS):
        return None
    if isinstance(value, univ.ObjectIdentifier):
        return tuple(value)
    if isinstance(value, univ.OctetString):  # also IpAddress, Opaque
        return value.asOctets()
    if isinstance(value, univ.Integer):  # Integer32, Unsigned32, Gauge32, Counter32/64, TimeTicks
        return int(value)
    raise SnmpValueError(f"unsupported value type {type(value).__name__}")


def pretty(var_binds: Any) -> str:
    """Varbinds as text for a log line, whatever their types."""
    try:
        return "; ".join(f"{name.prettyPrint()} = {val.prettyPrint()}" for name, val in var_binds)
    except Exception:
        return repr(var_binds)


def require_aes() -> None:
    """Fail at start-up, not on the first request, when AES privacy cannot work.

    pysnmp does not depend on `cryptography`; without it every authPriv request is answered with a
    decryption-error report and every v3 notification fails.
    """
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("SNMPv3 AES privacy needs the 'cryptography' package (pip install cryptography)") from exc


def bind_udp(host: str, port: int) -> socket.socket:
    """A bound, non-blocking IPv4 UDP socket; raises OSError at once when the address is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class GuardedUdpTransport(udp.UdpTransport):
    """pysnmp's UDP transport, with the handling of each datagram guarded.

    pysnmp 7.1 decodes a datagram in a loop callback and lets some malformed BER escape as a plain exception
    (e.g. `TypeError: ConstructedAsn1Type.clone()` for a 9-byte message; tests/fuzz/test_snmp_fuzz.py), which
    asyncio then logs as "Exception in callback" with a traceback, for every such packet anyone sends. The
    engine goes on either way; here the message is dropped with one warning line (at most one per
    `WARN_EVERY_S`, with a count of the others), which is what a junk packet deserves.
    """

    WARN_EVERY_S = 10.0

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:
        callback = self._callback_function
        if callback is not None:
            self.loop.call_soon(self._guarded, callback, transportAddress, datagram)

    def _guarded(self, callback: Any, address: Any, datagram: bytes) -> None:
        try:
            callback(self, address, datagram)
        except Exception as exc:
            now = time.monotonic()
            dropped = getattr(self, "_ccfo_dropped", 0) + 1
            if now - getattr(self, "_ccfo_warned", -self.WARN_EVERY_S) < self.WARN_EVERY_S:
                self._ccfo_dropped = dropped
                return
            self._ccfo_warned, self._ccfo_dropped = now, 0
            log.warning("snmp: dropped %d malformed message(s), the last from %s (%d bytes): %s: %s", dropped,
                        address, len(datagram), type(exc).__name__, str(exc)[:200])


async def attach_udp(snmp_engine: engine.SnmpEngine, sock: socket.socket) -> None:
    """Serve `sock` on the engine (also the socket notifications leave from) and wait until it is live."""
    transport = GuardedUdpTransport().open_server_mode(sock=sock)
    config.add_transport(snmp_engine, udp.DOMAIN_NAME, transport)
    pending = getattr(transport, "_lport", None)  # pysnmp keeps the endpoint's creation future here
    if pending is not None:
        await asyncio.wait_for(pending, 2.0)


def oid_text(oid: Oid) -> str:
    return ".".join(str(x) for x in oid)
