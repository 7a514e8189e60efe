"""An asyncio client of etcd's v3 API over its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/*`,
`/v3/watch`), on httpx, as Patroni's etcd3 module does over urllib3: no gRPC stack, one HTTP library we
already own, and it works with Debian's etcd 3.4 (see docs/ha.md for the choice). The values, operations
and errors are in ccfo.clients.etcd_model and importable from here.

What it promises (the timing contract the election relies on):
* every call ends within its `timeout_s` (default the client's): it returns, or raises one of our errors;
* keys and values are bytes on the wire (base64 in the JSON); keys are given as str, values as str or bytes;
* failover across the member endpoints: a call goes to the last member that answered and moves on to the
  next when a member cannot be reached or has no raft leader (the `hasleader` metadata makes a member
  cut off from its quorum answer "no leader" at once instead of hanging). A `txn` that may have reached
  a member (a read timeout, a broken reply) is NOT re-sent elsewhere: it raises EtcdUnavailable with
  `maybe_applied=True`, and the caller reads back (its compares make that safe). Reads, puts, deletes
  and lease calls are retried on the next member (their effect is the same if applied twice);
* errors are ours: EtcdUnavailable (names every endpoint and what each answered), EtcdRequestError (the
  server refused the request), LeaseNotFound, EtcdTxnFailed (a compare did not hold, when the caller asks
  for an exception), EtcdCompacted (a watch asked for a revision already compacted).
A watch is an async iterator of events that resumes from the next revision on another member when its
stream breaks, so no event is lost or repeated across a member failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx

from ccfo.clients.etcd_model import (  # noqa: F401 - re-exported: the client's names
    Compare,
    Delete,
    DeleteResult,
    EtcdCompacted,
    EtcdError,
    EtcdRequestError,
    EtcdTxnFailed,
    EtcdUnavailable,
    EventType,
    Get,
    KeyValue,
    Lease,
    LeaseNotFound,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    Target,
    TxnResult,
    WatchEvent,
    _b64,
    _op_result,
    _prefix_end,
)

log = logging.getLogger("ccfo.etcd")

REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


def _error_of(data: Any, r: httpx.Response) -> tuple[int, str]:
    """(gRPC code, message) of an error answer: `{"error", "message", "code"}` for unary calls,
    `{"error": {"grpc_code", "message"}}` for a streamed one."""
    if not isinstance(data, dict):
        return 0, r.text[:200]
    err = data.get("error")
    if isinstance(err, dict):
        return int(err.get("grpc_code", 0)), str(err.get("message", err))
    return int(data.get("code", 0)), str(data.get("message") or err or r.text[:200])


def _lines(problems: dict[str, str]) -> list[str]:
    return [f"{url}: {what}" for url, what in problems.items()]


# --- the client --------------------------------------------------------------------------------------
class EtcdClient:
    """One client per process for a set of member endpoints (`http://host:2379`)."""

    def __init__(self, endpoints: Sequence[str], *, timeout_s: float = 2.0, ca_file: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`ca_file`: verify https endpoints against this CA (PEM) instead of the system's."""
        if not endpoints:
            raise ValueError("etcd: at least one endpoint is needed")
        self.endpoints = tuple(e.rstrip("/") for e in endpoints)
        self.timeout_s = timeout_s
        self._preferred = 0
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._http = httpx.AsyncClient(headers=REQUIRE_LEADER, transport=transport, verify=verify)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    async def call(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None,
                   resend: bool = True) -> dict[str, Any]:
        """POST `body` to `/v3{path}` on a member that answers; see the module docstring for failover.
        `resend=False`: never re-send a request that may have reached a member (txn)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        problems: dict[str, str] = {}  # the last answer of each member
        order = self._order()
        n = len(order)
        k = 0
        while (remaining := deadline - time.monotonic()) > 0.01:
            i = order[k % n]
            k += 1
            # reads share the time between the members left in this round; a txn gives each all that is left
            # once connected, but a member that does not even accept the connection only gets its share
            share = remaining / (n - (k - 1) % n)
            attempt = share if resend else remaining
            timeout = httpx.Timeout(attempt, connect=share)
            url = self.endpoints[i] + "/v3" + path
            if k > n and (k - 1) % n == 0:  # a new round: let an election finish rather than spin
                await asyncio.sleep(min(0.1, remaining / 2))
            try:
                async with asyncio.timeout(attempt + 0.05):  # not wait_for: on 3.11 it can swallow a cancel
                    r = await self._http.post(url, json=body, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problems[self.endpoints[i]] = f"{type(exc).__name__}: {exc or 'no connection'}"
                continue
            except (httpx.HTTPError, TimeoutError) as exc:
                problems[self.endpoints[i]] = f"{type(exc).__name__}: {exc or 'timed out'}"
                if not resend:
                    raise EtcdUnavailable(self.endpoints, _lines(problems), maybe_applied=True) from exc
                continue
            try:
                data = r.json()
            except ValueError:
                problems[self.endpoints[i]] = f"HTTP {r.status_code}, not JSON: {r.text[:100]!r}"
                continue
            if not isinstance(data, dict) or "error" in data or r.status_code != 200:
                code, message = _error_of(data, r)
                if code == 14 or r.status_code >= 500:  # UNAVAILABLE: no leader, request timed out, stopping
                    problems[self.endpoints[i]] = message
                    if not resend and "no leader" not in message:
                        raise EtcdUnavailable(self.endpoints, _lines(problems), maybe_applied=True)
                    continue
                if "lease not found" in message:
                    raise LeaseNotFound(code, message)
                raise EtcdRequestError(code, message)
            self._preferred = i
            return data  # type: ignore[no-any-return]
        raise EtcdUnavailable(self.endpoints, _lines(problems))

    # --- kv ------------------------------------------------------------------------------------------
    async def get(self, key: str, *, prefix: bool = False, revision: int = 0, limit: int = 0,
                  serializable: bool = False, timeout_s: float | None = None) -> RangeResult:
        body: dict[str, Any] = Get(key, prefix).to_json()["request_range"]
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if serializable:
            body["serializable"] = True
        return RangeResult.from_json(await self.call("/kv/range", body, timeout_s=timeout_s))

    async def put(self, key: str, value: str | bytes, *, lease: int = 0, prev_kv: bool = False,
                  timeout_s: float | None = None) -> PutResult:
        d = await self.call("/kv/put", Put(key, value, lease, prev_kv).to_json()["request_put"], timeout_s=timeout_s)
        return PutResult(int(d.get("header", {}).get("revision", 0)),
                         KeyValue.from_json(d["prev_kv"]) if d.get("prev_kv") else None)

    async def delete(self, key: str, *, prefix: bool = False, timeout_s: float | None = None) -> DeleteResult:
        d = await self.call("/kv/deleterange", Delete(key, prefix).to_json()["request_delete_range"],
                            timeout_s=timeout_s)
        return DeleteResult(int(d.get("header", {}).get("revision", 0)), int(d.get("deleted", 0)))

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = (), *,
                  raise_on_fail: bool = False, timeout_s: float | None = None) -> TxnResult:
        body = {"compare": [c.to_json() for c in compare], "success": [o.to_json() for o in success],
                "failure": [o.to_json() for o in failure]}
        d = await self.call("/kv/txn", body, timeout_s=timeout_s, resend=False)
        revision = int(d.get("header", {}).get("revision", 0))
        result = TxnResult(bool(d.get("succeeded", False)), revision,
                           tuple(_op_result(x, revision) for x in d.get("responses", ())))
        if raise_on_fail and not result.succeeded:
            raise EtcdTxnFailed(result)
        return result

    # --- leases --------------------------------------------------------------------------------------
    async def lease_grant(self, ttl_s: int, *, timeout_s: float | None = None) -> Lease:
        d = await self.call("/lease/grant", {"TTL": str(int(ttl_s))}, timeout_s=timeout_s)
        return Lease(int(d["ID"]), int(d.get("TTL", 0)))

    async def lease_keepalive(self, lease_id: int, *, timeout_s: float | None = None) -> int:
        """Renew the lease once; returns the TTL granted again. LeaseNotFound when it is gone."""
        d = await self.call("/lease/keepalive", {"ID": str(lease_id)}, timeout_s=timeout_s)
        ttl = int(d.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(5, f"lease {lease_id:x} not found (expired or revoked)")
        return ttl

    async def lease_revoke(self, lease_id: int, *, timeout_s: float | None = None) -> None:
        """Revoke the lease (its keys are deleted); a lease already gone is not an error."""
        try:
            await self.call("/lease/revoke", {"ID": str(lease_id)}, timeout_s=timeout_s)
        except LeaseNotFound:
            return

    async def lease_ttl(self, lease_id: int, *, timeout_s: float | None = None) -> int:
        """Seconds the lease has left, -1 when it does not exist."""
        d = await self.call("/lease/timetolive", {"ID": str(lease_id)}, timeout_s=timeout_s)
        return int(d.get("TTL", -1))

    async def compact(self, revision: int, *, timeout_s: float | None = None) -> None:
        """Drop the history before `revision` (what bounds etcd's space; watches older than it fail)."""
        await self.call("/kv/compaction", {"revision": str(revision), "physical": True}, timeout_s=timeout_s)

    # --- watch ---------------------------------------------------------------------------------------
    def watch(self, key: str, *, prefix: bool = False, start_revision: int = 0, prev_kv: bool = False) -> Watch:
        """Events on `key` (or the prefix) from `start_revision` (0: from now on), resumed across members."""
        return Watch(self, key, prefix, start_revision, prev_kv)


class Watch:
    """`async with client.watch(...) as w: async for event in w`; `next_revision` is where a resumed
    stream starts. The stream reconnects to the next member when one breaks (no event lost or repeated);
    a whole round of members failing raises EtcdUnavailable. A member cut off from the others keeps a
    stream open and silent: bound the wait for an event with a timeout of your own."""

    def __init__(self, client: EtcdClient, key: str, prefix: bool, start_revision: int, prev_kv: bool,
                 connect_timeout_s: float = 2.0) -> None:
        self.client = client
        self.key = key
        self.prefix = prefix
        self.next_revision = start_revision
        self.prev_kv = prev_kv
        self.connect_timeout_s = connect_timeout_s
        self._gen: AsyncGenerator[WatchEvent, None] | None = None

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _request(self) -> dict[str, Any]:
        req: dict[str, Any] = {"key": _b64(self.key)}
        if self.prefix:
            req["range_end"] = _prefix_end(self.key)
        if self.next_revision:
            req["start_revision"] = str(self.next_revision)
        if self.prev_kv:
            req["prev_kv"] = True
        return {"create_request": req}

    async def _events(self) -> AsyncIterator[WatchEvent]:
        c = self.client
        failures: list[str] = []
        while True:
            if len(failures) >= len(c.endpoints):
                raise EtcdUnavailable(c.endpoints, failures)
            i = c._order()[0]
            url = c.endpoints[i] + "/v3/watch"
            timeout = httpx.Timeout(self.connect_timeout_s, read=None)
            try:
                async with c._http.stream("POST", url, json=self._request(), timeout=timeout) as r:
                    if r.status_code != 200:
                        raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)
                    async for line in r.aiter_lines():
                        if not line.strip():
                            continue
                        batch = self._parse(line)
                        failures.clear()  # this member serves the watch
                        for ev in batch:
                            yield ev
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"{c.endpoints[i]}: watch: {type(exc).__name__}: {exc}")
                log.info("etcd watch on %s broke at %s (%s); resuming from revision %d on the next member",
                         self.key, c.endpoints[i], exc, self.next_revision)
            else:
                failures.append(f"{c.endpoints[i]}: watch stream ended")
            c._preferred = (i + 1) % len(c.endpoints)

    def _parse(self, line: str) -> list[WatchEvent]:
        msg = json.loads(line)
        if "error" in msg:
            err = msg["error"]
            raise ValueError(f"{err.get('message', err)}" if isinstance(err, dict) else str(err))
        res = msg.get("result", {})
        compact = int(res.get("compact_revision", 0))
        if compact:
            raise EtcdCompacted(compact)
        if res.get("canceled"):
            raise ValueError(f"watch canceled by the server: {res.get('cancel_reason', '')}")
        header_rev = int(res.get("header", {}).get("revision", 0))
        if res.get("created") and not self.next_revision:
            self.next_revision = header_rev + 1
        out = []
        for e in res.get("events", ()):
            kv = KeyValue.from_json(e["kv"])
            out.append(WatchEvent(EventType(e.get("type", "PUT")), kv,
                                  KeyValue.from_json(e["prev_kv"]) if e.get("prev_kv") else None))
            self.next_revision = kv.mod_revision + 1
        return out
