"""Malformed BER over UDP to the agent's SNMP responder (agents/snmp, pysnmp 7): random bytes, BER built with
wrong lengths, unknown tags and deep nesting, and mutations of valid SNMPv2c (GET, GETNEXT, GETBULK with
absurd repetitions, SET) and SNMPv3 (discovery, a wrong user) messages. After every batch the responder must
still answer a valid v2c GET, asyncio and the agent must have logged no error, and at the end a v3 authPriv
GET must work too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_PRIV_CFB128_AES,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
)
from pysnmp.proto.api import v2c

from agents.snmp.responder import SnmpResponder
from tests.snmp.conftest import COMMUNITY, USER, sample_view

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)


# --------------------------------------------------------------------------- a little BER


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + length(len(body)) + body


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def octets(v: bytes) -> bytes:
    return tlv(0x04, v)


def oid(parts: tuple[int, ...]) -> bytes:
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def pdu(tag: int, request_id: int, a: int = 0, b: int = 0, oids: tuple[tuple[int, ...], ...] = (SYS_DESCR,)) -> bytes:
    varbinds = seq(*(seq(oid(o), b"\x05\x00") for o in oids))
    return tlv(tag, integer(request_id) + integer(a) + integer(b) + varbinds)


def v2c_message(community: bytes, pdu_bytes: bytes, version: int = 1) -> bytes:
    return seq(integer(version), octets(community), pdu_bytes)


def v3_message(user: bytes = b"", engine_id: bytes = b"", flags: bytes = b"\x04", msg_id: int = 4242) -> bytes:
    usm = seq(octets(engine_id), integer(0), integer(0), octets(user), octets(b""), octets(b""))
    scoped = seq(octets(engine_id), octets(b""), pdu(0xA0, 1, oids=()))
    return seq(integer(3), seq(integer(msg_id), integer(65507), octets(flags), integer(3)), octets(usm), scoped)


GET, GETNEXT, SET, GETBULK = 0xA0, 0xA1, 0xA3, 0xA5
VALID = [v2c_message(COMMUNITY.reveal().encode(), pdu(GET, 7)),
         v2c_message(COMMUNITY.reveal().encode(), pdu(GETNEXT, 8, oids=((1, 3, 6),))),
         v2c_message(COMMUNITY.reveal().encode(), pdu(GETBULK, 9, 0, 2**31 - 1, oids=((1, 3),))),
         v2c_message(COMMUNITY.reveal().encode(), pdu(SET, 10)),
         v2c_message(b"wrong-community", pdu(GET, 11)),
         v2c_message(COMMUNITY.reveal().encode(), pdu(GET, 12), version=0),
         v3_message(), v3_message(user=USER.name.encode(), engine_id=b"\x80\x00\x7e\xd9\x04x", flags=b"\x07")]


def deep(n: int) -> bytes:
    data = b"\x05\x00"
    for _ in range(n):
        data = seq(data)
    return data


@st.composite
def ber(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A TLV with any tag, its children or bytes, and a length that may lie."""
    tag = draw(st.sampled_from([0x02, 0x04, 0x05, 0x06, 0x30, 0x40, 0x41, 0x43, 0x46, 0xA0, 0xA2, 0xA5, 0x80, 0x1F,
                                0xFF]))
    if depth < 4 and tag in (0x30, 0xA0, 0xA2, 0xA5) and draw(st.booleans()):
        body = b"".join(draw(st.lists(ber(depth + 1), max_size=4)))
    else:
        body = draw(st.binary(max_size=40))
    claimed = draw(st.sampled_from([len(body)] * 3 + [0, len(body) + 1, max(0, len(body) - 1), 0x7F, 2**31]))
    form = draw(st.sampled_from(["short", "long", "indefinite"]))
    if form == "indefinite":
        return bytes([tag, 0x80]) + body + draw(st.sampled_from([b"\x00\x00", b""]))
    head = length(claimed) if form == "short" or claimed < 0x80 else bytes([0x84]) + claimed.to_bytes(4, "big")
    return bytes([tag]) + head[:6] + body


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
        elif op == 2:
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        if not data:
            data = bytearray(b"\x30")
    return bytes(data)


