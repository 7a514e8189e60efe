"""Checklist files: the two shipped checklists load faithfully; a malformed one is refused with
`file:line: field: problem` for every problem at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError
from controller.checklists.loader import load_checklist, load_checklists, parse_duration, parse_start
from controller.checklists.model import Checklist, StepKind
from controller.checklists.ports import drill_names
from controller.checklists.specs import ActionKind, CallKind, CheckKind
from controller.cli import main

REPO = Path(__file__).resolve().parents[2]
SITE = load_config(REPO / "config").site


def shipped() -> dict[str, Checklist]:
    found, problems = load_checklists(REPO / "config" / "checklists", SITE, drill_names(REPO / "config"))
    assert problems == []
    return found


def test_the_weekend_upgrade_follows_the_source_plan():
    c = shipped()["weekend-upgrade"]
    assert [p.id for p in c.phases] == ["friday", "saturday-morning", "saturday-afternoon", "sunday-morning",
                                        "sunday-afternoon", "monday"]
    assert [str(p.start) for p in c.phases] == ["fri 18:00", "sat 08:00", "sat 13:00", "sun 08:00", "sun 13:00",
                                                "mon 08:30"]
    assert [p.maintenance for p in c.phases] == [False, True, True, False, False, False]
    sat = c.phase("saturday-morning")
    kinds = [(s.id, s.kind) for s in sat.steps]
    assert kinds[:3] == [("stop-system", StepKind.ACTION), ("move-board", StepKind.MANUAL),
                         ("install-driver", StepKind.MANUAL)]
    line_tests = [s for s in sat.steps if s.spec is not None and getattr(s.spec, "check", None) is CheckKind.LINE_TEST]
    assert sorted(h for s in line_tests for h in s.spec.hosts) == ["ipc-a", "ipc-b"]
    calls = [s.spec.call for s in sat.steps if s.kind is StepKind.CALL_TEST]
    assert calls == [CallKind.INBOUND, CallKind.OUTBOUND, CallKind.AGENT_ANSWER]
    assert c.step("start-services").after == ("line-test-primary", "line-test-standby")
    assert c.step("stop-system").confirm and c.step("stop-system").rollback.spec.action is ActionKind.START_SERVICES
    drills = [s.spec.name for s in c.phase("sunday-morning").steps if s.kind is StepKind.DRILL]
    assert drills == ["primary-span-fault", "primary-cti-crash", "standby-fault"]
    assert c.step("repoint-db-test").spec.to == "shanghai" and c.step("repoint-db-back").spec.to == "shenzhen"
    assert c.phase("sunday-afternoon").steps[0].title.startswith("Fix the problems")


def test_the_migration_has_five_batches_in_order_each_with_a_way_back():
    c = shipped()["datacenter-migration"]
    assert [p.id for p in c.phases] == ["batch-1-online-service", "batch-2-ta-import", "batch-3-app-db-test",
                                        "batch-4-app-db-cutover", "batch-5-sms-email"]
    for p in c.phases:
        assert any(s.rollback for s in p.steps), f"{p.id} keeps a way back"
    cut = c.phase("batch-4-app-db-cutover")
    assert cut.maintenance
    order = [s.id for s in cut.steps]
    assert order[:8] == ["stop-dds", "cold-backup", "stop-shanghai-app", "start-shenzhen-app", "redeploy-dds",
                         "repoint-ipc-db", "start-shenzhen-db", "start-dds"]
    assert c.step("repoint-ipc-db").rollback.spec.to == "shanghai"


def test_checklists_survive_their_journal_form():
    for c in shipped().values():
        assert Checklist.from_dict(c.to_dict()) == c


def write(tmp_path: Path, text: str, name: str = "broken") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
name: broken
title: A small checklist
phases:
  - id: one
    title: Phase one
    start: fri 18:00
    steps:
      - id: a
        title: First step
        owner: operator
        kind: manual
        planned: 10m
      - id: b
        title: Second step
        owner: operator
        kind: check
        planned: 1m
        check: {hosts_reachable: [ipc-a]}
"""


def test_a_good_small_checklist_loads(tmp_path):
    c = load_checklist(write(tmp_path, GOOD), SITE)
    assert c.step("b").after == ("a",) and c.step("b").timeout_s == 30.0 and c.step("a").planned_s == 600


