"""Drill scenarios as data: the library validates against the example site, and a broken scenario or
drills.yaml gets every problem at once as `file:line: field: message`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError
from drills import dryrun
from drills.model import LIBRARY, FaultKind, find, library, load_drills_config, load_scenario

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")

GOOD = """\
name: site-cti-stop
description: stop CTI on the primary of the real site
target: fundco-callcenter
steady_state: {state: normal, active_host: ipc-a, calls: []}
fault: {kind: service_stop, host: ipc-a, service: cti}
expect:
  detect: {within_s: 5}
  recover: {within_s: 10}
  calls: []
"""


def write(tmp_path: Path, text: str, name: str = "drill.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, cfg=CFG) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_scenario(path, cfg)
    return [str(p) for p in err.value.problems]


def test_the_library_has_the_source_plans_drills_and_all_are_valid() -> None:
    scenarios = {name: load_scenario(path, CFG) for name, path in library().items()}
    assert {s.fault.kind for s in scenarios.values()} == set(FaultKind) - {FaultKind.SERVICE_STOP}
    assert set(scenarios) == {"primary-span-fault", "primary-board-driver-fault", "primary-cti-crash",
                              "primary-cti-hang", "primary-ivr-crash", "standby-fault", "database-site-fault",
                              "primary-unreachable", "planned-switchover"}
    for name, s in scenarios.items():
        assert s.name == name and s.lab and s.expect.recover.within_s > 0
        assert s.steady_state.state == "normal", "every drill starts from, and returns to, the normal site"


def test_a_scenario_is_found_by_name_or_path(tmp_path: Path) -> None:
    assert find("primary-cti-crash") == LIBRARY / "primary-cti-crash.yaml"
    path = write(tmp_path, GOOD)
    assert find(str(path)) == path
    with pytest.raises(ConfigError, match="no drill named 'nope'"):
        find("nope")


def test_every_schema_problem_at_once_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("calls: []\n", "calls: []\n  colour: blue\n")
                 .replace("within_s: 5", "within_s: -1").replace("kind: service_stop, host: ipc-a, ",
                                                                 "kind: service_stop, "))
    found = problems(path)
    assert f"{path}:10: expect.colour: unknown field" in found
    assert f"{path}:7: expect.detect.within_s: Input should be greater than 0, got -1" in found
    assert f"{path}:5: fault: a service_stop fault needs host" in found


def test_cross_checks_against_the_site(tmp_path: Path) -> None:
    text = (GOOD.replace("host: ipc-a, service: cti", "host: ipc-c, service: cti")
            .replace("active_host: ipc-a", "active_host: ipc-z"))
    found = problems(write(tmp_path, text))
    assert any(":5: fault.host: unknown host 'ipc-c'" in p for p in found)
    assert any(":4: steady_state.active_host: unknown host 'ipc-z'" in p for p in found)
    found = problems(write(tmp_path, GOOD.replace("service: cti", "service: fax"), "b.yaml"))
    assert any("fault.service: ipc-a has no service 'fax'" in p for p in found)


def test_a_real_site_can_only_take_what_an_agent_can_do(tmp_path: Path) -> None:
    found = problems(write(tmp_path, GOOD.replace("kind: service_stop", "kind: service_crash")))
    assert any("fault.kind: service_crash can only be injected in the lab" in p for p in found)
    found = problems(write(tmp_path, GOOD.replace("target: fundco-callcenter", "target: other-site"), "b.yaml"))
    assert any("target: target must be 'lab' or this site's name 'fundco-callcenter'" in p for p in found)
    assert load_scenario(write(tmp_path, GOOD, "c.yaml"), CFG).fault.fault_text() == "ipc-a:service:cti=down"


def test_dry_run_prints_the_drill_and_the_decision_the_controller_should_take() -> None:
    s = load_scenario(LIBRARY / "primary-unreachable.yaml", CFG)
    text = dryrun.text(s, CFG)
    assert "fault: make ipc-a unreachable (agent and AMI frozen) (through the lab)" in text
    assert "expect within 40 s: decision failover by rule primary-unreachable" in text
    assert "failover by rule primary-unreachable (propose)" in text
    assert "power ipc-a off at the PDU" in text
    switch = dryrun.expected_decision(load_scenario(LIBRARY / "planned-switchover.yaml", CFG), CFG)
    assert switch["action"] == "switchover" and any("wait until the calls on ipc-a" in x for x in switch["steps"])


def test_drills_yaml_schedules_and_sip_plan(tmp_path: Path) -> None:
    assert load_drills_config(tmp_path).schedules == [], "no drills.yaml: no schedules"
    (tmp_path / "drills.yaml").write_text(
        "schedules:\n"
        "  - {id: weekly, drill: primary-cti-crash, cron: '0 3 * * sun'}\n"
        "  - {id: bad, drill: primary-cti-crash, cron: '61 * * * *'}\n"
        "  - {id: both, drill: primary-cti-crash, cron: '0 3 * * *', at: '2030-01-01T03:00:00'}\n"
        "sip:\n"
        "  endpoints: {ipc-a: '10.20.1.11:5060'}\n"
        "  caller: 10.20.1.200\n"
        "  agent_phone: 10.20.1.200\n"
        "  dialout: '10.20.1.200:5080'\n")
    with pytest.raises(ConfigError) as err:
        load_drills_config(tmp_path)
    found = [str(p) for p in err.value.problems]
    assert any(":3: schedules[1].cron: not a cron expression" in p for p in found), found
    assert any(":4: schedules[2]: give exactly one of cron" in p for p in found), found
    assert any(":8: sip.agent_phone: must be ADDRESS:PORT" in p for p in found), found


def test_cli_lists_the_library_and_prints_a_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from controller.cli import main
    assert main(["drill", "list", "--config", str(REPO / "config")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 9 and any(line.startswith("primary-cti-hang") for line in listed)
    assert main(["drill", "run", "planned-switchover", "--config", str(REPO / "config"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fault: planned switchover to ipc-b with 3 IVR and 1 agent call(s) in progress" in out
    assert "The controller is expected to decide" in out and "wait until the calls on ipc-a" in out
    bad = write(tmp_path, GOOD.replace("service: cti", "service: fax"), "bad.yaml")
    assert main(["drill", "run", str(bad), "--config", str(REPO / "config"), "--dry-run"]) == 2
    assert f"{bad}:5: fault.service: ipc-a has no service 'fax'" in capsys.readouterr().err


def test_the_hang_drill_names_the_hung_fault_and_is_lab_only() -> None:
    s = load_scenario(LIBRARY / "primary-cti-hang.yaml", CFG)
    assert s.fault.kind is FaultKind.SERVICE_HANG
    assert s.fault.fault_text() == "ipc-a:service:cti=hung"
    assert s.fault.describe() == "hang cti on ipc-a (SIGSTOP)"
    assert s.expect.detect.within_s == 3 and s.expect.decide.rule == "primary-cti-ivr-fault"


def test_expect_calls_as_limits_on_refused_cut_and_held_calls(tmp_path: Path) -> None:
    text = GOOD.replace("  calls: []\n", "  calls:\n    verify: [inbound, agent_answer]\n    refused: 0\n    cut: 0\n"
                        "    way_back: {refused: 1}\n")
    s = load_scenario(write(tmp_path, text), CFG)
    assert s.expect.verify_calls == ["inbound", "agent_answer"]
    limits = s.expect.call_limits
    assert limits is not None and limits.limits("drill").items() == [("refused", 0), ("cut", 0)]
    assert limits.limits("way_back").items() == [("refused", 1)]
    assert "expect at most 0 call(s) of the steady load cut during the drill" in "\n".join(dryrun.steps(s))
    assert load_scenario(write(tmp_path, GOOD, "plain.yaml"), CFG).expect.call_limits is None
    bad = write(tmp_path, GOOD.replace("  calls: []\n", "  calls: {refused: -1, dropped: 2}\n"), "bad.yaml")
    found = "\n".join(problems(bad))
    assert "bad.yaml:" in found and "calls" in found


def test_the_library_expects_no_refused_or_cut_call_in_a_planned_switchover() -> None:
    switch = load_scenario(find("planned-switchover"), CFG)
    limits = switch.expect.call_limits
    assert limits is not None and limits.limits("drill").items() == [("refused", 0), ("cut", 0)]
    assert limits.limits("way_back").items() == [("refused", 0), ("cut", 0)]
    crash = load_scenario(find("primary-cti-crash"), CFG).expect.call_limits
    assert crash is not None and crash.limits("drill").items() == [("refused", 0)]
    assert crash.limits("way_back").items() == [("refused", 0), ("cut", 0)]
