"""What a drill acts on: the controller (its API, or the engine in-process) and the site (the lab's
fault-injection API, or a real site's agents), behind two small ports the runner uses.

* `ControllerPort`: status, plans, approve/reject, failback/switchover, a plan's journaled steps, and
  recording the drill in the journal. `ApiController` speaks the controller's HTTP API with an operator
  token (the CLI); controller.drill_host has the in-process one (runs started from the API or a schedule).
* `Target`: the fault primitives. In the lab they go to the lab's control API (`ccfo lab up` serves it;
  its address and the admin token come from the lab directory); on a real site only what an agent can do
  (stop/start a service, isolate/restore the board) is allowed. Powering a fenced host back on goes
  through the site's PDU, and the line test through the active host's agent, in both cases.

What it must not do: decide anything about the drill, or retry side effects silently.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Protocol

import httpx

from ccfo.config.loader import LoadedConfig


class TargetError(Exception):
    """A fault primitive that failed or that this target cannot do."""


class ControllerError(Exception):
    """The controller refused a request (HTTP 409) or could not be reached; the message says which."""


class ControllerPort(Protocol):
    async def status(self) -> dict[str, Any]: ...
    async def plans(self, statuses: str) -> list[dict[str, Any]]: ...
    async def plan(self, plan_id: str) -> dict[str, Any]: ...
    async def approve(self, plan_id: str, reason: str) -> dict[str, Any]: ...
    async def reject(self, plan_id: str, reason: str) -> dict[str, Any]: ...
    async def failback(self, reason: str, drain_timeout_s: float) -> dict[str, Any]: ...
    async def switchover(self, to: str, reason: str, drain_timeout_s: float) -> dict[str, Any]: ...
    async def plan_steps(self, plan_id: str) -> list[dict[str, Any]]: ...
    async def history(self, limit: int) -> list[dict[str, Any]]: ...
    async def record(self, kind: str, *, reason: str, status: str | None = None, duration_s: float | None = None,
                     data: dict[str, Any] | None = None) -> None: ...
    async def aclose(self) -> None: ...


ALL_PLANS = ""  # every status


class ApiController:
    """The controller's HTTP API with a bearer token (an operator's, to approve and fail back)."""

    def __init__(self, url: str, token: str, timeout_s: float = 15.0) -> None:
        self._c = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s,
                                    headers={"Authorization": f"Bearer {token}"})
        self.url = url

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None) -> Any:
        try:
            r = await self._c.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise ControllerError(f"controller at {self.url} not answering: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ControllerError(f"{method} {path}: HTTP {r.status_code}: {detail}")
        return r.json() if r.content else None

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/status")  # type: ignore[no-any-return]

    async def plans(self, statuses: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100} | ({"status": statuses} if statuses else {})
        return (await self._call("GET", "/api/v1/plans", params=params))["plans"]  # type: ignore[no-any-return]

    async def plan(self, plan_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/api/v1/plans/{plan_id}")  # type: ignore[no-any-return]

    async def approve(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/plans/{plan_id}/approve", {"reason": reason})  # type: ignore[no-any-return]

    async def reject(self, plan_id: str, reason: str) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/plans/{plan_id}/reject", {"reason": reason})  # type: ignore[no-any-return]

    async def failback(self, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/failback",  # type: ignore[no-any-return]
                                {"reason": reason, "drain_timeout_s": drain_timeout_s})

    async def switchover(self, to: str, reason: str, drain_timeout_s: float) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/switchover",  # type: ignore[no-any-return]
                                {"to": to, "reason": reason, "drain_timeout_s": drain_timeout_s})

    async def plan_steps(self, plan_id: str) -> list[dict[str, Any]]:
        data = await self._call("GET", "/api/v1/journal", params={"plan_id": plan_id, "limit": 500,
                                                                  "kind": "step_finished,step_failed"})
        return list(reversed(data["entries"]))

    async def history(self, limit: int) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/drills/history", params={"limit": limit}))["entries"]  # type: ignore[no-any-return]

    async def record(self, kind: str, *, reason: str, status: str | None = None, duration_s: float | None = None,
                     data: dict[str, Any] | None = None) -> None:
        await self._call("POST", "/api/v1/drills/journal", {"kind": kind, "reason": reason[:2000], "status": status,
                                                             "duration_s": duration_s, "data": _compact(data or {})})

    async def aclose(self) -> None:
        await self._c.aclose()


def _compact(doc: dict[str, Any], limit: int = 48_000) -> dict[str, Any]:
    """The report for the journal, within the API's body limit: the whole document when it fits, else
    its summary (the files on disk keep everything)."""
    if len(json.dumps(doc)) <= limit:
        return doc
    keep = ("run_id", "drill", "target", "status", "reason", "started", "ended", "fault", "figures",
            "expectations", "steps", "files", "failures")
    return {k: doc[k] for k in keep if k in doc} | {"truncated": True}


class LabControl:
    """The lab supervisor's control API (lab/supervisor.py): inject faults, set calls up. Admin token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._c = httpx.AsyncClient(base_url=self.url, timeout=30.0, headers={"Authorization": f"Bearer {token}"})

    @staticmethod
    def from_lab_dir(lab_dir: Path) -> LabControl:
        try:
            state = json.loads((lab_dir / "lab.json").read_text())
            token = (lab_dir / "config" / "secrets" / "admin.token").read_text().strip()
        except (OSError, ValueError) as exc:
            raise TargetError(f"no running lab in {lab_dir} (start one with: ccfo lab up --dir {lab_dir}): "
                              f"{exc}") from exc
        return LabControl(state["control"], token)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            r = await self._c.post(path, json=body)
        except httpx.HTTPError as exc:
            raise TargetError(f"lab control API at {self.url} not answering: {exc}") from exc
        if r.status_code != 200:
            raise TargetError(f"lab {path} {body}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    async def inject(self, target: str, what: str, *args: str) -> str:
        return str((await self.post("/inject", {"target": target, "what": what, "args": list(args)}))["done"])

    async def aclose(self) -> None:
        await self._c.aclose()


class Agents(Protocol):
    async def action(self, host: str, action_id: str, action: str, **kw: Any) -> Any: ...


class Fencer(Protocol):
    @property
    def available(self) -> bool: ...
    async def power_on(self, host: str) -> None: ...
    async def state(self, host: str) -> int: ...
    async def aclose(self) -> None: ...


class Target:
    """The fault primitives of one drill: through the lab (when `lab` is given) or the agents."""

    def __init__(self, agents: Agents, fencer: Fencer | None, lab: LabControl | None, run_id: str) -> None:
        self.agents, self.fencer, self.lab = agents, fencer, lab
        self._ids = (f"drill-{run_id}-{n}" for n in itertools.count(1))

    def _lab(self, what: str) -> LabControl:
        if self.lab is None:
            raise TargetError(f"{what} can only be done in the lab")
        return self.lab

    async def _agent(self, host: str, action: str, **kw: Any) -> str:
        try:
            res = await self.agents.action(host, next(self._ids), action, reason="disaster drill", **kw)
        except Exception as exc:  # the adapter's AgentUnreachable / AgentActionFailed
            raise TargetError(f"{host}: {action}: {exc}") from exc
        return str(getattr(res, "detail", "") or f"{action} done on {host}")

    async def service(self, host: str, name: str, how: str) -> str:
        if self.lab is not None:
            return await self.lab.inject(host, "service", name, how)
        if how in ("crash", "hang", "resume"):
            raise TargetError(f"a {how} can only be injected in the lab; a real site's drill stops the service")
        return await self._agent(host, how, service=name)

    async def span(self, host: str, span: int, alarm: str) -> str:
        return await self._lab("a span alarm").inject(host, "span", str(span), alarm)

    async def board(self, host: str, up: bool) -> str:
        if self.lab is not None:
            return await self.lab.inject(host, "board", "up" if up else "down")
        return await self._agent(host, "restore_board" if up else "isolate_board")

    async def reachable(self, host: str, up: bool) -> str:
        return await self._lab("making a host unreachable").inject(host, "reachable" if up else "unreachable")

    async def db(self, site: str, up: bool) -> str:
        return await self._lab("taking a database site down").inject("db", site, "up" if up else "down")

    async def calls(self, host: str, ivr: int, agent: int) -> None:
        await self._lab("setting calls up").post("/calls", {"host": host, "ivr": ivr, "agent": agent})

    async def powered_off(self, host: str) -> bool:
        if self.fencer is None or not self.fencer.available:
            return False
        try:
            return await self.fencer.state(host) == 2
        except Exception as exc:
            raise TargetError(f"PDU: cannot read {host}'s outlet: {exc}") from exc

    async def power_on(self, host: str) -> str:
        if self.fencer is None or not self.fencer.available:
            raise TargetError(f"{host} is off and there is no PDU to power it on: an operator must")
        try:
            await self.fencer.power_on(host)
        except Exception as exc:
            raise TargetError(f"PDU: cannot power {host} on: {exc}") from exc
        return f"{host} powered on at the PDU"

    async def line_test(self, host: str) -> str:
        return await self._agent(host, "line_test")

    async def aclose(self) -> None:
        if self.lab is not None:
            await self.lab.aclose()


def pdu_for(cfg: LoadedConfig) -> Fencer | None:
    """The site's PDU (the same one the controller fences with), or None."""
    fencing = cfg.site_model.fencing
    if fencing.method != "pdu" or fencing.pdu is None:
        return None
    from ccfo.clients.pdu import SnmpPdu
    from ccfo.platform.auth import read_secret
    community = read_secret(cfg.resolve(fencing.pdu.community_file)) if fencing.pdu.community_file else "private"
    return SnmpPdu(fencing.pdu.host, fencing.pdu.port, community, fencing.pdu.outlets)  # type: ignore[return-value]
