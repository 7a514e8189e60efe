"""switches.yaml: the source plan's section III as named switches of the managed servers. The shipped file
loads into the domain's values; every name a step uses is checked against site.yaml, each mistake a
check-config error with file:line; the file is optional."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.switches import SwitchVerb
from tests.configkit import copy_config, edit, problems

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)




def test_the_shipped_switches_are_section_iii_each_with_its_inverse() -> None:
    cfg = load_config(REPO / "config")
    assert [s.id for s in cfg.switches] == ["customer-service-to-shanghai", "sms-email-from-shanghai",
                                            "app-shanghai-restart", "database-to-shanghai"]
    assert all(s.steps and s.inverse and s.source.startswith("Source plan III") for s in cfg.switches)
    cs = cfg.switch("customer-service-to-shanghai")
    assert cs is not None and cs.steps[-1].verb is SwitchVerb.SET_FILE and cs.steps[-1].best_effort
    assert (cs.steps[-1].server, cs.steps[-1].name, cs.steps[-1].to) == ("cs-sz", "cs-entry", "shanghai")
    db = cfg.switch("database-to-shanghai")
    assert db is not None and db.steps[0].verb is SwitchVerb.REPOINT_DB and db.steps[0].to == "shanghai"
    assert cfg.site_model.servers["cs-sz"].switch_files[0].reload == ["systemctl", "reload", "apache2.service"]


def test_switches_yaml_is_optional(cfg_dir: Path) -> None:
    (cfg_dir / "switches.yaml").unlink()
    assert load_config(cfg_dir).switches == ()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("{server: cs-sh, start: mysql}", "{server: cs-nowhere, start: mysql}",
     "switches[0].steps[0].server: unknown server 'cs-nowhere' (servers: app-sz, app-sh,"),
    ("{server: cs-sh, start: mysql}", "{server: ipc-a, start: mysql}",
     "switches[0].steps[0].server: unknown server 'ipc-a' (an IPC host: switches act on managed servers)"),
    ("{server: cs-sh, start: mysql}", "{server: cs-sh, start: postgres}",
     "switches[0].steps[0].start: unknown service 'postgres' on cs-sh (services: apache2, mysql)"),
    ("{server: cs-sh, set_file: cs-entry, to: shanghai}", "{server: app-sh, set_file: cs-entry, to: shanghai}",
     "switches[0].steps[2].set_file: 'cs-entry' is not in app-sh's whitelist of switch files "
     "(switch_files: sms-gateway)"),
    ("{server: cs-sh, set_file: cs-entry, to: shanghai}", "{server: cs-sh, set_file: cs-entry, to: beijing}",
     "switches[0].steps[2].to: cs-entry on cs-sh has no value 'beijing' (values: shenzhen, shanghai)"),
    ("{server: sms-sh, job_enable: sms-send}", "{server: sms-sh, job_enable: fax-send}",
     "switches[1].steps[0].job_enable: unknown job 'fax-send' on sms-sh (jobs: sms-send, mail-send)"),
    ("{repoint_db: shanghai}", "{repoint_db: beijing}",
     "switches[3].steps[0].repoint_db: unknown database site 'beijing' (sites: shenzhen, shanghai)"),
    ("{repoint_db: shanghai}", "{server: app-sh, repoint_db: shanghai}",
     "switches[3].steps[0]: repoint_db acts on the whole site: it names no server"),
    ("{server: cs-sh, start: mysql}", "{server: cs-sh, start: mysql, stop: apache2}",
     "switches[0].steps[0]: a switch step has exactly one of start, stop, restart, job_enable, job_disable, "
     "set_file, repoint_db, got start, stop"),
])
def test_a_wrong_name_is_a_check_config_error_with_file_and_line(cfg_dir: Path, old: str, new: str,
                                                                 message: str) -> None:
    line = edit(cfg_dir / "switches.yaml", old, new)
    found = problems(cfg_dir)
    assert any(p.startswith(f"config/switches.yaml:{line}: ") and message in p for p in found), found


def test_a_switch_file_outside_the_rules_is_refused_in_site_yaml(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "path: /etc/apache2/conf-available/cs-entry.conf",
                "path: etc/cs-entry.conf")
    found = problems(cfg_dir)
    assert any(p.startswith(f"config/site.yaml:{line}: ") and "must be an absolute path" in p for p in found), found
