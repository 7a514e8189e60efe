"""A live lab for drill tests: `LabSite` on the test's own 127.x.y network with a per-test SIP port, its
control API served as `ccfo lab up` serves it (lab.json in the lab directory), and an independent check
that no SIPp process of this lab is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from controller.cli import main
from lab.site import LabSite
from lab.supervisor import control_app
from tests.integration.labkit import Api, critical_hosts, layout
from tests.support import async_wait_until


def free_sip_port(net: str) -> int:
    """A UDP port free on both hosts' addresses (NET.1, NET.2), the SIP front (NET.200), the drill's callers
    (NET.240) and far ends (NET.241, .242)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((f"{net}.1", 0))
            port = s.getsockname()[1]
        try:
            for last in (1, 2, 200, 240, 241, 242):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"{net}.{last}", port))
            return int(port)
        except OSError:
            continue
    raise RuntimeError(f"no free UDP port on {net}")


def sipp_pids(net: str) -> list[tuple[int, str]]:
    """Live (non-zombie) SIPp processes whose command line names an address of this lab's network."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if argv and argv[0].endswith(b"sipp") and f"{net}." in text and state not in ("Z", "X"):
            out.append((int(entry), text))
    return out


@dataclass
class DrillLab:
    lab: LabSite
    api: Api
    server: uvicorn.Server
    serving: asyncio.Task[Any]

    @property
    def config(self) -> Path:
        return self.lab.layout.config

    @property
    def net(self) -> str:
        return self.lab.layout.net

    async def healthy(self) -> dict[str, Any] | None:
        s = await self.api.status()
        ok = (s["state"] == "normal" and not s["faults"] and s["active_host"] == "ipc-a"
              and all(h["reachable"] for h in s["hosts"].values()) and critical_hosts(self.lab) == ["ipc-a"])
        return s if ok else None


async def run_drill(dl: DrillLab, name: str, reports: Path) -> tuple[int, dict[str, Any]]:
    rc = await asyncio.to_thread(main, ["drill", "run", name, "--config", str(dl.config), "--reports", str(reports)])
    docs = sorted(reports.glob("*/report.json"))
    assert docs, f"no report written (exit {rc})"
    return rc, json.loads(docs[-1].read_text())


async def start(tmp: Path, **kw: Any) -> DrillLab:
    lay = layout(tmp, **kw)
    lay.sip_port = free_sip_port(lay.net)
    lab = LabSite(lay)
    try:
        await lab.up()
    except BaseException:
        await lab.down()
        raise
    stop = asyncio.Event()
    host, _, port = lay.lab_control.rpartition(":")
    server = uvicorn.Server(uvicorn.Config(control_app(lab, stop), host=host, port=int(port), log_level="warning",
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve())
    dl = DrillLab(lab, Api(lab), server, serving)
    try:
        await async_wait_until(lambda: server.started or serving.done(), timeout=10)
        assert not serving.done(), f"cannot serve the lab control API on {lay.lab_control}"
        (lay.root / "lab.json").write_text(json.dumps({"pid": os.getpid(), "control": f"http://{lay.lab_control}",
                                                       **lab.summary()}))
        await async_wait_until(dl.healthy, timeout=30)
    except BaseException:
        await stop_lab(dl)
        raise
    return dl


async def stop_lab(dl: DrillLab) -> None:
    dl.server.should_exit = True
    with contextlib.suppress(BaseException):
        await dl.serving
    await dl.api.aclose()
    await dl.lab.down()
    await async_wait_until(lambda: not sipp_pids(dl.net), timeout=25, describe=lambda: sipp_pids(dl.net))
