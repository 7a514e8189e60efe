"""Config loading: the shipped example is valid; every kind of mistake names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.site import Duty
from tests.configkit import copy_config, edit, problems

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)




def test_example_config_is_valid_and_matches_the_source_plan():
    cfg = load_config(REPO / "config")
    a, b = cfg.site.hosts
    assert (a.id, a.role.value, a.board.channels, a.fax_channels) == ("ipc-a", "primary", 60, 4)
    assert (b.id, b.role.value, b.board.channels, b.fax_channels) == ("ipc-b", "standby", 30, 4)
    assert set(a.layout(Duty.PRIMARY)) == {"cti", "ivr", "kcxp", "kcbp"}
    assert set(b.layout(Duty.STANDBY)) == {"kcxp", "kcbp"}
    assert set(b.layout(Duty.TAKEOVER)) == {"cti", "ivr", "kcxp-replica", "kcbp-replica"}
    assert cfg.site.active_db == "shenzhen"
    assert [r.id for r in cfg.policy.rules][:2] == ["primary-unreachable", "primary-cti-ivr-fault"]


def test_span_channels_out_of_range_names_file_line_and_field(cfg_dir):
    text = (cfg_dir / "site.yaml").read_text()
    start = text.index("  ipc-b:")
    offset = text.index("channels: 30", start)
    line = text[:offset].count("\n") + 1
    (cfg_dir / "site.yaml").write_text(text[:offset] + "channels: 40" + text[offset + len("channels: 30"):])
    assert f"config/site.yaml:{line}: hosts.ipc-b.board.spans[0].channels: must be 1..31, got 40" in problems(cfg_dir)


def test_all_problems_are_reported_at_once(cfg_dir):
    l1 = edit(cfg_dir / "site.yaml", "role: standby", "role: backup")
    l2 = edit(cfg_dir / "site.yaml", "heartbeat_s: 1.0", "heartbeat_s: 0")
    out = problems(cfg_dir)
    assert any(p.startswith(f"config/site.yaml:{l1}: hosts.ipc-b.role: ") for p in out), out
    assert f"config/site.yaml:{l2}: controller.heartbeat_s: must be 0.05..600, got 0" in out


def test_unknown_field_is_an_error_not_a_silent_default(cfg_dir):
    line = edit(cfg_dir / "site.yaml", "  heartbeat_s: 1.0", "  heartbeat_s: 1.0\n  hearbeat_s: 2")
    assert f"config/site.yaml:{line + 1}: controller.hearbeat_s: unknown field" in problems(cfg_dir)


def test_missing_field_points_at_its_parent(cfg_dir):
    line = edit(cfg_dir / "site.yaml", "    address: 10.20.1.12\n", "")
    out = problems(cfg_dir)
    assert any(p.startswith("config/site.yaml:") and "hosts.ipc-b.address: required field is missing" in p
               for p in out), out
    assert line > 0


def test_yaml_syntax_error_has_a_line(cfg_dir):
    line = edit(cfg_dir / "rules.yaml", "  hold_down_s: 600", "  hold_down_s: [600")
    out = problems(cfg_dir)
    assert len(out) == 1 and out[0].startswith("config/rules.yaml:") and "YAML syntax" in out[0]
    assert int(out[0].split(":")[1]) >= line


def test_duplicate_span_numbers(cfg_dir):
    line = edit(cfg_dir / "site.yaml", "- {span: 2, kind: e1-pri", "- {span: 1, kind: e1-pri")
    assert (f"config/site.yaml:{line}: hosts.ipc-a.board.spans[1].span: duplicate span number 1 (also spans[0])"
            in problems(cfg_dir))


def test_unknown_service_in_a_rule(cfg_dir):
    line = edit(cfg_dir / "rules.yaml", "services: [cti, ivr]", "services: [cti, ivrr]")
    out = problems(cfg_dir)
    assert any(p.startswith(f"config/rules.yaml:{line}: rules[1].match.services[1]: unknown service 'ivrr'")
               for p in out), out


def test_standby_without_replica_services(cfg_dir):
    site = cfg_dir / "site.yaml"
    text = site.read_text()
    text = text.replace("    services: *ipc-services\n", """    services:
      cti: {runs_as: [primary, takeover], critical: true}
      ivr: {runs_as: [primary, takeover], critical: true}
      kcxp: {runs_as: [primary, standby]}
      kcbp: {runs_as: [primary, standby]}
