"""Every secret file the agent or the controller reads, and the refusal of one that others can read.

A token, a key or a community string in a file others can read is no longer a secret. Both services check
every configured secret file before they start (`check`), whichever module reads it later, so no reader
can forget; `ccfo check-config` reports the same files as warnings on their config lines (`warnings`).
Files that do not exist are left to their readers (some are optional: an agent without its AMI secret
runs without AMI). Group-readable files are fine: /etc/ccfo is shared through the `ccfo` group.

What it must not do: read a secret (only its mode), or name one in a message other than by its path.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ccfo.config.models import NotifyTargetModel, SiteFileModel, SnmpModel
from ccfo.config.yamlpos import Located, Problem
from ccfo.platform.auth import TokenFileError, check_private

if TYPE_CHECKING:
    from ccfo.config.loader import LoadedConfig

FieldPath = tuple[str | int, ...]
Secret = tuple[FieldPath, str]  # (where in site.yaml, the file as configured)


def _snmp(snmp: SnmpModel, base: FieldPath) -> list[Secret]:
    out = [((*base, f), getattr(snmp, f)) for f in ("auth_key_file", "priv_key_file", "community_file")]
    for i, target in enumerate(snmp.notify_targets):
        out += _target(target, (*base, "notify_targets", i))
    return out


def _target(t: NotifyTargetModel, base: FieldPath) -> list[Secret]:
    return [((*base, f), getattr(t, f)) for f in ("community_file", "auth_key_file", "priv_key_file")]


def agent_files(m: SiteFileModel, host: str) -> list[Secret]:
    """What `ccfo agent --host HOST` reads: its token, TLS key, AMI secret and SNMP keys (a managed server:
    its token and TLS key)."""
    if host in m.servers:
        server, where = m.servers[host], ("servers", host, "agent")
        return [(p, f) for p, f in [((*where, "token_file"), server.agent.token_file),
                                    ((*where, "tls_key_file"), server.agent.tls_key_file)] if f]
    h, base = m.hosts[host], ("hosts", host)
    out: list[Secret] = [((*base, "agent", "token_file"), h.agent.token_file),
                         ((*base, "agent", "tls_key_file"), h.agent.tls_key_file),
                         ((*base, "ami", "secret_file"), h.ami.secret_file)]
    return [(p, f) for p, f in out + _snmp(h.snmp, (*base, "snmp")) if f]


def controller_files(m: SiteFileModel) -> list[Secret]:
    """What `ccfo controller` reads: API tokens, its TLS key, agent tokens, SNMP keys, the PDU community."""
    ctl = m.controller
    out: list[Secret] = [(("controller", "tokens_file"), ctl.tokens_file),
                         (("controller", "tls_key_file"), ctl.tls_key_file)]
    for name, h in m.hosts.items():
        out.append((("hosts", name, "agent", "token_file"), h.agent.token_file))
        out += _snmp(h.snmp, ("hosts", name, "snmp"))
    for name, server in m.servers.items():
        out.append((("servers", name, "agent", "token_file"), server.agent.token_file))
    for i, target in enumerate(ctl.snmp_nms_targets):
        out += _target(target, ("controller", "snmp_nms_targets", i))
    if m.fencing.pdu is not None:
        out.append((("fencing", "pdu", "community_file"), m.fencing.pdu.community_file))
    return [(p, f) for p, f in out if f]


def _dotted(path: FieldPath) -> str:
    return ".".join(str(p) for p in path)


def check(cfg: LoadedConfig, files: Iterable[Secret], extra: Iterable[str | None] = ()) -> None:
    """Raise TokenFileError naming the first existing secret file that others can read or write."""
    named = [(_dotted(p), cfg.resolve(f)) for p, f in files]
    named += [("command line", Path(f)) for f in extra if f]
    for where, path in named:
        if _mode(path) is not None:
            try:
                check_private(path)
            except TokenFileError as exc:
                raise TokenFileError(f"{where}: {exc}") from None


def _mode(path: Path) -> int | None:
    """The file's permission bits, or None when it cannot be seen (its reader will say why)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def warnings(m: SiteFileModel, loc: Located, root: Path) -> list[Problem]:
    """check-config: every configured secret file (agent's and controller's) that others can read."""
    seen: set[FieldPath] = set()
    out = []
    for path, file in [*controller_files(m), *(s for host in m.hosts for s in agent_files(m, host))]:
        full = Path(file) if Path(file).is_absolute() else root / file
        mode = _mode(full)
        if path in seen or mode is None:
            continue
        seen.add(path)
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            out.append(loc.problem(path, f"{file} is readable or writable by others (mode {mode:o}): the services "
                                   f"refuse to start; run: chmod 600 {full}", "warning"))
    return out
