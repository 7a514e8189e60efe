"""`ccfo capacity` on a site with SIP trunks, as a user runs it (a real `python -m controller` process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_cli_offline import REPO, ccfo
from tests.test_config_trunks import SPANS_B


@pytest.fixture
def sip_config(tmp_path: Path) -> Path:
    """The example site with ipc-b on two SIP trunks (20 pjsip + 10 chan_sip) instead of its E1 span."""
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    site = d / "site.yaml"
    site.write_text(site.read_text().replace(SPANS_B, "      spans: []\n    trunks:\n"
                                             "      - {name: carrier-a, kind: sip, channels: 20}\n"
                                             "      - {name: old-carrier, channels: 10, driver: sip}\n"
                                             "    fax_channels: 4"))
    return d


def test_capacity_lists_the_trunks_and_counts_their_channels(sip_config: Path) -> None:
    r = ccfo("capacity", "--config", str(sip_config), "--scenario", "primary-down")
    assert r.returncode == 0, r.stderr
    assert "ipc-b SIP trunks: carrier-a (pjsip, 20 ch), old-carrier (sip, 10 ch)" in r.stdout
    assert "With 0 agent call(s), 30 more IVR call(s) fit." in r.stdout


def test_a_trunk_down_lowers_c(sip_config: Path) -> None:
    r = ccfo("capacity", "--config", str(sip_config), "--scenario", "primary-down", "--trunk-down",
             "ipc-b:carrier-a", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["hosts"]["ipc-b"]["channels"] == 10 and out["max_ivr_calls"] == 10
    assert out["hosts"]["ipc-b"]["trunks"] == [
        {"name": "carrier-a", "driver": "pjsip", "channels": 20, "state": "down"},
        {"name": "old-carrier", "driver": "sip", "channels": 10, "state": "up"}]


def test_an_unknown_trunk_is_a_usage_error(sip_config: Path) -> None:
    r = ccfo("capacity", "--config", str(sip_config), "--trunk-down", "ipc-b:nope")
    assert r.returncode == 2 and "ipc-b has no trunk nope (trunks: carrier-a, old-carrier)" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_counts_trunk_channels(sip_config: Path) -> None:
    r = ccfo("check-config", "--config", str(sip_config))
    assert r.returncode == 0, r.stderr
    assert "ipc-b standby 30 channels" in r.stdout
