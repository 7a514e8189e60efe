"""Helpers for tests on the live lab: a LabSite on the test's own loopback network, an API client, and
an independent view of the lab (pid files and AMI servers) that does not trust the controller."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import httpx

from lab.labconfig import LabLayout
from lab.site import LabSite

_NETS = itertools.count(20 + (os.getpid() % 100) * 2)


def layout(tmp: Path, **kw: Any) -> LabLayout:
    n = next(_NETS) % 250 + 2
    return LabLayout(tmp / "lab", net=f"127.{n}.1", controller_listen=f"127.{n}.1.100:8080", debounce_s=1.0, **kw)


class Api:
    def __init__(self, lab: LabSite) -> None:
        self.lab = lab
        self.c = httpx.AsyncClient(base_url=lab.api, timeout=10)

    def _h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.lab.token(role)}"}

    async def status(self) -> dict[str, Any]:
        return (await self.c.get("/api/v1/status", headers=self._h("viewer"))).json()  # type: ignore[no-any-return]

    async def plans(self, status: str) -> list[dict[str, Any]]:
        r = await self.c.get("/api/v1/plans", params={"status": status}, headers=self._h("viewer"))
        return r.json()["plans"]  # type: ignore[no-any-return]

    async def plan(self, plan_id: str) -> dict[str, Any]:
        return (await self.c.get(f"/api/v1/plans/{plan_id}", headers=self._h("viewer"))).json()  # type: ignore

    async def post(self, path: str, body: dict[str, Any], role: str = "operator") -> httpx.Response:
        return await self.c.post(path, json=body, headers=self._h(role))

    async def put(self, path: str, body: dict[str, Any], role: str = "admin") -> httpx.Response:
        return await self.c.put(path, json=body, headers=self._h(role))

    async def journal(self, **params: Any) -> list[dict[str, Any]]:
        r = await self.c.get("/api/v1/journal", params={"limit": 500, **params}, headers=self._h("viewer"))
        return r.json()["entries"]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.c.aclose()


def running(lab: LabSite, host: str, service: str) -> bool:
    """Independent of the controller and the agent: is the stand-in daemon's process alive?"""
    pidfile = lab.layout.run_dir(host) / f"{service}.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def critical_hosts(lab: LabSite) -> list[str]:
    return [h for h in lab.site["hosts"] if running(lab, h, "cti") or running(lab, h, "ivr")]
