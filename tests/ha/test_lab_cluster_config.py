"""The lab's config with several controllers (lab/labconfig.py): the production loader accepts the
generated `cluster:` section (three members on the controller's port and the next two, the lab's etcd at
NET.231..233, lease 5 s), the SNMP receiver one port cannot serve three members is dropped, one controller
keeps the embedded default (no `cluster:`), and only 1 or 3 controllers are offered. A running lab's state
file with several controllers gives the CLI every member's URL (lab/running.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from lab.controllers import LabControllers
from lab.labconfig import LabLayout, build
from lab.running import running_lab

REPO = Path(__file__).resolve().parents[2]


def test_three_controllers_get_a_cluster_section_the_loader_accepts(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path / "lab", net="127.9.1", controller_listen="127.9.1.100:8080", controllers=3)
    build(REPO / "config", lay)
    cfg = load_config(lay.config)
    c = cfg.site_model.cluster
    assert c is not None
    assert [(m.name, m.url) for m in c.members] == [("ctl-a", "http://127.9.1.100:8080"),
                                                    ("ctl-b", "http://127.9.1.100:8081"),
                                                    ("ctl-c", "http://127.9.1.100:8082")]
    assert c.etcd_endpoints == ["http://127.9.1.231:2379", "http://127.9.1.232:2379", "http://127.9.1.233:2379"]
    assert c.lease_ttl_s == 5
    assert cfg.site_model.controller.snmp_trap_listen is None
    assert lay.controller_members == {"ctl-a": "127.9.1.100:8080", "ctl-b": "127.9.1.100:8081",
                                      "ctl-c": "127.9.1.100:8082"}
    assert lay.etcd_dir == lay.root / "etcd"


def test_one_controller_keeps_the_embedded_default(tmp_path: Path) -> None:
    lay = LabLayout(tmp_path / "lab", net="127.9.1", controller_listen="127.9.1.100:8080")
    build(REPO / "config", lay)
    cfg = load_config(lay.config)
    assert cfg.site_model.cluster is None
    assert cfg.site_model.controller.snmp_trap_listen == "127.9.1.100:1162"
    assert lay.controller_members == {"controller": "127.9.1.100:8080"} and lay.etcd_addresses == []


@pytest.mark.parametrize("n", [0, 2, 5])
def test_only_one_or_three_controllers(tmp_path: Path, n: int) -> None:
    with pytest.raises(ValueError, match=f"must be 1 or 3, got {n}"):
        build(REPO / "config", LabLayout(tmp_path / "lab", controllers=n))


def test_the_cli_finds_every_member_of_a_running_lab(tmp_path: Path) -> None:
    lab = tmp_path / ".lab"
    (lab / "config").mkdir(parents=True)
    (lab / "config" / "site.yaml").write_text("site: {}\n")
    urls = ["http://127.9.1.100:8080", "http://127.9.1.100:8081", "http://127.9.1.100:8082"]
    (lab / "lab.json").write_text(json.dumps({"pid": os.getpid(), "api": urls[0] + "/api/v1", "api_urls": urls}))
    found = running_lab(lab)
    assert found is not None and found.api == ",".join(urls)
    (lab / "lab.json").write_text(json.dumps({"pid": os.getpid(), "api": urls[0] + "/api/v1",
                                              "api_urls": urls[:1]}))
    found = running_lab(lab)
    assert found is not None and found.api == urls[0]


def test_the_lab_summary_lists_one_controller_and_no_etcd_by_default(tmp_path: Path) -> None:
    one = LabControllers(LabLayout(tmp_path / "one", net="127.9.1", controller_listen="127.9.1.100:8080"), {})
    assert one.summary() == {"controllers": [{"name": "controller", "url": "http://127.9.1.100:8080", "pid": None,
                                              "log": str(tmp_path / "one" / "logs" / "controller.log")}],
                             "etcd": []}
    three = LabControllers(LabLayout(tmp_path / "three", net="127.9.1", controller_listen="127.9.1.100:8080",
                                     controllers=3), {})
    assert [c["name"] for c in three.summary()["controllers"]] == ["ctl-a", "ctl-b", "ctl-c"]
    assert [(e["name"], e["client_url"], e["pid"]) for e in three.summary()["etcd"]] == [
        ("etcd1", "http://127.9.1.231:2379", None), ("etcd2", "http://127.9.1.232:2379", None),
        ("etcd3", "http://127.9.1.233:2379", None)]
    assert three.etcd is not None and three.etcd.base == tmp_path / "three" / "etcd"
