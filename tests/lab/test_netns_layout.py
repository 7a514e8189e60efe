"""The pure parts of the lab's netns mode (LabLayout(netns=True), lab/world.py): who is a node and at which
address, what lives in world, how a node's processes are started, the config tree the members read, and the
clear errors; none needs root (the live mode is tests/ha/test_lab_netns.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from lab.children import LabError
from lab.labconfig import LabLayout, build
from lab.netns import IP
from lab.site import LabSite
from lab.world import enter_world, node_argv, site_host_names

REPO = Path(__file__).resolve().parents[2]
HOSTS = ["ipc-a", "ipc-b"]


def test_without_netns_the_members_keep_controller_listens_address_and_ports(tmp_path: Path) -> None:
    assert LabLayout(tmp_path).controller_members == {"controller": "127.0.0.1:8080"}
    three = LabLayout(tmp_path, net="127.9.2", controllers=3, controller_listen="127.9.2.100:8080")
    assert three.controller_members == {"ctl-a": "127.9.2.100:8080", "ctl-b": "127.9.2.100:8081",
                                        "ctl-c": "127.9.2.100:8082"}
    assert three.controller_address == "127.9.2.100:8080"
    assert node_argv(three, "ctl-a", ["x", "y"]) == ["x", "y"]


def test_with_netns_each_member_has_its_own_address_on_the_same_port(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path, net="10.79.0", controllers=3, controller_listen="10.79.0.100:8080", netns=True)
    assert lay.controller_members == {"ctl-a": "10.79.0.221:8080", "ctl-b": "10.79.0.222:8080",
                                      "ctl-c": "10.79.0.223:8080"}
    assert lay.controller_address == "10.79.0.221:8080"
    one = LabLayout(tmp_path, net="10.79.0", netns=True)
    assert one.controller_members == {"controller": "10.79.0.221:8080"}
    assert one.etcd_names == [] and one.netns_nodes(HOSTS) == {"controller": "10.79.0.221", "ipc-a": "10.79.0.1",
                                                                "ipc-b": "10.79.0.2"}


def test_the_nodes_and_the_world_share_out_the_whole_subnet(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path, net="10.79.0", controllers=3, netns=True)
    nodes = lay.netns_nodes(HOSTS)
    assert nodes == {"ctl-a": "10.79.0.221", "ctl-b": "10.79.0.222", "ctl-c": "10.79.0.223",
                     "etcd1": "10.79.0.231", "etcd2": "10.79.0.232", "etcd3": "10.79.0.233",
                     "ipc-a": "10.79.0.1", "ipc-b": "10.79.0.2"}
    world = lay.world_addresses(HOSTS)
    assert len(world) == 254 - len(nodes) and not set(world) & set(nodes.values())
    for other in ("10.79.0.101", "10.79.0.102", lay.pdu_host, lay.front_host, "10.79.0.240", "10.79.0.242",
                  "10.79.0.11", lay.lab_control.rpartition(":")[0], "10.79.0.100"):
        assert other in world, other
    assert lay.node_netns("ctl-a") == "ccfo-10-79-0-ctl-a" and lay.netns_tag == "ccfo-10-79-0"


def test_a_node_s_argv_runs_inside_its_namespace(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path, net="10.79.0", controllers=3, netns=True)
    argv = ["python", "-m", "controller", "agent", "--host", "ipc-a"]
    assert node_argv(lay, "ipc-a", argv) == [IP, "netns", "exec", "ccfo-10-79-0-ipc-a", *argv]


def test_the_hosts_of_the_source_site_are_the_nodes_build_places(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path, net="10.79.0", controllers=3, netns=True)
    hosts = site_host_names(REPO / "config")
    build(REPO / "config", lay)
    assert {h: lay.netns_nodes(hosts)[h] for h in hosts} == lay.hosts


def test_the_members_config_names_their_own_addresses(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path, net="10.79.0", controllers=3, netns=True)
    build(REPO / "config", lay)
    site = load_config(lay.config).site_model  # the production loader accepts it
    assert site.cluster is not None
    assert [m.url for m in site.cluster.members] == ["http://10.79.0.221:8080", "http://10.79.0.222:8080",
                                                      "http://10.79.0.223:8080"]
    assert site.controller.listen == "10.79.0.221:8080"
    one = LabLayout(tmp_path / "one", net="10.79.0", netns=True)
    build(REPO / "config", one)
    ctl = load_config(one.config).site_model.controller
    assert ctl.listen == "10.79.0.221:8080" and ctl.snmp_trap_listen == "10.79.0.221:1162"


@pytest.mark.parametrize("net", ["127.0.1", "10.79", "127.9.3"])
def test_netns_needs_a_24_outside_loopback(tmp_path: Path, net: str) -> None:
    with pytest.raises(LabError, match="outside 127/8"):
        LabLayout(tmp_path, net=net, netns=True)


def test_enter_world_refuses_a_layout_without_netns_and_a_second_thread(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="needs LabLayout\\(netns=True\\)"):
        enter_world(LabLayout(tmp_path))
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(LabError, match="before any other thread"):
            enter_world(LabLayout(tmp_path, net="10.79.0", netns=True))
    finally:
        stop.set()
        t.join()


@pytest.mark.asyncio
async def test_partitions_need_the_netns_mode_and_a_known_verb(tmp_path: Path) -> None:
    site = LabSite(LabLayout(tmp_path))
    try:
        with pytest.raises(LabError, match="does not run in network namespaces"):
            await site.inject("net", "ipc-a", "cut")
        with pytest.raises(LabError, match="does not run in network namespaces"):
            await site.heal("ctl-a")
        with pytest.raises(LabError, match="usage: net NODE cut\\|heal"):
            await site.inject("net", "ipc-a", "sever")
        assert site.partitioned == frozenset()
    finally:
        await site.http.aclose()
        await site.controllers.http.aclose()
