"""Helpers for the deployment tests: a throw-away CA and certificates, a small production-shaped site
(TLS on both APIs, secrets 0600, command-backend services that cost nothing), a listener standing in for
systemd's notification socket, and the `ccfo` processes under test."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ccfo.platform.auth import add_token

REPO = Path(__file__).resolve().parents[2]
_NETS = itertools.count(30 + (os.getpid() % 90) * 2)


def loopback_net() -> str:
    """A /24 of loopback addresses of this test's own (127.N.9.x): fixed ports cannot collide."""
    return f"127.{next(_NETS) % 220 + 30}.9"


# --- certificates ------------------------------------------------------------------------------------------

@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "ccfo test CA") -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Ca(key, cert)


def server_cert(ca: Ca, address: str, *, password: bytes | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a server at `address` (an IP), signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)  # whatever the umask
    return path


# --- a small production-shaped site -----------------------------------------------------------------------

@dataclass
class Site:
    config: Path
    net: str
    ca: Ca
    tokens: dict[str, str] = field(default_factory=dict)  # viewer, agent

    @property
    def controller_url(self) -> str:
        return f"https://{self.net}.100:8443"

    @property
    def agent_url(self) -> str:
        return f"https://{self.net}.1:9101"

    @property
    def ca_file(self) -> Path:
        return self.config / "tls" / "ca.crt"


def _services() -> dict[str, Any]:
    cmd = {"start": ["/bin/true"], "stop": ["/bin/true"], "status": ["/bin/sh", "-c", "exit 3"]}
    return {"cti": {"runs_as": ["primary", "takeover"], "critical": True, **cmd},
            "ivr": {"runs_as": ["primary", "takeover"], "critical": True, **cmd},
            "kcxp": {"runs_as": ["primary", "standby"], **cmd},
            "kcxp-replica": {"runs_as": ["takeover"], **cmd}}


def write_site(root: Path, net: str | None = None) -> Site:
    """Both APIs on HTTPS with a throw-away CA; ipc-a's agent is the one the tests start."""
    net = net or loopback_net()
    cfg = root / "config"
    (cfg / "tls").mkdir(parents=True)
    shutil.copy(REPO / "config" / "rules.yaml", cfg / "rules.yaml")
    ca = make_ca()
    (cfg / "tls" / "ca.crt").write_bytes(ca.pem())
    for name, address in (("controller", f"{net}.100"), ("ipc-a", f"{net}.1")):
        cert, key = server_cert(ca, address)
        (cfg / "tls" / f"{name}.crt").write_bytes(cert)
        write_private(cfg / "secrets" / f"{name}.key", key)
    site = Site(cfg, net, ca)
    tokens = cfg / "secrets" / "tokens.yaml"
    site.tokens["viewer"] = add_token(tokens, "deploy-viewer", "viewer")
    site.tokens["agent"] = add_token(tokens, "agent-ipc-a", "agent", host="ipc-a")
    write_private(cfg / "secrets" / "agent-token", site.tokens["agent"] + "\n")
    driver = {"start": ["/bin/true"], "stop": ["/bin/true"], "status": ["/bin/sh", "-c", "exit 3"]}

    def host(role: str, n: int, tls: bool) -> dict[str, Any]:
        agent: dict[str, Any] = {"url": f"{'https' if tls else 'http'}://{net}.{n}:9101",
                                 "token_file": "secrets/agent-token"}
        if tls:
            agent.update(tls_cert_file="tls/ipc-a.crt", tls_key_file="secrets/ipc-a.key", ca_file="tls/ca.crt")
        return {"role": role, "address": f"{net}.{n}", "agent": agent, "agi": {"enabled": False},
                "board": {"spans": [{"span": 1, "channels": 30}], "driver": driver},
                "service_backend": "command", "services": _services(), "backup_dir": str(root / "backups")}

    data = {"site": {"name": "deploy-test"},
            "hosts": {"ipc-a": host("primary", 1, True), "ipc-b": host("standby", 2, False)},
            "databases": {"active": "shenzhen", "sites": {"shenzhen": {"host": f"{net}.101"},
                                                         "shanghai": {"host": f"{net}.102"}}},
            "controller": {"listen": f"{net}.100:8443", "url": site.controller_url,
                           "tokens_file": "secrets/tokens.yaml", "journal": str(root / "var" / "journal.sqlite"),
                           "heartbeat_s": 0.5, "poll_interval_s": 1.0, "tls_cert_file": "tls/controller.crt",
                           "tls_key_file": "secrets/controller.key", "ca_file": "tls/ca.crt"},
            "fencing": {"method": "operator"},
            "routing": {"method": "none"}}
    (cfg / "site.yaml").write_text(json.dumps(data, indent=1))  # JSON is YAML
    return site


# --- systemd's side of sd_notify --------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    pid: int
    fields: dict[str, str]
    at: float


class NotifySocket:
    """A datagram socket like systemd's NOTIFY_SOCKET, with the sender's pid from SCM_CREDENTIALS (what
    systemd checks for NotifyAccess=main). `address` is the value for NOTIFY_SOCKET. A reader thread drains
    it at once, as systemd does: senders never block, so a full queue would drop their messages."""

    def __init__(self, path: Path | None = None, abstract: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"notify {self.address}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except OSError:
                return
            if not data:  # shut down by close()
                return
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._changed:
                self.messages.append(Message(pid, fields, time.monotonic()))
                self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float, what: str) -> Message:
        """The first message satisfying `predicate`, waiting for new ones up to `timeout` (no sleeping)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    break
                self._changed.wait(left)
        if found is None:
            raise AssertionError(f"no {what} within {timeout} s; received: {[m.fields for m in self.messages]}")
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
        self._reader.join(timeout=5)
        self.sock.close()


# --- the processes under test -----------------------------------------------------------------------------

CCFO = [sys.executable, "-m", "controller"]


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start(args: list[str], log: Path, env: dict[str, str]) -> Service:
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CCFO, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})
    return Service(proc, log)


def run(args: list[str], timeout: float = 60.0, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CCFO, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
