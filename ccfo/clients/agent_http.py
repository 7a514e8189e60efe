"""The controller's side of the agent protocol: the report JSON -> HostHealth, and the HTTP client.

Thin: it owns httpx and the JSON shape of `agents/report.py`, and speaks our types and errors
(AgentUnreachable, AgentActionFailed). A report that does not parse raises ValueError at the API edge
(422), never inside the engine.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from ccfo.config import tls
from ccfo.config.loader import LoadedConfig
from ccfo.domain.health import DriverState, HostHealth, ServiceState, SpanHealth, TrunkHealth
from ccfo.platform.auth import TokenFileError, read_secret
from ccfo.platform.headers import TERM_HEADER
from ccfo.ports import ActionResult, AgentActionFailed, AgentUnreachable, TermRefused

_SERVICE = {s.value: s for s in ServiceState}


def parse_report(host: str, body: Mapping[str, Any], received_at: float) -> HostHealth:
    """An agent report (agents/report.py) as the core's HostHealth; raises ValueError/KeyError/TypeError,
    and nothing else, whatever the shape of `body` (a `null` where a mapping belongs is a ValueError)."""
    try:
        return _parse_report(host, body, received_at)
    except AttributeError as exc:
        raise ValueError(f"malformed report from {host}: {exc}") from None


def _parse_report(host: str, body: Mapping[str, Any], received_at: float) -> HostHealth:
    if not isinstance(body, Mapping):
        raise ValueError(f"report from {host} is not an object")
    if body.get("host") != host:
        raise ValueError(f"report is for {body.get('host')!r}, not {host!r}")
    ami = bool(body["ami"]["connected"])
    board = body["board"] if body["board"] is not None else {"driver": None}  # null: a managed server
    driver = DriverState(str(board["driver"])) if board["driver"] in ("up", "down") else DriverState.UNKNOWN
    spans = tuple(
        SpanHealth(int(s["span"]), str(s["alarm"]),
                   True if s["dchannel"] == "up" else False if s["dchannel"] == "down" else None, int(s["channels"]))
        for s in (body.get("spans") or ())
    )
    services = {str(n): _SERVICE.get(str(v["state"]), ServiceState.UNKNOWN) for n, v in body["services"].items()}
    calls = body.get("calls") or {}
    db = body.get("db") or {}
    ami_hung = not ami and body["ami"].get("state") == "hung"
    trunks = tuple(TrunkHealth(str(t["name"]), str(t["state"]) if t["state"] in ("up", "down") else "unknown",
                               int(t["channels"]), str(t.get("driver", "pjsip")))
                   for t in (body.get("trunks") or ()))
    return HostHealth(host, received_at, ami, driver, spans, services, int(calls.get("ivr", 0)),
                      int(calls.get("agent", 0)), int(calls.get("fax", 0)), db.get("site"), ami_hung, trunks)


class AgentHttpClient:
    """Talks to every host agent (and app-server agents) over HTTP(S) with the agent bearer token."""

    def __init__(self, urls: Mapping[str, str], token: str, *, timeout_s: float = 5.0,
                 ca_file: str | None = None, clock: Any = None) -> None:
        import time
        self._urls = dict(urls)
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                                         verify=verify)
        self._clock = clock or time.time

    async def aclose(self) -> None:
        await self._client.aclose()

    def _url(self, host: str, path: str) -> str:
        try:
            return self._urls[host].rstrip("/") + path
        except KeyError:
            raise AgentUnreachable(f"no agent URL configured for {host}") from None

    async def report_json(self, host: str) -> dict[str, Any]:
        try:
            r = await self._client.get(self._url(host, "/v1/report"))
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"{host}: {type(exc).__name__}: {exc}") from exc
        if r.status_code != 200:
            raise AgentUnreachable(f"{host}: report answered HTTP {r.status_code}")
        try:
            return r.json()  # type: ignore[no-any-return]
        except ValueError as exc:
            raise AgentUnreachable(f"{host}: report is not JSON: {exc}") from None

    async def report(self, host: str) -> HostHealth:
        body = await self.report_json(host)
        try:
            return parse_report(host, body, self._clock())
        except (KeyError, ValueError, TypeError) as exc:
            raise AgentUnreachable(f"{host}: malformed report: {exc}") from exc

    async def action(self, host: str, action_id: str, action: str, *, service: str | None = None,
                     to_site: str | None = None, hosts: list[str] | None = None, reason: str | None = None,
                     timeout_s: float = 30.0, term: int | None = None, job: str | None = None,
                     file: str | None = None, value: str | None = None,
                     valid_until: float | None = None) -> ActionResult:
        """Run one action; `term` is the leader's fencing token (controller HA), `valid_until` the end of
        its acting window (Unix time). TermRefused when the agent has seen a newer leader, or when the
        action reached it after that window."""
        body: dict[str, Any] = {"action_id": action_id, "action": action}
        for key, given in (("service", service), ("to_site", to_site), ("hosts", hosts), ("reason", reason),
                           ("term", term), ("job", job), ("file", file), ("value", value),
                           ("valid_until", valid_until)):
            if given is not None:
                body[key] = given
        try:
            r = await self._client.post(self._url(host, "/v1/actions"), json=body, timeout=timeout_s + 5.0)
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"{host}: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 500 or r.status_code in (401, 403):
            raise AgentUnreachable(f"{host}: action answered HTTP {r.status_code}: {r.text[:200]}")
        data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 409 and TERM_HEADER in r.headers:
            raise TermRefused(host, term, int(r.headers[TERM_HEADER]), str(data.get("detail", r.text)))
        if r.status_code != 200:
            raise AgentActionFailed(f"{host}: {action} refused (HTTP {r.status_code}): {data.get('detail', r.text)}")
        if not data.get("ok"):
            raise AgentActionFailed(f"{host}: {action} failed: {data.get('detail')}")
        return ActionResult(True, str(data.get("detail", "")), data.get("data") or {})


def agent_tokens(cfg: LoadedConfig) -> dict[str, str]:
    """Every agent's token: the IPC hosts' and the managed servers'."""
    out = {}
    for section, machines in (("hosts", cfg.site_model.hosts), ("servers", cfg.site_model.servers)):
        for name, machine in machines.items():
            agent = machine.agent
            if agent.token_file:
                out[name] = read_secret(cfg.resolve(agent.token_file))
            elif agent.token_env and os.environ.get(agent.token_env):
                out[name] = os.environ[agent.token_env]
            else:
                raise TokenFileError(f"{section}.{name}.agent: no token_file or token_env: the controller cannot "
                                     "call it")
    return out


class MultiTokenClient:
    """One AgentHttpClient per agent, IPC hosts and managed servers alike (each may have its own token)."""

    def __init__(self, cfg: LoadedConfig, tokens: dict[str, str]) -> None:
        machines = {**cfg.site_model.hosts, **cfg.site_model.servers}
        self.clients = {h: AgentHttpClient({h: m.agent.url}, tokens[h], ca_file=tls.agent_ca_file(cfg, h))
                        for h, m in machines.items()}

    def _client(self, host: str) -> AgentHttpClient:
        try:
            return self.clients[host]
        except KeyError:
            raise AgentUnreachable(f"{host}: no agent configured for it (hosts or servers in site.yaml)") from None

    async def report(self, host: str):  # type: ignore[no-untyped-def]
        return await self._client(host).report(host)

    async def action(self, host: str, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        return await self._client(host).action(host, *args, **kwargs)

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()
