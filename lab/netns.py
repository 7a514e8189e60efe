"""Real network partitions for the HA tests: Linux network namespaces on a private bridge.

A `NetnsLab` makes one hub namespace holding a bridge and, per node, a namespace with one veth link to
the bridge and an address of the test's own (default 10.213.0.0/24) set INSIDE the namespace: nothing
is added to the host's own network. `add_address(node, addr)` gives a node one more address of the
subnet (`add_addresses` many at once, through one `ip -batch`). `cut(node)` sets the node's link down
on the hub side (packets are dropped, connections hang as in a real partition; no process is frozen),
`restore(node)` sets it up again; `cut_nodes` is the set cut now. `close()` deletes every namespace it
made (which deletes the links); call it always. lab/world.py builds the lab's netns mode on it
(LabLayout(netns=True)).

Needs root (or CAP_SYS_ADMIN/CAP_NET_ADMIN) and iproute2; `netns_available()` says whether this
machine can create a namespace, so tests can skip with a clear reason where it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

IP = shutil.which("ip") or "/usr/sbin/ip"
CLONE_NEWNET = 0x40000000
_SEQ = itertools.count(1)


def exec_argv(netns: str, argv: list[str]) -> list[str]:
    """`argv` run inside the named namespace: `ip netns exec NS ARGV...` (ip execs it: the pid started is the
    program's own)."""
    return [IP, "netns", "exec", netns, *argv]


def setns_net(path: str) -> None:
    """Move the calling THREAD into the network namespace at `path` (setns(2); Python 3.11 has no os.setns).
    Threads it starts later are born there; the process's other threads stay where they are."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise NetnsError(f"setns({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def socket_in_netns(netns: str) -> socket.socket:
    """A TCP socket of the named namespace, made by a throw-away thread that enters it (a socket keeps the
    namespace it was made in, whatever thread uses it later): a way in to a namespace's loopback."""
    box: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            setns_net(f"/run/netns/{netns}")
            box.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller's thread
            box.append(exc)

    t = threading.Thread(target=make, name=f"socket-in-{netns}")
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


async def http_in_netns(netns: str, port: int, method: str, path: str, body: dict[str, Any] | None = None,
                        timeout: float = 5.0) -> tuple[int, Any]:
    """One HTTP/1.1 request with a JSON body to 127.0.0.1:port inside the named namespace (the lab AMI's
    control endpoint, which answers with `Connection: close`); its status and JSON answer."""
    sock = socket_in_netns(netns)
    sock.setblocking(False)
    data = json.dumps(body).encode() if body is not None else b""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
    except BaseException:
        sock.close()
        raise
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload.strip() else None


def list_netns() -> list[str]:
    """The named namespaces (`ip netns list`, /run/netns)."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


class NetnsError(RuntimeError):
    """An `ip` command failed; the message has the command and what it said."""


def _ip(*args: str) -> str:
    r = subprocess.run([IP, *args], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def netns_available() -> str | None:
    """None when network namespaces can be created here, else the reason they cannot."""
    if not os.access(IP, os.X_OK):
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"ccfo-probe-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    with contextlib.suppress(NetnsError):
        _ip("netns", "del", name)
    return None


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # the test's name for it (n1, n2, ...)
    netns: str  # the namespace
    address: str  # its address inside the namespace
    hub_link: str  # its veth end on the hub (what cut/restore switch)


class NetnsLab:
    def __init__(self, subnet_prefix: str = "10.213.0", tag: str | None = None) -> None:
        self.prefix = subnet_prefix
        self.tag = tag or f"ccfo{os.getpid()}x{next(_SEQ)}"
        self.hub = f"{self.tag}-hub"
        self.nodes: dict[str, Node] = {}
        self.cut_nodes: set[str] = set()
        self._made: list[str] = []
        self._links = itertools.count(1)
        _ip("netns", "add", self.hub)
        self._made.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def add_node(self, name: str, address: str | None = None) -> Node:
        """A namespace TAG-NAME linked to the bridge, `lo` up, with `address` (default: PREFIX.k for the k-th
        node) on its eth0."""
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        k = next(self._links)
        ns = f"{self.tag}-{name}"
        _ip("netns", "add", ns)
        self._made.append(ns)
        hub_link = f"v{k}"
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", hub_link, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.hub, "link", "set", hub_link, "master", "br0", "up")
        address = address or f"{self.prefix}.{k}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        node = Node(name, ns, address, hub_link)
        self.nodes[name] = node
        return node

    def add_address(self, name: str, address: str) -> None:
        """One more address of the subnet on the node's link (a second service address, such as a lab
        database site's), inside its namespace as the first one."""
        _ip("-n", self.nodes[name].netns, "addr", "add", f"{address}/24", "dev", "eth0")

    def add_addresses(self, name: str, addresses: list[str]) -> None:
        """Many more addresses on the node's link in one `ip -batch` (250 take well under a second)."""
        if addresses:
            batch = "".join(f"addr add {a}/24 dev eth0\n" for a in addresses)
            r = subprocess.run([IP, "-n", self.nodes[name].netns, "-batch", "-"], input=batch, capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                raise NetnsError(f"ip -n {self.nodes[name].netns} -batch (addr add ...): {r.stderr.strip()}")

    def cut(self, name: str) -> None:
        """Partition the node from every other (its link to the bridge goes down)."""
        _ip("-n", self.hub, "link", "set", self.nodes[name].hub_link, "down")
        self.cut_nodes.add(name)

    def restore(self, name: str) -> None:
        _ip("-n", self.hub, "link", "set", self.nodes[name].hub_link, "up")
        self.cut_nodes.discard(name)

    def exec_argv(self, name: str, argv: list[str]) -> list[str]:
        """`argv` run inside the node's namespace."""
        return exec_argv(self.nodes[name].netns, argv)

    def close(self) -> None:
        """Delete every namespace made here (their links go with them). Kill their processes first."""
        for ns in reversed(self._made):
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", ns)
        self._made.clear()
        self.nodes.clear()
        self.cut_nodes.clear()

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
