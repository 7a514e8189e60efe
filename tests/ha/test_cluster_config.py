"""The `cluster:` section of site.yaml: a valid one loads; one member, duplicate names/URLs/endpoints and a
lease TTL below etcd's minimum are check-config errors naming file:line: field; without the section the
site is single-controller as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccfo.config.cluster import etcd_min_lease_ttl_s
from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError

REPO = Path(__file__).resolve().parents[2]

CLUSTER = """
cluster:
  members:
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
    - {name: ctl-b, url: "https://10.20.1.22:8080"}
    - {name: ctl-c, url: "https://10.20.2.21:8080"}
  etcd_endpoints: ["https://10.20.1.21:2379", "https://10.20.1.22:2379", "https://10.20.2.21:2379"]
  lease_ttl_s: 5
"""


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    return d


def with_cluster(d: Path, text: str = CLUSTER) -> int:
    """Append a cluster section; return the line number of its `cluster:` line."""
    site = d / "site.yaml"
    before = site.read_text().rstrip("\n") + "\n"
    site.write_text(before + text)
    return before.count("\n") + 2


def problems(d: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(d, display_dir="config")
    return [str(p) for p in exc.value.problems]


def test_without_cluster_the_site_is_single_controller(cfg_dir: Path) -> None:
    assert load_config(cfg_dir).site_model.cluster is None


def test_a_valid_cluster_section(cfg_dir: Path) -> None:
    with_cluster(cfg_dir)
    c = load_config(cfg_dir).site_model.cluster
    assert c is not None
    assert [m.name for m in c.members] == ["ctl-a", "ctl-b", "ctl-c"]
    assert c.lease_ttl_s == 5 and len(c.etcd_endpoints) == 3 and c.etcd_timeout_s == 2.0


def test_one_member_is_an_error_with_its_line(cfg_dir: Path) -> None:
    line = with_cluster(cfg_dir, """
cluster:
  members:
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
  etcd_endpoints: ["https://10.20.1.21:2379"]
""")
    assert (f"config/site.yaml:{line + 1}: cluster.members: a cluster needs at least two members, got 1 "
            "(one controller: remove the cluster section)") in problems(cfg_dir)


def test_duplicate_names_urls_endpoints(cfg_dir: Path) -> None:
    line = with_cluster(cfg_dir, """
cluster:
  members:
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
    - {name: ctl-a, url: "https://10.20.1.21:8080"}
  etcd_endpoints: ["https://10.20.1.21:2379", "https://10.20.1.21:2379"]
""")
    got = problems(cfg_dir)
    assert f"config/site.yaml:{line + 3}: cluster.members[1].name: duplicate member name 'ctl-a'" in got
    assert f"config/site.yaml:{line + 3}: cluster.members[1].url: duplicate member url 'https://10.20.1.21:8080'" \
        in got
    assert f"config/site.yaml:{line + 4}: cluster.etcd_endpoints[1]: duplicate etcd endpoint " \
           "'https://10.20.1.21:2379'" in got


@pytest.mark.parametrize(("ttl", "election_ms", "minimum"), [(1, 1000, 2), (3, 2500, 4)])
def test_ttl_below_etcds_minimum(cfg_dir: Path, ttl: float, election_ms: int, minimum: int) -> None:
    line = with_cluster(cfg_dir, CLUSTER.replace("lease_ttl_s: 5", f"lease_ttl_s: {ttl}\n"
                                                 f"  etcd_election_timeout_ms: {election_ms}"))
    ttl_line = line + CLUSTER.strip().splitlines().index("  lease_ttl_s: 5")
    assert (f"config/site.yaml:{ttl_line}: cluster.lease_ttl_s: below etcd's minimum lease TTL of {minimum} s "
            f"(1.5 x its election timeout of {election_ms} ms), got {ttl:g}: etcd would silently lengthen it") \
        in problems(cfg_dir)


def test_margin_must_leave_time_to_renew(cfg_dir: Path) -> None:
    line = with_cluster(cfg_dir, CLUSTER + "  safety_margin_s: 3\n")
    assert (f"config/site.yaml:{line + 7}: cluster.safety_margin_s: must be less than half the lease TTL (2.5 s), "
            "got 3") in problems(cfg_dir)


def test_unknown_field_in_cluster(cfg_dir: Path) -> None:
    line = with_cluster(cfg_dir, CLUSTER + "  lease_ttl: 5\n")
    assert any(p.startswith(f"config/site.yaml:{line + 7}: cluster.lease_ttl: ") for p in problems(cfg_dir))


def test_min_ttl_formula_matches_etcd() -> None:
    # measured against etcd 3.4 in tests/ha/test_lab_etcd.py (a TTL of 1 is granted as 2)
    assert etcd_min_lease_ttl_s(100, 1000) == 2
    assert etcd_min_lease_ttl_s(50, 500) == 1
    assert etcd_min_lease_ttl_s(250, 2500) == 4