""")
    site.write_text(text)
    out = problems(cfg_dir)
    assert any("hosts.ipc-b.services: the standby has no replica services" in p for p in out), out


def test_critical_service_on_the_standby_is_refused(cfg_dir):
    edit(cfg_dir / "site.yaml", "      cti:\n        runs_as: [primary, takeover]",
         "      cti:\n        runs_as: [primary, takeover, standby]")
    out = problems(cfg_dir)
    assert any("hosts.ipc-a.services.cti.runs_as: a critical service (CTI/IVR) must not run on the standby" in p
               for p in out), out


def test_rule_action_must_fit_its_role(cfg_dir):
    line = edit(cfg_dir / "rules.yaml", "action: isolate_standby", "action: failover")
    out = problems(cfg_dir)
    assert any(p.startswith(f"config/rules.yaml:{line}: rules[3].action: failover does not apply to role standby")
               for p in out), out


def test_unknown_active_database(cfg_dir):
    line = edit(cfg_dir / "site.yaml", "active: shenzhen", "active: beijing")
    assert any(p.startswith(f"config/site.yaml:{line}: databases.active: unknown database site 'beijing'")
               for p in problems(cfg_dir))


def test_db_reader_must_be_a_service(cfg_dir):
    edit(cfg_dir / "site.yaml", "readers: [cti]", "readers: [ctl]")
    assert any("db_config_files[1].readers[0]: unknown service 'ctl'" in p for p in problems(cfg_dir))


def test_missing_file(cfg_dir):
    (cfg_dir / "rules.yaml").unlink()
    assert problems(cfg_dir) == ["config/rules.yaml: file not found"]


def test_top_level_not_a_mapping(cfg_dir):
    (cfg_dir / "rules.yaml").write_text("- just\n- a list\n")
    assert problems(cfg_dir) == ["config/rules.yaml:1: expected a mapping at the top of the file"]


def test_pdu_fencing_needs_an_outlet_per_host(cfg_dir):
    line = edit(cfg_dir / "site.yaml", "outlets: {ipc-a: 1, ipc-b: 2}", "outlets: {ipc-a: 1}")
    assert f"config/site.yaml:{line}: fencing.pdu.outlets: no outlet for host ipc-b" in problems(cfg_dir)


def test_lab_only_settings_are_warnings(cfg_dir):
    edit(cfg_dir / "site.yaml", "url: https://10.20.1.11:9101", "url: http://10.20.1.11:9101")
    cfg = load_config(cfg_dir, display_dir="config")
    assert any("hosts.ipc-a.agent.url: warning: plain HTTP on a non-loopback address" in str(w)
               for w in cfg.warnings)


PROBE = ('probe: {http: "http://127.0.0.1:8710/health", expect_status: 200, interval_s: 0.5, timeout_s: 0.5, '
         'failures: 3}')


def test_the_example_probes_cti_and_ivr(cfg_dir):
    loaded = load_config(cfg_dir)
    for host in loaded.site_model.hosts.values():
        assert host.services["cti"].probe is not None and host.services["cti"].probe.kind == "http"
        assert host.services["ivr"].probe is not None and host.services["ivr"].probe.failures == 3


@pytest.mark.parametrize(("probe", "field", "message"), [
    ('{tcp: "127.0.0.1:70000"}', "probe.tcp", "must be HOST:PORT with a port 1..65535, got '127.0.0.1:70000'"),
    ('{tcp: "127.0.0.1:0"}', "probe.tcp", "must be HOST:PORT with a port 1..65535"),
    ('{http: "http://127.0.0.1:99999/health"}', "probe.http", "the port must be 1..65535"),
    ('{grpc: "127.0.0.1:50051"}', "probe", "unknown probe kind 'grpc' (kinds: tcp, http, command, ami)"),
    ("{interval_s: 1}", "probe", "a probe has exactly one kind of tcp, http, command, ami, got none"),
    ('{tcp: "h:1", command: [x]}', "probe",
     "a probe has exactly one kind of tcp, http, command, ami, got tcp, command"),
    ("{command: [/bin/true], failures: 0}", "probe.failures", "must be 1..100, got 0"),
    ("{command: []}", "probe.command", ""),
    ("{ami: true, interval_s: 0.5, timeout_s: 2}", "probe.timeout_s", "must be at most interval_s (0.5), got 2"),
])
def test_bad_probes_are_check_config_errors_with_file_and_line(cfg_dir, probe, field, message):
    line = edit(cfg_dir / "site.yaml", PROBE, f"probe: {probe}")
    out = problems(cfg_dir)
    want = f"config/site.yaml:{line}: hosts.ipc-a.services.cti.{field}: {message}"
    assert any(p.startswith(want) for p in out), (want, out)


def test_a_per_kind_debounce_must_name_one_of_the_rules_faults(cfg_dir):
    line = edit(cfg_dir / "rules.yaml", "      service_hung: 0.5", "      span_alarm: 0.5")
    out = problems(cfg_dir)
    want = (f"config/rules.yaml:{line}: rules[1].debounce_by_fault_s.span_alarm: span_alarm is not among this "
            "rule's faults (service_down, service_hung, ami_hung)")
    assert want in out, out


def test_an_unknown_fault_kind_in_a_per_kind_debounce_is_an_error(cfg_dir):
    line = edit(cfg_dir / "rules.yaml", "      service_hung: 0.5", "      service_frozen: 0.5")
    out = problems(cfg_dir)
    assert any(p.startswith(f"config/rules.yaml:{line}: rules[1].debounce_by_fault_s.service_frozen") for p in out), out


def test_a_primary_cti_crash_needs_no_debounce_but_a_span_alarm_keeps_its_own() -> None:
    from ccfo.domain.faults import Fault, FaultKind, FaultTracker
    from ccfo.domain.rules import evaluate
    from ccfo.domain.state import SiteState

    cfg = load_config(REPO / "config")
    rule = next(r for r in cfg.policy.rules if r.id == "primary-cti-ivr-fault")
    assert rule.debounce(FaultKind.SERVICE_DOWN) == 0.0 and rule.debounce_s == 3.0
    state = SiteState.normal(cfg.site)
    crash = FaultTracker.empty().observe([Fault(FaultKind.SERVICE_DOWN, "ipc-a", "cti")], 100.0)
    assert evaluate(cfg.site, state, crash, cfg.policy, 100.0).rule == "primary-cti-ivr-fault"
    span = FaultTracker.empty().observe([Fault(FaultKind.SPAN_ALARM, "ipc-a", "1")], 100.0)
    assert evaluate(cfg.site, state, span, cfg.policy, 104.9).rule is None
