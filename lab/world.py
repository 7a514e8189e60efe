"""The lab's netns mode (LabLayout(netns=True)): the namespaces of one lab, and the process that runs it moved
into its "world" namespace.

`enter_world(layout)` makes a hub namespace with a bridge (lab/netns.py) and one namespace per node: every
controller member (`controller`, or ctl-a, ctl-b, ctl-c at NET.221..223), every etcd member (etcd1..3 at
NET.231..233) and every IPC host (ipc-a at NET.1, ipc-b at NET.2); then a `world` namespace on the same
bridge holding every other NET.1..254 address (the databases, the PDU, the SIP front, the SIPp far ends, the
servers, the lab's control API). It then moves the calling thread into world with setns(2): every thread and
process it starts afterwards is born there. Namespaces are named TAG-NODE (layout.netns_tag, such as
ccfo-10-79-0-ctl-a); leftovers of an earlier lab on the same net are deleted first.

`LabSite` (lab/site.py) starts each node's processes with `ip netns exec TAG-NODE`, cuts and restores a
node's link (`partition`/`heal`) and deletes every namespace in `down()`, which also moves the calling
thread back to the namespace it came from.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from pathlib import Path

import yaml

from lab.children import LabError
from lab.labconfig import LabLayout
from lab.netns import CLONE_NEWNET, NetnsError, NetnsLab, _ip, exec_argv, list_netns, netns_available, setns_net

REPO = Path(__file__).resolve().parent.parent
WORLD = "world"
_current: NetnsLab | None = None
_home_fd: int | None = None


def site_host_names(source: Path) -> list[str]:
    """The IPC hosts of the source site, in site.yaml's order (build() gives them NET.1, NET.2, ...)."""
    try:
        return list(yaml.safe_load((source / "site.yaml").read_text())["hosts"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise LabError(f"cannot read the hosts of {source / 'site.yaml'}: {exc}") from exc


def current_world() -> NetnsLab | None:
    """The namespaces `enter_world` made in this process (None before, and after `leave_world`)."""
    return _current


def enter_world(layout: LabLayout, source: Path = REPO / "config") -> NetnsLab:
    """Make the lab's namespaces (hub, one per node, world) and move this process into world.

    Call it in the main thread BEFORE any other thread exists (before asyncio.run, before anything binds a
    socket): setns(2) moves only the calling thread, and threads started later inherit its namespace, so
    a thread started earlier would stay outside. Raises LabError when other threads run, when the layout is not
    netns, when namespaces cannot be made here (root is needed), or when a world is already entered.
    `source` is the site the lab is built from (its hosts become nodes)."""
    global _current, _home_fd
    if not layout.netns:
        raise LabError("enter_world needs LabLayout(netns=True)")
    if _current is not None:
        raise LabError(f"this process is already in the world of {_current.tag}")
    if threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        raise LabError(f"enter_world must run in the main thread before any other thread starts "
                       f"({threading.active_count()} threads run)")
    reason = netns_available()
    if reason:
        raise LabError(f"the lab's netns mode cannot run here: {reason}")
    hosts = site_host_names(source)
    stale = [ns for ns in list_netns() if ns.startswith(layout.netns_tag + "-")]
    for ns in stale:  # an earlier lab on this net that was not taken down (its processes are gone or orphaned)
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", ns)
    lab = NetnsLab(layout.net, tag=layout.netns_tag)
    try:
        for node, address in layout.netns_nodes(hosts).items():
            lab.add_node(node, address)
        world = layout.world_addresses(hosts)
        lab.add_node(WORLD, world[0])
        lab.add_addresses(WORLD, world[1:])
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            setns_net(f"/run/netns/{lab.nodes[WORLD].netns}")
        except BaseException:
            os.close(home)
            raise
    except NetnsError as exc:
        lab.close()
        raise LabError(f"cannot make the lab's namespaces: {exc}") from exc
    except BaseException:
        lab.close()
        raise
    _current, _home_fd = lab, home
    return lab


def leave_world() -> None:
    """Delete the lab's namespaces and move the calling thread back where `enter_world` found it (threads
    born in world stay there, in a namespace that is left with its loopback only). Safe to call twice."""
    global _current, _home_fd
    lab, home = _current, _home_fd
    _current, _home_fd = None, None
    if home is not None:
        try:
            ctypes.CDLL(None, use_errno=True).setns(home, CLONE_NEWNET)
        finally:
            os.close(home)
    if lab is not None:
        lab.close()


def node_argv(layout: LabLayout, node: str, argv: list[str]) -> list[str]:
    """`argv` as the lab starts it for `node`: unchanged without netns, else inside the node's namespace."""
    if not layout.netns:
        return argv
    return exec_argv(layout.node_netns(node), argv)
