"""Localhost HTTP/JSON control endpoint of the lab AMI server, so other processes can inject faults.

A deliberately tiny HTTP/1.1 server on asyncio streams (one request per connection, JSON in and
out, no dependencies). It binds loopback addresses only: it has no authentication and can stop the
simulated Asterisk. Routes map one-to-one to `LabAmiServer` methods:

    GET  /snapshot                     POST /spans/{n}/alarm {"alarm": "red"|"clear"|...}
    POST /spans/{n}/dchannel {"up": b}  POST /driver/stop, /driver/start
    POST /trunks/{name} {"up": b}
    POST /shutdown {"restart": b}      POST /start, /kill, /sessions/drop, /freeze {"frozen": b}
    POST /calls/ivr {"span"?}          POST /calls/agent, /calls/fax -> {"call_id": ...}
    POST /calls/{id}/transfer          POST /calls/{id}/end (or DELETE /calls/{id})
    POST /calls/set {"ivr": N, "agent": M}   POST /dialplan {"missing": [...], "noanswer": [...]}
    POST /stall {"actions": [...]}     POST /inject {"raw": "..."}   POST /blast {"calls": N}
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .host import LabError

if TYPE_CHECKING:
    from .server import LabAmiServer

log = logging.getLogger(__name__)
Body = dict[str, Any]
Route = Callable[["LabAmiServer", "re.Match[str]", Body], Awaitable[Any] | Any]
MAX_BODY = 1 << 16
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            500: "Internal Server Error"}


def _ok(_: Any = None) -> dict[str, bool]:
    return {"ok": True}


ROUTES: list[tuple[str, re.Pattern[str], Route]] = [(m, re.compile(p + r"$"), f) for m, p, f in [
    ("GET", r"/snapshot", lambda lab, m, b: lab.snapshot()),
    ("POST", r"/spans/(\d+)/alarm", lambda lab, m, b: _ok(lab.set_span_alarm(int(m[1]), str(b["alarm"])))),
    ("POST", r"/spans/(\d+)/dchannel", lambda lab, m, b: _ok(lab.set_dchannel(int(m[1]), bool(b["up"])))),
    ("POST", r"/trunks/([\w.+-]+)", lambda lab, m, b: _ok(lab.set_trunk(m[1], bool(b["up"])))),
    ("POST", r"/driver/stop", lambda lab, m, b: _ok(lab.stop_driver())),
    ("POST", r"/driver/start", lambda lab, m, b: _ok(lab.start_driver())),
    ("POST", r"/sessions/drop", lambda lab, m, b: _ok(lab.drop_sessions())),
    ("POST", r"/freeze", lambda lab, m, b: _ok(lab.set_frozen(bool(b.get("frozen", True))))),
    ("POST", r"/stall", lambda lab, m, b: _ok(lab.stall_actions(b.get("actions", [])))),
    ("POST", r"/inject", lambda lab, m, b: _ok(lab.inject_raw(str(b["raw"]).encode()))),
    ("POST", r"/dialplan", lambda lab, m, b: _ok(lab.set_dialplan(b.get("missing"), b.get("noanswer")))),
    ("POST", r"/calls/ivr", lambda lab, m, b: {"call_id": lab.start_ivr_call(b.get("span"))}),
    ("POST", r"/calls/agent", lambda lab, m, b: {"call_id": lab.start_agent_call()}),
    ("POST", r"/calls/fax", lambda lab, m, b: {"call_id": lab.start_fax_call()}),
    ("POST", r"/calls/set", lambda lab, m, b: _ok(lab.set_calls(int(b.get("ivr", 0)), int(b.get("agent", 0))))),
    ("POST", r"/calls/([\w-]+)/transfer", lambda lab, m, b: _ok(lab.transfer_to_agent(m[1]))),
    ("POST", r"/calls/([\w-]+)/end", lambda lab, m, b: _ok(lab.end_call(m[1]))),
    ("DELETE", r"/calls/([\w-]+)", lambda lab, m, b: _ok(lab.end_call(m[1]))),
    ("POST", r"/shutdown", lambda lab, m, b: _after(lab.shutdown(bool(b.get("restart", False))))),
    ("POST", r"/start", lambda lab, m, b: _after(lab.start())),
    ("POST", r"/kill", lambda lab, m, b: _after(lab.kill())),
    ("POST", r"/blast", lambda lab, m, b: _blast(lab, int(b.get("calls", 1000)))),
]]


async def _after(coro: Awaitable[Any]) -> dict[str, bool]:
    await coro
    return {"ok": True}


async def _blast(lab: LabAmiServer, calls: int) -> dict[str, int]:
    return {"events": await lab.blast(calls)}


class ControlServer:
    """HTTP control endpoint bound to a loopback address (refuses anything else)."""

    def __init__(self, lab: LabAmiServer, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the lab control endpoint binds loopback addresses only, not {host}")
        self.lab, self.host, self.port = lab, host, port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            status, payload = await asyncio.wait_for(self._serve(reader), 30.0)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            status, payload = 400, {"error": f"bad request: {exc}"}
        try:
            body = json.dumps(payload).encode()
            head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            return 400, {"error": "body too large"}
        raw = await reader.readexactly(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return 400, {"error": f"invalid JSON: {exc}"}
        if not isinstance(body, dict):
            return 400, {"error": "the body must be a JSON object"}
        path = path.split("?", 1)[0]
        allowed = False
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if not match:
                continue
            allowed = True
            if route_method != method:
                continue
            return await self._call(handler, match, body)
        return (405, {"error": f"{method} not allowed on {path}"}) if allowed else (404, {"error": f"no route {path}"})

    async def _call(self, handler: Route, match: re.Match[str], body: Body) -> tuple[int, Any]:
        try:
            result = handler(self.lab, match, body)
            if asyncio.iscoroutine(result):
                result = await result
            return 200, result
        except LabError as exc:
            return exc.status, {"error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return 400, {"error": f"bad request: {exc!r}"}
        except Exception as exc:  # never let a control request kill the lab
            log.exception("lab control: %s failed", handler)
            return 500, {"error": repr(exc)}
