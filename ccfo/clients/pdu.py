"""Fencing through a switched PDU over SNMP: power an outlet off, then read it back.

The OIDs default to APC's PowerNet MIB (rPDUOutletControlOutletCommand: 1 on, 2 off;
rPDUOutletStatusOutletState: 1 on, 2 off), which most switched PDUs and the lab PDU implement; a site
with another PDU configures its own. The power-off counts only when the read-back says off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    Integer32,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
    set_cmd,
)

from ccfo.ports import FenceFailed

CONTROL_OID = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
STATE_OID = "1.3.6.1.4.1.318.1.1.12.3.5.1.1.4"
ON, OFF = 1, 2


class SnmpPdu:
    def __init__(self, host: str, port: int, community: str, outlets: Mapping[str, int], *,
                 timeout_s: float = 1.0, retries: int = 2, settle_s: float = 5.0) -> None:
        self._engine = SnmpEngine()  # one engine for the process's life (creating one costs ~90 ms)
        self.host, self.port, self._community, self.outlets = host, port, community, dict(outlets)
        self.timeout_s, self.retries, self.settle_s = timeout_s, retries, settle_s

    @property
    def available(self) -> bool:
        return True

    async def _target(self) -> UdpTransportTarget:
        return await UdpTransportTarget.create((self.host, self.port), timeout=self.timeout_s, retries=self.retries)

    def _outlet(self, host: str) -> int:
        try:
            return self.outlets[host]
        except KeyError:
            raise FenceFailed(f"no PDU outlet configured for {host}") from None

    async def state(self, host: str) -> int:
        outlet = self._outlet(host)
        err, status, _, binds = await get_cmd(self._engine, CommunityData(self._community), await self._target(),
                                              ContextData(), ObjectType(ObjectIdentity(f"{STATE_OID}.{outlet}")))
        if err or status:
            raise FenceFailed(f"PDU {self.host}:{self.port} outlet {outlet}: {err or status.prettyPrint()}")
        return int(binds[0][1])

    async def _set(self, host: str, value: int) -> None:
        outlet = self._outlet(host)
        err, status, _, _ = await set_cmd(self._engine, CommunityData(self._community), await self._target(),
                                          ContextData(), ObjectType(ObjectIdentity(f"{CONTROL_OID}.{outlet}"),
                                                                    Integer32(value)))
        if err or status:
            raise FenceFailed(f"PDU {self.host}:{self.port} outlet {outlet}: set failed: {err or status.prettyPrint()}")
        deadline = asyncio.get_running_loop().time() + self.settle_s
        while True:
            if await self.state(host) == value:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise FenceFailed(f"PDU outlet {outlet} for {host} did not read back {'off' if value == OFF else 'on'}")
            await asyncio.sleep(0.1)

    async def power_off(self, host: str) -> None:
        await self._set(host, OFF)

    async def power_on(self, host: str) -> None:
        await self._set(host, ON)

    async def aclose(self) -> None:
        """Close the engine's UDP transport (else its socket is left for the garbage collector). asyncio
        closes a datagram transport's socket on the loop's next turn, hence the one yield."""
        self._engine.close_dispatcher()
        await asyncio.sleep(0)


class NoFencing:
    """No PDU: the fence step waits for an operator's confirmation that the host is off."""

    @property
    def available(self) -> bool:
        return False

    async def power_off(self, host: str) -> None:
        raise FenceFailed("no automatic fencing configured")

    async def power_on(self, host: str) -> None:
        raise FenceFailed("no automatic fencing configured")

    async def aclose(self) -> None:
        return None
