"""A real net-snmp `snmptrapd` for the tests: started on a free loopback UDP port, logging every
notification it accepts (one line each: `%B %P: %v`) to a file the test reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ccfo.snmp.security import V3User
from tests.snmp.conftest import MIB_DIR, free_udp_port, need
from tests.support import async_wait_until


@dataclass
class TrapDaemon:
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def v3_sender_line(user: V3User, engine_id: bytes) -> list[str]:
    """snmptrapd.conf lines accepting authPriv v3 traps from `user` of the sender with `engine_id`."""
    return [f"createUser -e 0x{engine_id.hex()} {user.name} SHA {user.auth_key.reveal()} AES {user.priv_key.reveal()}",
            f"authUser log {user.name} priv"]


@contextlib.asynccontextmanager
async def snmptrapd(tmp_path: Path, mib_cache: Path, env: dict[str, str], conf_lines: Sequence[str],
                    port: int | None = None) -> AsyncIterator[TrapDaemon]:
    conf, log = tmp_path / "snmptrapd.conf", tmp_path / "traps.log"
    conf.write_text("\n".join(conf_lines) + "\n")
    port = port or free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        need("snmptrapd"), "-f", "-C", "-c", str(conf), "-Lf", str(log), "-M", f"{mib_cache}:{MIB_DIR}",
        "-m", "CCFO-MIB", "-F", "%B %P: %v\n", f"udp:127.0.0.1:{port}", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    daemon = TrapDaemon(port, log)
    try:
        await async_wait_until(lambda: "NET-SNMP version" in daemon.text() or proc.returncode is not None, 5.0)
        assert proc.returncode is None, daemon.text()
        yield daemon
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
