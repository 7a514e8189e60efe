"""The SIP front's control: Kamailio's JSON-RPC (jsonrpcs module) over a UNIX datagram socket, and its
dispatcher list file.

`KamailioRouter.route(hosts)` is the routing adapter of `routing.method: kamailio`: it writes the list
file of the destination set atomically (temp file, fsync, rename, fsync of the directory) so a Kamailio
restart keeps the route, asks Kamailio to reload it (`dispatcher.reload`), and reads the set back
(`dispatcher.list`): the step succeeds only when Kamailio's own set is the one written. Every destination
is written inactive with probing (flags 9): a host receives new calls only after its IVR answered the
front's OPTIONS probe, so a route never sends calls to a host that does not serve (they are held).

An unreachable Kamailio (no socket, no answer, an RPC error) is `KamailioError` with a reason an
operator can act on; never a silent success.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccfo.ports import RouteFailed

PROBING_INACTIVE = 9  # dispatcher flags: 1 inactive + 8 probing; active once the host answers OPTIONS
MAX_REPLY = 65536


class KamailioError(RouteFailed):
    """Kamailio could not be reached or refused the command; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Destination:
    uri: str
    flags: str  # Kamailio's two letters: A/I/T/D (active, inactive, trying, disabled) + P/X (probing or not)


def list_text(set_id: int, uris: Sequence[str]) -> str:
    """The dispatcher list file for one set: the URIs in priority order (first = highest priority)."""
    lines = ["# Written by ccfo (routing.method: kamailio). Do not edit: ccfo rewrites it on every route.",
             "# setid destination flags priority"]
    lines += [f"{set_id} {uri} {PROBING_INACTIVE} {len(uris) - i}" for i, uri in enumerate(uris)]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """temp file in the same directory, fsync, rename over `path`, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class KamailioRpc:
    """JSON-RPC 2.0 requests to Kamailio's jsonrpcs datagram socket (one datagram each way)."""

    def __init__(self, socket_path: str | Path, timeout_s: float = 2.0) -> None:
        self.socket_path, self.timeout_s = str(socket_path), timeout_s
        self._id = 0

    def _call_sync(self, method: str, params: Sequence[Any]) -> Any:
        self._id += 1
        request = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": self._id})
        reply_dir = Path(self.socket_path).parent
        fd, me = tempfile.mkstemp(prefix=".ccfo-rpc-", dir=reply_dir)
        os.close(fd)
        os.unlink(me)  # the name only: the socket is bound there, so Kamailio can answer
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(me)
            os.chmod(me, 0o660)
            sock.settimeout(self.timeout_s)
            try:
                sock.sendto(request.encode(), self.socket_path)
            except OSError as exc:
                raise KamailioError(f"Kamailio is not reachable at {self.socket_path}: {exc.strerror or exc}") from exc
            try:
                raw = sock.recv(MAX_REPLY)
            except TimeoutError:
                raise KamailioError(f"Kamailio did not answer {method} on {self.socket_path} within "
                                    f"{self.timeout_s:g} s") from None
        finally:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(me)
        try:
            reply = json.loads(raw.decode(errors="replace"))
        except ValueError as exc:
            raise KamailioError(f"Kamailio answered {method} with something that is not JSON") from exc
        if not isinstance(reply, dict):
            raise KamailioError(f"Kamailio answered {method} with an unexpected reply")
        if "error" in reply:
            err = reply["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise KamailioError(f"Kamailio refused {method}: {msg}")
        return reply.get("result")

    async def call(self, method: str, *params: Any) -> Any:
        return await asyncio.to_thread(self._call_sync, method, params)


def parse_dispatcher_list(result: Any, set_id: int) -> list[Destination]:
    """The destinations of `set_id` in a `dispatcher.list` result ([] when the set is absent)."""
    if not isinstance(result, dict):
        raise KamailioError("dispatcher.list: unexpected reply shape")
    for record in result.get("RECORDS") or []:
        s = record.get("SET", {}) if isinstance(record, dict) else {}
        if s.get("ID") == set_id:
            out = []
            for t in s.get("TARGETS") or []:
                d = t.get("DEST", {}) if isinstance(t, dict) else {}
                out.append(Destination(str(d.get("URI", "")), str(d.get("FLAGS", ""))))
            return out
    return []


class KamailioRouter:
    """Which hosts receive new calls, through Kamailio's dispatcher set `set_id`."""

    def __init__(self, rpc: KamailioRpc, list_file: str | Path, destinations: Mapping[str, str],
                 set_id: int = 1) -> None:
        self.rpc, self.list_file, self.set_id = rpc, Path(list_file), set_id
        self.destinations = dict(destinations)

    def uris(self, hosts: Sequence[str]) -> list[str]:
        unknown = [h for h in hosts if h not in self.destinations]
        if unknown:
            raise KamailioError(f"no SIP destination configured for {', '.join(unknown)} "
                                "(routing.kamailio.destinations)")
        return [self.destinations[h] for h in hosts]

    def write(self, hosts: Sequence[str]) -> None:
        write_atomically(self.list_file, list_text(self.set_id, self.uris(hosts)))

    async def current(self) -> list[Destination]:
        return parse_dispatcher_list(await self.rpc.call("dispatcher.list"), self.set_id)

    async def route(self, hosts: Sequence[str]) -> str:
        """Write the list, reload, read back; raises KamailioError with the reason when any part fails."""
        want = self.uris(hosts)
        try:
            self.write(hosts)
        except OSError as exc:
            raise KamailioError(f"cannot write the dispatcher list {self.list_file}: {exc}") from exc
        for attempt in range(3):  # dispatcher rate-limits reloads (reload_delta): wait it out, twice
            try:
                await self.rpc.call("dispatcher.reload")
                break
            except KamailioError as exc:
                if "refused" not in str(exc) or attempt == 2:
                    raise
                await asyncio.sleep(1.0)
        got = [d.uri for d in await self.current()]
        if got != want:
            raise KamailioError(f"Kamailio's set {self.set_id} reads back {got or 'empty'}, not {want}")
        who = ", ".join(hosts) or "no host (new calls are held, then refused)"
        return f"new calls to {who} through Kamailio (set {self.set_id}, {self.list_file}; read back)"