def problems(tmp_path: Path, text: str, site=SITE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_checklist(write(tmp_path, text), site, drills=["known-drill"])
    return [str(p) for p in info.value.problems]


def test_schema_errors_name_file_line_and_field(tmp_path):
    text = GOOD.replace("planned: 10m", "planned: ten minutes").replace("kind: check", "kind: chek") \
        .replace("title: First step", "title: First step\n        colour: red")
    out = problems(tmp_path, text)
    f = str(tmp_path / "broken.yaml")
    assert f"{f}:13: phases[0].steps[0].planned: a duration like 90s, 15m, 2h or 1h30m, got 'ten minutes'" in out
    assert f"{f}:10: phases[0].steps[0].colour: unknown field" in out
    assert any(p.startswith(f"{f}:17: phases[0].steps[1].kind: Input should be 'manual'") for p in out), out
    assert len(out) == 3


def test_a_step_needs_exactly_the_spec_of_its_kind(tmp_path):
    out = problems(tmp_path, GOOD.replace("        check: {hosts_reachable: [ipc-a]}\n", "        drill: x\n"))
    assert any(":13: phases[0].steps[1]: a check step needs 'check'" in p for p in out), out
    out = problems(tmp_path, GOOD.replace("{hosts_reachable: [ipc-a]}", "{hosts_reachable: [ipc-a], db_site: x}"))
    assert any("give exactly one check" in p and "hosts_reachable, db_site" in p for p in out), out


def test_dependencies_must_exist_and_come_earlier(tmp_path):
    text = GOOD.replace("        kind: manual\n", "        kind: manual\n        after: [b]\n", 1)
    text += "        after: [b, nowhere]\n"
    out = problems(tmp_path, text)
    assert any(":12: phases[0].steps[0].after[0]: 'b' comes later" in p for p in out), out
    assert any("steps[1].after[0]: a step cannot wait for itself" in p for p in out), out
    assert any("steps[1].after[1]: no step 'nowhere' in this checklist" in p for p in out), out


def test_site_references_are_checked(tmp_path):
    text = GOOD.replace("[ipc-a]", "[ipc-z]") + textwrap.indent(textwrap.dedent("""
        - id: c
          title: Switch
          owner: operator
          kind: action
          planned: 5m
          action: {plan: repoint_db, to: atlantis}
          rollback: {title: back again, action: {plan: switchover, to: ipc-q}}
        - id: d
          title: Service
          owner: operator
          kind: check
          planned: 1m
          check: {service_active: {host: ipc-a, service: nginx}}
        - id: e
          title: A drill
          owner: operator
          kind: drill
          planned: 1m
          drill: unknown-drill
    """), "      ")
    out = problems(tmp_path, text)
    assert any("steps[1].check.hosts_reachable[0]: unknown host 'ipc-z'" in p for p in out), out
    assert any("steps[2].action.to: unknown database site 'atlantis'" in p for p in out), out
    assert any("steps[2].rollback.action.to: unknown host 'ipc-q'" in p for p in out), out
    assert any("steps[3].check.service_active.service: ipc-a has no service 'nginx'" in p for p in out), out
    assert any("steps[4].drill: unknown drill scenario 'unknown-drill'" in p for p in out), out


def test_ids_names_and_starts_are_cross_checked(tmp_path):
    text = GOOD.replace("name: broken", "name: other").replace("id: b", "id: a") + textwrap.indent(
        textwrap.dedent("""
        - id: two
          title: Phase two
          start: day 2 08:00
          steps:
            - {id: z, title: Last step, owner: operator, kind: manual, planned: 1h}
        """), "  ")
    out = problems(tmp_path, text)
    assert any(":1: name: must match the file name ('broken'), got 'other'" in p for p in out), out
    assert any("steps[1].id: duplicate step id 'a'" in p for p in out), out
    assert any("phases[1].start: do not mix weekday starts" in p for p in out), out


def test_yaml_syntax_errors_have_their_line(tmp_path):
    out = problems(tmp_path, GOOD.replace("    title: Phase one", "    title: [Phase one"))
    assert len(out) == 1 and "YAML syntax" in out[0] and out[0].startswith(str(tmp_path / "broken.yaml") + ":")


def test_one_bad_file_does_not_hide_the_good_ones(tmp_path):
    write(tmp_path, GOOD, "broken")
    write(tmp_path, GOOD.replace("name: broken", "name: fine"), "fine")
    (tmp_path / "broken.yaml").write_text(GOOD.replace("kind: manual", "kind: magic"))
    found, probs = load_checklists(tmp_path, SITE)
    assert list(found) == ["fine"] and probs and all(p.file.endswith("broken.yaml") for p in probs)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400),
                                               ("1d", 86400), ("1d2h3m4s", 93784)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10", 10, "1.5h", "h", "30 m", "2m1h"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["friday 18:00", "fri 25:00", "day 0 08:00", "sat", "fri 8:60"])
def test_bad_starts(bad):
    with pytest.raises(ValueError):
        parse_start(bad)


def test_ccfo_checklist_check_exits_0_on_the_shipped_config_and_2_with_file_line_errors(tmp_path, capsys):
    assert main(["checklist", "check", "--config", str(REPO / "config")]) == 0
    assert "weekend-upgrade: 6 phases" in capsys.readouterr().out
    cfg = tmp_path / "config"
    (cfg / "checklists").mkdir(parents=True)
    for f in ("site.yaml", "rules.yaml"):
        (cfg / f).write_text((REPO / "config" / f).read_text())
    write(cfg / "checklists", GOOD.replace("planned: 10m", "planned: soon"))
    assert main(["checklist", "check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}/checklists/broken.yaml:12: phases[0].steps[0].planned: a duration like" in err
