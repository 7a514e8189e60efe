"""SIP trunks in site.yaml (hosts.NAME.trunks) and the admission policy with AMI down (agi.ami_down):
valid configs load into the domain model; mistakes are check-config errors naming file:line: field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.capacity import CallKind, Scenario, admit_unknown, scenario_channels
from ccfo.domain.site import SipDriver
from tests.test_config import cfg_dir, edit, problems

__all__ = ["cfg_dir"]  # the fixture, imported for its name

SPANS_B = """      spans:
        - {span: 1, kind: e1-pri, channels: 30, trunk: carrier}
    fax_channels: 4"""


def with_trunks(cfg_dir: Path, trunks: str, spans: str = "      spans: []") -> int:
    """ipc-b's telephony becomes `trunks` (YAML lines under `    trunks:`); returns the trunks: line."""
    return edit(cfg_dir / "site.yaml", SPANS_B, f"{spans}\n    trunks:\n{trunks}\n    fax_channels: 4") + 1


def test_a_sip_trunk_host_loads_with_its_channels(cfg_dir: Path) -> None:
    with_trunks(cfg_dir, "      - {name: carrier-a, kind: sip, channels: 30}\n"
                         "      - {name: old-pbx, channels: 8, driver: sip}")
    b = load_config(cfg_dir).site.host("ipc-b")
    assert b.board.spans == () and [(t.name, t.channels, t.driver) for t in b.trunks] == [
        ("carrier-a", 30, SipDriver.PJSIP), ("old-pbx", 8, SipDriver.SIP)]
    assert b.channels == 38 and b.trunk("old-pbx").channel_prefix == "SIP/old-pbx-"  # type: ignore[union-attr]


def test_trunks_beside_spans_add_up(cfg_dir: Path) -> None:
    with_trunks(cfg_dir, "      - {name: carrier-a, channels: 10}", spans=SPANS_B.rsplit("\n", 1)[0])
    site = load_config(cfg_dir).site
    assert site.host("ipc-b").channels == 40
    assert scenario_channels(site, Scenario.NORMAL, {}, {"ipc-b": ["carrier-a"]})["ipc-b"] == 30


@pytest.mark.parametrize(("trunk", "field", "message"), [
    ("{name: carrier-a, kind: sip}", "trunks[0].channels", "required field is missing"),
    ("{name: carrier-a, channels: 0}", "trunks[0].channels", "must be 1..10000, got 0"),
    ("{name: carrier-a, channels: -3}", "trunks[0].channels", "must be 1..10000, got -3"),
    ("{name: carrier-a, kind: iax, channels: 5}", "trunks[0].kind", "Input should be 'sip'"),
    ("{name: carrier-a, channels: 5, driver: h323}", "trunks[0].driver", "Input should be 'pjsip' or 'sip'"),
    ("{channels: 5}", "trunks[0].name", "required field is missing"),
    ("{name: 'bad name', channels: 5}", "trunks[0].name", "String should match pattern"),
])
def test_bad_trunks_are_errors_with_file_line_and_field(cfg_dir: Path, trunk: str, field: str, message: str) -> None:
    line = with_trunks(cfg_dir, f"      - {trunk}")
    found = [p for p in problems(cfg_dir) if f"hosts.ipc-b.{field}:" in p]
    assert found and found[0].startswith(f"config/site.yaml:{line + 1}: hosts.ipc-b.{field}: {message}"), \
        problems(cfg_dir)


def test_duplicate_trunk_names_are_an_error(cfg_dir: Path) -> None:
    line = with_trunks(cfg_dir, "      - {name: carrier-a, channels: 10}\n      - {name: carrier-a, channels: 5}")
    assert (f"config/site.yaml:{line + 2}: hosts.ipc-b.trunks[1].name: duplicate trunk name 'carrier-a' "
            "(also trunks[0])") in problems(cfg_dir)


def test_a_host_without_spans_or_trunks_is_an_error(cfg_dir: Path) -> None:
    edit(cfg_dir / "site.yaml", SPANS_B, "      spans: []\n    fax_channels: 4")
    assert any(p.endswith("hosts.ipc-b: no telephony: give board.spans (DAHDI) or trunks (SIP), or both")
               for p in problems(cfg_dir)), problems(cfg_dir)


def test_the_ami_down_policy_is_per_kind_and_defaults_to_fail_open(cfg_dir: Path) -> None:
    edit(cfg_dir / "site.yaml", "    fax_channels: 4\n    service_backend: systemd\n    services: *ipc-services\n"
         "    db_config_files: *ipc-db-files\n\ndatabases:",
         "    fax_channels: 4\n    agi: {fail_open: false, ami_down: {ivr: admit}}\n    service_backend: systemd\n"
         "    services: *ipc-services\n    db_config_files: *ipc-db-files\n\ndatabases:")
    from agents.snmp_agi import ami_down_policy

    agi = load_config(cfg_dir).site_model.hosts["ipc-b"].agi
    policy = ami_down_policy(agi.ami_down, agi.fail_open)
    assert (policy.ivr, policy.agent, policy.fax) == (True, False, False)  # unset kinds follow fail_open: false
    answer = admit_unknown(CallKind.AGENT, policy, "AMI down (connection refused)")
    assert not answer.admit and answer.reason == ("AMI down (connection refused): live calls unknown; agent refused "
                                                  "by the ami_down policy")


def test_an_unknown_ami_down_answer_is_an_error(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "    fax_channels: 4\n    service_backend: systemd",
                "    fax_channels: 4\n    agi:\n      ami_down: {agent: maybe}\n    service_backend: systemd")
    assert any(p.startswith(f"config/site.yaml:{line + 2}: hosts.ipc-b.agi.ami_down.agent: Input should be 'admit' "
                            "or 'refuse'") for p in problems(cfg_dir)), problems(cfg_dir)
