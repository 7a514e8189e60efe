"""SNMP credentials and notification targets from the site config, shared by the agent and the controller.

Secrets are files named in the config (relative to its directory). The caller passes the reader, so each
side keeps its own policy: the agent runs without SNMP when a key cannot be read, the controller refuses
to start. Values come back as `Secret`s, which never print; error messages name files, never contents.
Also fixes the two conventions both sides must agree on: an agent's snmpEngineID, and where agents send
their notifications for the controller. No pysnmp, no sockets here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ccfo.config.models import ControllerModel, NotifyTargetModel, SnmpModel
from ccfo.snmp.security import NotifyTarget, Secret, V3User, engine_id_for

Reader = Callable[[str], Secret]  # a config-relative path -> its secret; raises SnmpConfigError
CONTROLLER_TARGET = "controller"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class SnmpConfigError(Exception):
    """SNMP is configured but cannot be set up (a key file missing, empty or too short)."""


def file_reader(resolve: Callable[[str], Path]) -> Reader:
    """The agent's reader: the first line of the file (`Secret.from_file`)."""

    def read(path: str) -> Secret:
        try:
            return Secret.from_file(resolve(path))
        except ValueError as exc:
            raise SnmpConfigError(str(exc)) from None

    return read


def v3_user(name: str, auth_key_file: str, priv_key_file: str, read: Reader) -> V3User:
    auth, priv = read(auth_key_file), read(priv_key_file)
    try:
        return V3User(name, auth, priv)
    except ValueError as exc:  # the message names the user and the key kind, never the key
        raise SnmpConfigError(str(exc)) from None


def host_credentials(snmp: SnmpModel, read: Reader) -> tuple[V3User | None, Secret | None]:
    """The host's v3 read user (when both key files are set) and its optional v2c community."""
    user = None
    if snmp.auth_key_file and snmp.priv_key_file:
        user = v3_user(snmp.user, snmp.auth_key_file, snmp.priv_key_file, read)
    community = read(snmp.community_file) if snmp.community_file else None
    return user, community


def notify_target(name: str, t: NotifyTargetModel, read: Reader, host_user: V3User | None = None) -> NotifyTarget:
    """A configured target; a v3 target without its own keys borrows the host user's (check-config's rule)."""
    if (t.user is None) == (t.community_file is None):
        raise SnmpConfigError(f"notification target {name}: give exactly one of community_file or user")
    if t.community_file is not None:
        return NotifyTarget(name, t.host, t.port, t.kind, community=read(t.community_file))
    assert t.user is not None
    if t.auth_key_file and t.priv_key_file:
        user = v3_user(t.user, t.auth_key_file, t.priv_key_file, read)
    elif host_user is not None:
        user = V3User(t.user, host_user.auth_key, host_user.priv_key)
    else:
        raise SnmpConfigError(f"notification target {name}: SNMPv3 user {t.user} has no keys")
    return NotifyTarget(name, t.host, t.port, t.kind, user=user)


def trap_destination(controller: ControllerModel) -> tuple[str, int] | None:
    """Where agents send notifications for the controller: controller.snmp_trap_listen, with a wildcard
    bind address replaced by controller.url's host (else this machine)."""
    if not controller.snmp_trap_listen:
        return None
    host, _, port = controller.snmp_trap_listen.rpartition(":")
    if host in _WILDCARDS:
        host = (urlsplit(controller.url).hostname if controller.url else None) or "127.0.0.1"
    return host.strip("[]"), int(port)


def controller_target(controller: ControllerModel, user: V3User | None,
                      community: Secret | None) -> NotifyTarget | None:
    """The controller's receiver as a target of an agent: informs (acknowledged), with the host's v3 user,
    else its community; None when the controller receives nothing or the host has no credentials."""
    dest = trap_destination(controller)
    if dest is None or (user is None and community is None):
        return None
    if user is not None:
        return NotifyTarget(CONTROLLER_TARGET, dest[0], dest[1], "inform", user=user)
    return NotifyTarget(CONTROLLER_TARGET, dest[0], dest[1], "inform", community=community)


def agent_engine_id(enterprise: int, host: str) -> bytes:
    """An agent's snmpEngineID: pinned, so the controller can accept the agent's v3 traps."""
    return engine_id_for(enterprise, host)