DATAGRAM = st.one_of(st.binary(min_size=1, max_size=1500), ber(), mutated(), st.sampled_from(VALID),
                     st.integers(50, 4000).map(deep))


# --------------------------------------------------------------------------- the responder under fuzz


class Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(f"{record.name}: {record.getMessage()[:300]}")


class Target:
    def __init__(self, responder: SnmpResponder, watch: Watch) -> None:
        self.responder, self.watch = responder, watch
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.request_id = 1000

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, ("127.0.0.1", self.responder.port))

    async def get_sys_descr(self) -> str:
        """A valid v2c GET; returns sysDescr from the answer with our request-id (older answers are skipped)."""
        loop = asyncio.get_running_loop()
        self.request_id += 1
        await self.send(v2c_message(COMMUNITY.reveal().encode(), pdu(GET, self.request_id)))
        async with asyncio.timeout(3):
            while True:
                data, _ = await loop.sock_recvfrom(self.sock, 65535)
                try:
                    msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
                except Exception:  # an answer to a fuzzed message that is not v2c: not ours
                    continue
                p = v2c.apiMessage.get_pdu(msg)
                if int(v2c.apiPDU.get_request_id(p)) == self.request_id:
                    return str(v2c.apiPDU.get_varbinds(p)[0][1])


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    watch = Watch()
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _l, ctx: watch.errors.append(f"asyncio: {ctx.get('message')} "
                                                                      f"{ctx.get('exception')!r}"))
    for name in ("agents", "asyncio", "pysnmp"):
        logging.getLogger(name).addHandler(watch)
    responder = SnmpResponder(sample_view, user=USER, community=COMMUNITY, port=0, watch_interval_s=None,
                              sys_descr="ccfo agent under fuzz")
    await responder.start()
    t = Target(responder, watch)
    try:
        yield t
    finally:
        t.sock.close()
        await responder.close()
        for name in ("agents", "asyncio", "pysnmp"):
            logging.getLogger(name).removeHandler(watch)
        loop.set_exception_handler(old)


@pytest.mark.asyncio
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batch=st.lists(DATAGRAM, min_size=1, max_size=8))
async def test_malformed_ber_never_stops_the_responder(target: Target, batch: list[bytes]) -> None:
    for data in batch:
        await target.send(data)
    assert (await target.get_sys_descr()).startswith("ccfo agent under fuzz")
    assert target.watch.errors == []


@pytest.mark.asyncio
async def test_every_valid_shape_and_deep_nesting_then_v3_still_works(target: Target) -> None:
    for data in [*VALID, deep(12_000), deep(4000)[:-3], b"\x30\x84\xff\xff\xff\xff", b"\x30\x80" * 5000]:
        await target.send(data)
        assert (await target.get_sys_descr()).startswith("ccfo agent under fuzz")
    engine = SnmpEngine()
    try:
        err, status, _, binds = await get_cmd(
            engine, UsmUserData(USER.name, USER.auth_key.reveal(), USER.priv_key.reveal(),
                                authProtocol=USM_AUTH_HMAC96_SHA, privProtocol=USM_PRIV_CFB128_AES),
            await UdpTransportTarget.create(("127.0.0.1", target.responder.port), timeout=2, retries=1),
            ContextData(), ObjectType(ObjectIdentity(SYS_DESCR)), lookupMib=False)
    finally:
        engine.close_dispatcher()
    assert err is None and not status and str(binds[0][1]).startswith("ccfo agent under fuzz")
    assert target.watch.errors == []


@pytest.mark.asyncio
async def test_a_message_pysnmp_cannot_decode_is_dropped_with_one_warning(target: Target,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Regression: pysnmp 7.1 raised TypeError out of its datagram callback for this 9-byte message, and asyncio
    logged "Exception in callback" with a traceback for each one received."""
    caplog.set_level(logging.WARNING, logger="agents.snmp")
    for _ in range(20):
        await target.send(b"\xfeZ_\xc1\x04X\xe0j:")
    assert (await target.get_sys_descr()).startswith("ccfo agent under fuzz")
    assert target.watch.errors == []
    warnings = [r.getMessage() for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(warnings) == 1 and "dropped 1 malformed message(s)" in warnings[0] and "TypeError" in warnings[0]
