"""Fixtures for the SNMP tests: base MIB text fetched once, net-snmp tools run with a private config dir.

net-snmp tools run as asyncio subprocesses: the pysnmp responder lives on the test's own event loop,
so a blocking `subprocess.run` would leave it unable to answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccfo.snmp.security import Secret, V3User
from ccfo.snmp.view import HostView, ServiceView, SpanView

ROOT = Path(__file__).resolve().parents[2]
MIB_DIR = ROOT / "agents" / "mib"
USER = V3User("ccfo", Secret("auth-pass-1"), Secret("priv-pass-1"))
NMS_USER = V3User("nms", Secret("nms-auth-22"), Secret("nms-priv-22"))
COMMUNITY = Secret("ro-community")
TRAP_COMMUNITY = Secret("trap-community")


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.path.exists(p)),
                                      None)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian packages: snmp, snmpd, snmptrapd, smitools)")
    return path


@pytest.fixture(scope="session")
def mib_cache() -> Path:
    """The base IETF MIB modules (SNMPv2-SMI, ...) from scripts/fetch-mibs.sh's cache."""
    cache = ROOT / ".cache" / "mibs"
    if not (cache / "SNMPv2-SMI").exists():
        if shutil.which("npm") is None:
            pytest.skip("base MIB text missing and npm not installed to fetch it (scripts/fetch-mibs.sh)")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-mibs.sh"), str(cache)], capture_output=True,
                              text=True, timeout=120, check=False)
        if done.returncode != 0:
            pytest.skip(f"scripts/fetch-mibs.sh failed (offline?): {done.stderr.strip()[-300:]}")
    return cache


@pytest.fixture
def snmp_env(tmp_path: Path) -> dict[str, str]:
    """Environment for net-snmp tools: no user or system snmp.conf, persistent files in a temp dir."""
    conf = tmp_path / "netsnmp"
    conf.mkdir()
    return dict(os.environ, SNMPCONFPATH=str(conf), SNMP_PERSISTENT_DIR=str(conf), MIBS="", MIBDIRS="")


@dataclass
class Done:
    rc: int
    out: str
    err: str


async def run_tool(*args: str, env: dict[str, str], timeout: float = 10.0) -> Done:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Done(proc.returncode or 0, out.decode(), err.decode())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def v3_args(user: V3User = USER) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user.name, "-a", "SHA", "-A", user.auth_key.reveal(), "-x", "AES",
            "-X", user.priv_key.reveal()]


def sample_view(**changes: object) -> HostView:
    base = HostView(
        host="ipc-a", role="primary", duty="primary", mode="supervised",
        services=(ServiceView("cti", "active", 1795427911.0), ServiceView("ivr", "active", 1795427912.5),
                  ServiceView("kcxp", "inactive", None)),
        spans=(SpanView(1, "ok", True, 30), SpanView(2, "ok", True, 30)),
        driver_up=True, ami_connected=True, channels=60, ivr_calls=28, agent_calls=1, fax_calls=2,
        free=30, reserve=2, used=30, fax_channels=4,
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]
