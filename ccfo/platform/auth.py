"""API tokens with roles: who may look (viewer), act (operator), administer (admin), or report (agent).

Only SHA-256 digests of tokens are stored, so the tokens file is not itself a secret worth stealing;
it must still not be world-readable (a careless copy would be), and the controller refuses to start
otherwise. Tokens are compared in constant time; names, never tokens, reach the journal and the logs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

import yaml


class Role(IntEnum):
    AGENT = 0  # may only push its host's report
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    host: str | None = None  # for agent tokens: the host it reports for (None: any)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    principal: Principal
    digest: bytes
    expires_at: float | None


class TokenFileError(Exception):
    pass


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_private(path: Path) -> None:
    """Refuse a secret file that others can read: a token or key there is no longer a secret."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise TokenFileError(f"{path}: file not found") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise TokenFileError(f"{path}: readable or writable by others (mode {stat.S_IMODE(mode):o}); "
                             f"run: chmod 600 {path}")


def read_secret(path: Path) -> str:
    """A secret from a file (first line, stripped), refusing world-readable files."""
    check_private(path)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise TokenFileError(f"{path}: empty")
    return value


class TokenStore:
    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = entries

    @staticmethod
    def load(path: Path) -> TokenStore:
        check_private(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise TokenFileError(f"{path}: not valid YAML: {exc}") from exc
        entries = []
        for i, item in enumerate(data.get("tokens", [])):
            try:
                role = Role[str(item["role"]).upper()]
                raw = bytes.fromhex(item["sha256"])
                expires = item.get("expires")
                if isinstance(expires, datetime):
                    expires = expires.replace(tzinfo=expires.tzinfo or UTC).timestamp()
                elif isinstance(expires, str):  # an offset in the text counts; none means UTC
                    when = datetime.fromisoformat(expires)
                    expires = when.replace(tzinfo=when.tzinfo or UTC).timestamp()
                entries.append(TokenEntry(Principal(str(item["name"]), role, item.get("host")), raw, expires))
            except (KeyError, ValueError, TypeError) as exc:
                raise TokenFileError(f"{path}: tokens[{i}]: needs name, role (agent|viewer|operator|admin), "
                                     f"sha256 (hex){' and a valid expires' if 'expires' in str(exc) else ''}: "
                                     f"{exc}") from exc
        return TokenStore(entries)

    def authenticate(self, token: str, now: float) -> Principal | None:
        d = digest(token)
        found = None
        for e in self._entries:  # no early exit: the time taken does not depend on which entry matched
            if hmac.compare_digest(e.digest, d) and (e.expires_at is None or now < e.expires_at):
                found = e.principal
        return found


def add_token(path: Path, name: str, role: str, host: str | None = None, expires: str | None = None) -> str:
    """Create a token, store its digest in `path` (created 0600), return the token (shown once)."""
    token = secrets.token_urlsafe(32)
    data = {"tokens": []}
    if path.exists():
        check_private(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"tokens": []}
    entry: dict[str, object] = {"name": name, "role": role, "sha256": digest(token).hex()}
    if host:
        entry["host"] = host
    if expires:
        entry["expires"] = expires
    data.setdefault("tokens", []).append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return token
