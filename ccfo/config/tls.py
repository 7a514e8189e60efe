"""TLS for the two HTTP APIs, from the config: the certificate a server presents, the CA a client trusts.

* The controller's API serves HTTPS when `controller.tls_cert_file` and `controller.tls_key_file` are set;
  agents (their report pushes) trust it with `controller.ca_file`.
* An agent's API serves HTTPS with `hosts.NAME.agent.tls_cert_file`/`tls_key_file` (or `ccfo agent
  --tls-cert/--tls-key`, which win); the controller trusts it with `hosts.NAME.agent.ca_file`.

Paths are relative to the config directory. Before a server starts, its key must be private
(`ccfo.platform.auth.check_private`), unencrypted and the match of its certificate, so a mistake is one clear
line at start-up (TlsError, a TokenFileError: exit 2 for the controller, 1 for the agent), never a
handshake failure later. Without a ca_file a client uses the default trust store (certifi, or the file
in SSL_CERT_FILE), which knows no private CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from ccfo.platform.auth import TokenFileError, check_private

if TYPE_CHECKING:
    import httpx

    from ccfo.config.loader import LoadedConfig


class TlsError(TokenFileError):
    """A certificate or key cannot be used; the message names the file and the config field."""


def _no_password() -> str:
    raise TlsError("the private key is encrypted: ccfo needs an unencrypted key readable only by its user")


def server_files(cert: str | Path | None, key: str | Path | None, where: str) -> dict[str, str]:
    """uvicorn's `ssl_certfile`/`ssl_keyfile` for a server, or {} for plain HTTP; checked before use."""
    if not cert and not key:
        return {}
    if not cert or not key:
        raise TlsError(f"{where}: set both tls_cert_file and tls_key_file (or neither, for plain HTTP)")
    cert, key = Path(cert), Path(key)
    if not cert.is_file():
        raise TlsError(f"{where}: certificate {cert}: file not found")
    try:
        check_private(key)
    except TokenFileError as exc:
        raise TlsError(f"{where}: private key {exc}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=_no_password)
    except TlsError as exc:
        raise TlsError(f"{where}: {key}: {exc}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"{where}: cannot use certificate {cert} with key {key}: {exc}") from exc
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _resolve(cfg: LoadedConfig, path: str | None) -> Path | None:
    return cfg.resolve(path) if path else None


def controller_server(cfg: LoadedConfig) -> dict[str, str]:
    ctl = cfg.site_model.controller
    return server_files(_resolve(cfg, ctl.tls_cert_file), _resolve(cfg, ctl.tls_key_file), "controller")


def agent_server(cfg: LoadedConfig, host: str, cli_cert: str | None = None,
                 cli_key: str | None = None) -> dict[str, str]:
    """The agent's server files: the command line's, else the config's."""
    if cli_cert or cli_key:
        return server_files(cli_cert, cli_key, "--tls-cert/--tls-key")
    section = "hosts" if host in cfg.site_model.hosts else "servers"
    agent = (cfg.site_model.hosts.get(host) or cfg.site_model.servers[host]).agent
    return server_files(_resolve(cfg, agent.tls_cert_file), _resolve(cfg, agent.tls_key_file),
                        f"{section}.{host}.agent")


def client_context(ca_file: str | Path) -> ssl.SSLContext:
    """Verify servers against this CA bundle only (hostname checks included)."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"CA file {ca_file}: {exc}") from exc


def agent_ca_file(cfg: LoadedConfig, host: str) -> str | None:
    """The CA the controller verifies `host`'s agent with (hosts|servers.NAME.agent.ca_file), or None."""
    section = "hosts" if host in cfg.site_model.hosts else "servers"
    model = cfg.site_model.hosts.get(host) or cfg.site_model.servers.get(host)
    path = _resolve(cfg, model.agent.ca_file) if model is not None else None
    if path is not None and not path.is_file():
        raise TlsError(f"{section}.{host}.agent.ca_file: {path}: file not found")
    return str(path) if path else None


def controller_transport(cfg: LoadedConfig) -> httpx.AsyncHTTPTransport | None:
    """For the agent's report pushes: a transport trusting controller.ca_file, or None (the default)."""
    path = _resolve(cfg, cfg.site_model.controller.ca_file)
    if path is None:
        return None
    import httpx
    return httpx.AsyncHTTPTransport(verify=client_context(path))
