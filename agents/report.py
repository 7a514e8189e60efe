"""The host report: one JSON document with everything the controller needs to judge this host.

Served at GET /v1/report and pushed to the controller. `ami.state` is up, lost (refused, closed) or hung
(Asterisk stopped answering within the ping deadline). When AMI is not connected, `spans`, `calls` and
`channels` are null (unknown), never "all lines down": losing the AMI link says nothing about the lines.
`board.driver` combines what the service backend says about the driver service (inactive/failed = down,
an isolated board) with what AMI sees (a loaded driver with its channels open); while AMI is lost it is
"unknown". Every configured span is listed: one Asterisk does not report is "unknown" (dchannel "unknown",
not healthy), never left out. `trunks` lists the host's SIP trunks (name, driver, channels, state up / down /
unknown, Asterisk's words); null while AMI is not connected. Times are Unix seconds.
A managed server's agent (profile `server`: no AMI, no board) reports `board` null, `ami.state` "none",
and its scheduled jobs with their state and next run.
Holds no secret: no token, no AMI credentials (the AMI error text is the monitor's, which has none).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.actions import plain
from agents.files import ConfigFiles
from agents.ports import AmiPort, AmiSnapshotView
from agents.services import ServiceManager, ServiceState

# Keys that change on every report without anything having happened (used by `content_key`).
_VOLATILE = ("time", "seq")


def _word(value: Any) -> str:
    """An AMI-side field as a lower-case word: "up"/"down"/"unknown", alarm names, "ok"."""
    value = plain(value)
    if value is True:
        return "up"
    if value is False:
        return "down"
    if value is None:
        return "unknown"
    return str(value).lower()


def driver_state(service_state: ServiceState, ami: AmiSnapshotView | None) -> str:
    """The board driver: down if its service is stopped or failed (isolation), else AMI's view. While the
    AMI link is lost nobody can see the board, so it is unknown (a running driver service proves nothing
    about the card); only a host with no AMI link at all (`ami` None) falls back to the service's view."""
    if service_state in (ServiceState.INACTIVE, ServiceState.FAILED):
        return "down"
    if ami is not None:
        if not ami.connected:
            return "unknown"
        seen = _word(ami.driver)
        if seen in ("up", "down"):
            return seen
    return "up" if service_state is ServiceState.ACTIVE else "unknown"


def ami_state(snap: AmiSnapshotView | None) -> str:
    """`up`, `hung` (Asterisk holds the connection but answers nothing: the ping deadline passed) or `lost`."""
    if snap is not None and snap.connected:
        return "up"
    return "hung" if snap is not None and getattr(snap, "hung", False) else "lost"


def _spans(snap: AmiSnapshotView) -> list[dict[str, Any]]:
    return [{"span": int(s.span), "alarm": _word(s.alarm), "dchannel": _word(s.dchannel),
             "channels": int(s.channels), "healthy": bool(s.healthy)} for s in snap.spans]


def _trunks(snap: AmiSnapshotView) -> list[dict[str, Any]]:
    return [{"name": str(t.name), "driver": str(t.driver), "channels": int(t.channels), "state": str(t.state),
             "detail": str(t.detail)} for t in getattr(snap, "trunks", ())]


class ReportBuilder:
    """Builds numbered reports for one host from the service manager, the config files and AMI."""

    def __init__(self, host: str, role: str, services: ServiceManager, files: ConfigFiles, ami: AmiPort | None,
                 *, clock: Callable[[], float] = time.time,
                 jobs: Callable[[], Awaitable[Sequence[Any]]] | None = None) -> None:
        self.host = host
        self.jobs = jobs  # a managed server's job list (agents/jobs.py JobManager.list)
        self.role = role
        self.services = services
        self.files = files
        self.ami = ami
        self._clock = clock
        self.started = clock()
        self.seq = 0

    async def build(self) -> dict[str, Any]:
        files = await asyncio.to_thread(self.files.current_all)
        snap = self.ami.snapshot() if self.ami is not None else None
        connected = bool(snap is not None and snap.connected)
        if self.services.driver_name is None:  # a managed server
            return await self._server(files)
        driver = self.services.driver()
        sites = {v.site for v in files.values()}
        self.seq += 1
        return {
            "host": self.host,
            "profile": "ipc",
            "role": self.role,
            "time": self._clock(),
            "seq": self.seq,
            "started": self.started,
            "ami": {"connected": connected, "state": ami_state(snap),
                    "last_ok": snap.last_ok if snap is not None else None,
                    "error": (snap.error if snap is not None else "no AMI link configured") if not connected else None},
            "board": {"driver": driver_state(driver.state, snap), "driver_service": driver.name,
                      "service_state": driver.state.value, "since": driver.since,
                      "ami_driver": _word(snap.driver) if connected and snap is not None else None,
                      "ami_driver_detail": getattr(snap, "driver_detail", None) if connected else None},
            "spans": _spans(snap) if connected and snap is not None else None,
            "trunks": _trunks(snap) if connected and snap is not None else None,
            "services": {name: st.to_dict() for name, st in self.services.services().items()},
            "calls": {"ivr": int(snap.calls.ivr), "agent": int(snap.calls.agent), "fax": int(snap.calls.fax)}
            if connected and snap is not None else None,
            "channels": {"available": int(snap.channels_available), "free": int(snap.channels_free)}
            if connected and snap is not None else None,
            "db": {"site": sites.pop() if len(sites) == 1 else None,
                   "files": {fid: v.to_dict() for fid, v in files.items()}},
        }


    async def _server(self, files: dict[str, Any]) -> dict[str, Any]:
        sites = {v.site for v in files.values()}
        jobs = await self.jobs() if self.jobs is not None else []
        self.seq += 1
        return {
            "host": self.host,
            "profile": "server",
            "role": self.role,
            "time": self._clock(),
            "seq": self.seq,
            "started": self.started,
            "ami": {"connected": False, "state": "none", "last_ok": None, "error": "a managed server has no AMI"},
            "board": None,
            "spans": None,
            "services": {name: st.to_dict() for name, st in self.services.services().items()},
            "calls": None,
            "channels": None,
            "db": {"site": sites.pop() if len(sites) == 1 else None,
                   "files": {fid: v.to_dict() for fid, v in files.items()}},
            "jobs": [j.to_dict() for j in jobs],
        }


def content_key(report: dict[str, Any]) -> str:
    """What a report says, without its number, time and AMI ping time: equal keys, nothing changed."""
    body = {k: v for k, v in report.items() if k not in _VOLATILE}
    body["ami"] = {k: v for k, v in report["ami"].items() if k != "last_ok"}
    return json.dumps(body, sort_keys=True, default=str)
