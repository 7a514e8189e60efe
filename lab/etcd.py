"""A real etcd cluster for the lab and the tests: N members of Debian's `etcd` (3.4) on given addresses.

Each member listens for clients on `http://ADDR:client_port` and for peers on `http://ADDR:peer_port`,
keeps its data under `base/NAME.etcd` and writes its log to `base/NAME.log`. A member may run inside a
network namespace (`ip netns exec NS etcd ...`, for the partition tests); its health is then checked
from inside that namespace with `etcdctl`. `start()` returns once every member reports healthy (polled
with a deadline, never slept on), `stop()` always leaves no process behind, and one member can be killed
(SIGKILL by default) and restarted on its data dir to test failover.

Timing flags: `heartbeat_ms`/`election_ms` are etcd's own (defaults 100/1000). etcd's minimum lease TTL
follows from them (see `min_lease_ttl_s`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ccfo.config.cluster import etcd_min_lease_ttl_s
from lab import children

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


class EtcdLabError(RuntimeError):
    """The lab's etcd cluster could not be started or did not become healthy in time."""


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


def min_lease_ttl_s(heartbeat_ms: int = 100, election_ms: int = 1000) -> int:
    """etcd's smallest lease TTL for this timing (a shorter TTL is silently raised to it)."""
    return etcd_min_lease_ttl_s(heartbeat_ms, election_ms)


@dataclass
class EtcdMember:
    name: str
    address: str
    data_dir: Path
    log_file: Path
    client_port: int = 2379
    peer_port: int = 2380
    netns: str | None = None
    scheme: str = "http"  # of the client URL (peers always talk http: tests and the lab are on one host)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class EtcdCluster:
    """N etcd members; `addresses[i]` is member i's IP (loopback or inside `netns[i]`)."""

    def __init__(self, base: Path, addresses: Sequence[str], *, names: Sequence[str] | None = None,
                 client_port: int = 2379, peer_port: int = 2380, netns: Sequence[str | None] | None = None,
                 heartbeat_ms: int = 100, election_ms: int = 1000, token: str | None = None,
                 tls: Sequence[tuple[Path, Path]] | None = None, ca_file: Path | None = None,
                 extra_args: Sequence[str] = (), die_with_parent: bool = False) -> None:
        """`tls`: per member (certificate, key) PEM files: clients then use https, verified with `ca_file`.
        `extra_args`: more etcd flags for every member (the lab's auto-compaction). `die_with_parent`: each
        member gets SIGTERM when the thread that started it ends (lab/children.py: the lab's own processes)."""
        if not addresses:
            raise ValueError("an etcd cluster needs at least one member")
        names = list(names or [f"etcd{i + 1}" for i in range(len(addresses))])
        nss = list(netns or [None] * len(addresses))
        if len(names) != len(addresses) or len(nss) != len(addresses):
            raise ValueError("names, addresses and netns must have the same length")
        self.base = Path(base)
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.token = token or f"ccfo-{os.getpid()}-{time.monotonic_ns()}"
        if tls is not None and (len(tls) != len(addresses) or ca_file is None):
            raise ValueError("tls needs one (certificate, key) per member and the CA file")
        self.tls = list(tls) if tls is not None else None
        self.ca_file = ca_file
        self.extra_args = list(extra_args)
        self.die_with_parent = die_with_parent
        self.members = [EtcdMember(n, a, self.base / f"{n}.etcd", self.base / f"{n}.log", client_port, peer_port, ns,
                                   scheme="https" if tls else "http")
                        for n, a, ns in zip(names, addresses, nss, strict=True)]

    # --- views ---------------------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def member(self, name: str) -> EtcdMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no etcd member {name!r} (members: {', '.join(m.name for m in self.members)})")

    def summary(self) -> list[dict[str, object]]:
        return [{"name": m.name, "client_url": m.client_url, "pid": m.pid} for m in self.members]

    @property
    def min_lease_ttl_s(self) -> int:
        return min_lease_ttl_s(self.heartbeat_ms, self.election_ms)

    # --- life cycle ----------------------------------------------------------------------------------
    def _argv(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        argv = [ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
                "--logger", "zap", "--log-outputs", "stderr", *self.extra_args]
        if self.tls is not None:
            cert, key = self.tls[self.members.index(m)]
            argv += ["--cert-file", str(cert), "--key-file", str(key)]  # server TLS; no client certificates
        return ["ip", "netns", "exec", m.netns, *argv] if m.netns else argv

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every member and wait until each one is healthy; on failure stop them all and raise."""
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            for m in self.members:
                self.start_member(m.name, wait=False)
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def start_member(self, name: str, *, wait: bool = True, timeout_s: float = 30.0) -> None:
        """Start (or restart on its existing data dir) one member; by default wait until it is healthy."""
        m = self.member(name)
        if m.pid is not None:
            raise EtcdLabError(f"etcd member {name} is already running (pid {m.pid})")
        if m.netns is None:
            for port in (m.client_port, m.peer_port):
                _check_free(m.address, port)
        log = open(m.log_file, "ab")  # noqa: SIM115 - the child holds it; closed here right after the fork
        try:
            m.proc = subprocess.Popen(self._argv(m), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                      start_new_session=True,
                                      preexec_fn=children.die_with_parent if self.die_with_parent else None)
        finally:
            log.close()
        if wait:
            self.wait_healthy(timeout_s, [m])

    def kill_member(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to one member and reap it; returns the pid it had."""
        m = self.member(name)
        if m.proc is None or m.proc.poll() is not None:
            raise EtcdLabError(f"etcd member {name} is not running")
        pid = m.proc.pid
        m.proc.send_signal(sig)
        m.proc.wait(timeout=10)
        return pid

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every member: SIGTERM, then SIGKILL after `grace_s` (0: SIGKILL at once, for throw-away
        test clusters). Never raises for a member already gone."""
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.send_signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=max(grace_s, 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.kill()
                m.proc.wait(timeout=5)

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- health --------------------------------------------------------------------------------------
    def healthy(self, m: EtcdMember) -> bool:
        """One probe of one member: its /health says true (i.e. it has a leader and serves reads)."""
        if m.pid is None:
            return False
        if m.netns is not None:
            tls = ["--cacert", str(self.ca_file)] if self.ca_file else []
            r = subprocess.run(["ip", "netns", "exec", m.netns, ETCDCTL, "--endpoints", m.client_url, *tls,
                                "--command-timeout", "1s", "endpoint", "health"],
                               capture_output=True, timeout=5, env={**os.environ, "ETCDCTL_API": "3"})
            return r.returncode == 0
        try:
            verify = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
            r = httpx.get(m.client_url + "/health", timeout=1.0, verify=verify)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.json().get("health") == "true"

    def wait_healthy(self, timeout_s: float = 30.0, members: Sequence[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(members or self.members)
        while pending:
            for m in list(pending):
                if m.proc is not None and m.proc.poll() is not None:
                    raise EtcdLabError(f"etcd member {m.name} exited with {m.proc.returncode}: {_tail(m.log_file)}")
                if self.healthy(m):
                    pending.remove(m)
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise EtcdLabError(f"etcd not healthy within {timeout_s:g} s: "
                                   f"{', '.join(m.name + ' ' + m.client_url for m in pending)}; "
                                   f"last log: {_tail(pending[0].log_file)}")
            time.sleep(0.05)  # a poll interval under a deadline, not a synchronisation sleep


def _check_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise EtcdLabError(f"cannot start etcd on {address}:{port}: {exc}") from None


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])[-600:]
