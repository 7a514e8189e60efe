"""The agent's bearer token: where it comes from, and the constant-time check of a presented one.

The token is read from the site config's `agent.token_file` (relative to the config directory) or the
environment variable named by `agent.token_env`. Without one the agent refuses to start, except in lab
mode, where it reads (or, if missing, generates and writes, mode 0600) a lab token file. A token has a
name (the file's name, the variable's name, or "lab") used in logs as the caller; the secret itself is
never logged, shown in a repr, or returned by the API.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ccfo.agent.auth")
MIN_LENGTH = 16


class TokenError(Exception):
    """No usable token: the agent must not start."""


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: str = field(repr=False)


def _read(path: Path, name: str) -> Token:
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the agent token file {path}: {exc.strerror or exc}") from exc
    if not secret:
        raise TokenError(f"the agent token file {path} is empty")
    return Token(name, secret)


def load_token(agent: Any, resolve: Callable[[str], Path], env: Mapping[str, str] | None = None) -> Token:
    """The token from an AgentEndpointModel (token_file first, then token_env); TokenError if none."""
    env = os.environ if env is None else env
    if agent.token_file:
        path = resolve(agent.token_file)
        token = _read(path, path.name)
    elif agent.token_env:
        secret = env.get(agent.token_env, "").strip()
        if not secret:
            raise TokenError(f"the environment variable {agent.token_env} (agent.token_env) is not set")
        token = Token(agent.token_env, secret)
    else:
        raise TokenError("no agent token configured (agent.token_file or agent.token_env)")
    if len(token.secret) < MIN_LENGTH:
        log.warning("the agent token %s is shorter than %d characters", token.name, MIN_LENGTH)
    return token


def lab_token(path: Path) -> Token:
    """Lab mode: the token in `path`, or a new random one written there (0600) for the lab's controller."""
    if path.exists():
        return _read(path, "lab")
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    log.warning("lab mode: generated an agent token in %s", path)
    return Token("lab", secret)


def authenticate(header: str | None, tokens: Sequence[Token]) -> str | None:
    """The name of the token presented in an `Authorization: Bearer ...` header, or None."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    given = presented.strip().encode()
    match = None
    for token in tokens:  # no early exit: the time taken does not depend on which token matched
        if hmac.compare_digest(given, token.secret.encode()) and match is None:
            match = token.name
    return match
