"""SNMP credentials and notification targets, as values that never print their secrets.

A `Secret` wraps a pass phrase or community string: its repr and str are redacted, so a config dump, a
log line or a traceback cannot leak it; `.reveal()` is the one way out and is called only where the
SNMP engine is configured. Keys come from files (`Secret.from_file`) or parameters. No pysnmp here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


class Secret:
    """A secret string. Equality compares the secret; nothing else shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret takes a str")
        self._value = value

    @classmethod
    def from_file(cls, path: str | Path) -> Secret:
        """The file's first line, without its line ending (the file's mode is the operator's business)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ValueError(f"secret file {path} is empty")
        return cls(lines[0])

    def reveal(self) -> str:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True, slots=True)
class V3User:
    """An SNMPv3 USM user with HMAC-SHA-96 authentication and AES-128 privacy (authPriv)."""

    name: str
    auth_key: Secret
    priv_key: Secret

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 32:
            raise ValueError("SNMPv3 user name must be 1..32 characters")
        for what, key in (("auth", self.auth_key), ("priv", self.priv_key)):
            if len(key) < 8:  # RFC 3414: pass phrases shorter than 8 octets are not allowed
                raise ValueError(f"SNMPv3 {what} pass phrase of user {self.name} is shorter than 8 characters")


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """Where notifications go: a v2c community or a v3 user, as a trap or an inform (acknowledged)."""

    name: str
    host: str
    port: int = 162
    kind: Literal["trap", "inform"] = "trap"
    community: Secret | None = None
    user: V3User | None = None
    timeout_s: float = 1.0  # informs: per attempt
    retries: int = 1  # informs: extra attempts

    def __post_init__(self) -> None:
        if (self.community is None) == (self.user is None):
            raise ValueError(f"notification target {self.name}: give exactly one of community (v2c) or user (v3)")
        if self.kind not in ("trap", "inform"):
            raise ValueError(f"notification target {self.name}: kind must be trap or inform")
        if not 0 < self.port < 65536:
            raise ValueError(f"notification target {self.name}: bad port {self.port}")

    @property
    def version(self) -> str:
        return "v3" if self.user else "v2c"

    def describe(self) -> str:
        who = f"user {self.user.name}" if self.user else "community ***"
        return f"{self.name} ({self.kind} {self.version}, {who}) -> {self.host}:{self.port}"


def engine_id_for(enterprise: int, text: str) -> bytes:
    """An RFC 3411 snmpEngineID in the text format: 0x80 | enterprise, 0x04, up to 27 octets of text.

    Pinned (not pysnmp's random default) so a v3 trap receiver can be told the sender's engine ID.
    """
    body = text.encode("utf-8")[:27] or b"ccfo"
    return struct.pack(">I", 0x80000000 | enterprise) + b"\x04" + body
