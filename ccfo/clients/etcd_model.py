"""The etcd v3 API's values as our types: errors, keys and values, compares, operations, results,
watch events, and their JSON shapes on etcd's gateway (int64 as strings, bytes as base64). No I/O here:
ccfo.clients.etcd sends them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


# --- errors ------------------------------------------------------------------------------------------
class EtcdError(Exception):
    """Base of every error this client raises."""


class EtcdUnavailable(EtcdError):
    """No member answered in time. `maybe_applied`: a mutating request may have been applied anyway."""

    def __init__(self, endpoints: Sequence[str], problems: Sequence[str], *, maybe_applied: bool = False) -> None:
        self.endpoints = tuple(endpoints)
        self.problems = tuple(problems)
        self.maybe_applied = maybe_applied
        detail = "; ".join(problems) if problems else "no attempt fitted in the timeout"
        super().__init__(f"etcd unavailable at {', '.join(endpoints)}: {detail}"
                         + (" (the request may have been applied)" if maybe_applied else ""))


class EtcdRequestError(EtcdError):
    """The server refused the request (gRPC status `code`, message as etcd wrote it)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"etcd refused the request: {message} (code {code})")


class LeaseNotFound(EtcdRequestError):
    """The lease does not exist (expired or revoked)."""


class EtcdCompacted(EtcdError):
    """A watch asked for history that etcd has compacted away; restart from `compact_revision`."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"etcd history compacted up to revision {compact_revision}")


# --- values ------------------------------------------------------------------------------------------
def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _prefix_end(key: str) -> str:
    """The range_end that makes a range cover every key starting with `key` (etcd's prefix rule)."""
    raw = bytearray(key.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return _b64(bytes(raw))
        raw.pop()
    return _b64(b"\0")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @property
    def text(self) -> str:
        return self.value.decode()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyValue:
        return cls(_unb64(d.get("key")).decode(errors="replace"), _unb64(d.get("value")),
                   int(d.get("create_revision", 0)), int(d.get("mod_revision", 0)), int(d.get("version", 0)),
                   int(d.get("lease", 0)))


@dataclass(frozen=True, slots=True)
class RangeResult:
    revision: int
    kvs: tuple[KeyValue, ...]
    count: int
    more: bool = False

    @property
    def first(self) -> KeyValue | None:
        return self.kvs[0] if self.kvs else None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RangeResult:
        return cls(int(d.get("header", {}).get("revision", 0)), tuple(KeyValue.from_json(k) for k in d.get("kvs", ())),
                   int(d.get("count", 0)), bool(d.get("more", False)))


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int


class Target(StrEnum):
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    VALUE = "VALUE"
    LEASE = "LEASE"


_TARGET_FIELD = {Target.VERSION: "version", Target.CREATE: "create_revision", Target.MOD: "mod_revision",
                 Target.VALUE: "value", Target.LEASE: "lease"}
_RESULTS = {"==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn condition: `Compare.create("/k", "==", 0)` holds when the key does not exist."""

    key: str
    target: Target
    op: str
    value: int | str | bytes

    def __post_init__(self) -> None:
        if self.op not in _RESULTS:
            raise ValueError(f"compare operator must be one of {', '.join(_RESULTS)}, got {self.op!r}")

    @classmethod
    def create(cls, key: str, op: str, revision: int) -> Compare:
        return cls(key, Target.CREATE, op, revision)

    @classmethod
    def mod(cls, key: str, op: str, revision: int) -> Compare:
        return cls(key, Target.MOD, op, revision)

    @classmethod
    def version(cls, key: str, op: str, version: int) -> Compare:
        return cls(key, Target.VERSION, op, version)

    @classmethod
    def value_is(cls, key: str, op: str, value: str | bytes) -> Compare:
        return cls(key, Target.VALUE, op, value)

    def to_json(self) -> dict[str, Any]:
        f = _TARGET_FIELD[self.target]
        v = _b64(self.value) if self.target is Target.VALUE else str(int(self.value))  # type: ignore[arg-type]
        return {"key": _b64(self.key), "target": self.target.value, "result": _RESULTS[self.op], f: v}


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str | bytes
    lease: int = 0
    prev_kv: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        if self.prev_kv:
            body["prev_kv"] = True
        return {"request_put": body}


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(self.key)}
        if self.prefix:
            body["range_end"] = _prefix_end(self.key)
        return {"request_range": body}


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": _b64(self.key)}
        if self.prefix:
            body["range_end"] = _prefix_end(self.key)
        return {"request_delete_range": body}


Op = Put | Get | Delete
OpResult = RangeResult | PutResult | DeleteResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[OpResult, ...] = ()


class EtcdTxnFailed(EtcdError):
    """A txn's compares did not hold (raised by `txn(..., raise_on_fail=True)`); `result` has the failure
    branch's responses (for example the current holder of a key)."""

    def __init__(self, result: TxnResult, what: str = "") -> None:
        self.result = result
        super().__init__(f"etcd transaction failed: {what or 'a compare did not hold'} (revision {result.revision})")


def _op_result(d: dict[str, Any], revision: int) -> OpResult:
    if "response_range" in d:
        return RangeResult.from_json(d["response_range"])
    if "response_put" in d:
        p = d["response_put"]
        return PutResult(int(p.get("header", {}).get("revision", revision)),
                         KeyValue.from_json(p["prev_kv"]) if p.get("prev_kv") else None)
    dr = d.get("response_delete_range", {})
    return DeleteResult(int(dr.get("header", {}).get("revision", revision)), int(dr.get("deleted", 0)))


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl_s: int


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None
