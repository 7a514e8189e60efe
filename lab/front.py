"""The lab's SIP front: a real Kamailio (config/kamailio/kamailio.cfg) on its own loopback address.

Every call of the lab enters through it (drills' load and verification calls, the campaign's load); the
controller routes new calls by rewriting its dispatcher list and reloading it over jsonrpcs (the
`kamailio` routing method, ccfo.clients.kamailio). Its files live under LAB/front/: the list file, the
RPC socket, the pid file and Kamailio's runtime directory; its log is LAB/logs/front.log.

What it must not do: outlive the lab (the process dies with its parent, and `stop()` kills it), or
listen anywhere but its own loopback address (the RPC socket is a UNIX socket, not a network port).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from ccfo.clients.kamailio import KamailioError, KamailioRouter, KamailioRpc

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "kamailio" / "kamailio.cfg"


class FrontError(Exception):
    pass


def kamailio_argv(binary: str, listen: str, list_file: Path, rpc_socket: Path, run_dir: Path, *,
                  hold_s: float, hold_retry_s: float, config: Path = CONFIG) -> list[str]:
    """Kamailio in the foreground (-DD), logging to stderr, its site values as pre-processor defines."""
    return [binary, "-DD", "-E", "-f", str(config), "-Y", str(run_dir), "-w", str(run_dir),
            "-P", str(run_dir / "kamailio.pid"), "-m", "32", "-M", "4",
            "-A", f"LISTEN=udp:{listen}", "-A", f'DS_LIST="{list_file}"', "-A", f'RPC_SOCKET="{rpc_socket}"',
            "-A", f"HOLD_MS={int(hold_s * 1000)}", "-A", f"HOLD_RETRY_MS={int(hold_retry_s * 1000)}"]


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or (("/usr/sbin/kamailio") if Path("/usr/sbin/kamailio").exists() else None)
    if found is None:
        raise FrontError("Kamailio is not installed (Debian package kamailio; `make deps` installs it)")
    return found


async def wait_ready(rpc: KamailioRpc, proc: Any, log_path: Path, timeout: float) -> None:
    """Until Kamailio answers `dispatcher.list` on its RPC socket."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not proc.alive:
            raise FrontError(f"Kamailio exited during start-up; see {log_path}")
        try:
            await rpc.call("dispatcher.list")
            return
        except KamailioError as exc:
            last = str(exc)
        await asyncio.sleep(0.05)
    raise FrontError(f"Kamailio not ready within {timeout:g} s ({last}); see {log_path}")


def lab_router(site: dict[str, Any]) -> KamailioRouter:
    k = site["routing"]["kamailio"]
    return KamailioRouter(KamailioRpc(k["rpc_socket"], 1.0), k["list_file"], k["destinations"], k.get("set_id", 1))
