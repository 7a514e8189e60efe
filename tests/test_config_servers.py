"""The managed servers of site.yaml (the site's machines besides the IPCs, per data center) and the repoint order
of rules.yaml: the shipped example loads into the domain model, and every mistake names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.site import JobBackend, ServerKind, ServerRole
from tests.configkit import copy_config, edit, problems

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)




def test_the_example_names_the_source_plans_machines_per_data_center() -> None:
    site = load_config(REPO / "config").site
    assert site.datacenters == ("shanghai", "shenzhen")
    kinds = {(s.datacenter, s.kind) for s in site.servers}
    for kind in ServerKind:  # every machine the plan names has its Shenzhen server
        assert ("shenzhen", kind) in kinds
    app = site.server("app-sz")
    assert (app.kind, app.role, app.services, app.readers) == (ServerKind.APPLICATION, ServerRole.ACTIVE,
                                                               ("appserver",), ("appserver",))
    assert [f.path for f in app.db_files] == ["/opt/appserver/conf/datasource.properties"]
    assert site.server("app-sh").role is ServerRole.BACKUP and site.server("app-sh").datacenter == "shanghai"
    ta = site.server("ta-sz").jobs
    assert [(j.name, j.backend, j.schedule) for j in ta] == [("ta-import", JobBackend.CRON, "30 1 * * 1-5")]
    assert {j.backend for j in site.server("sms-sz").jobs} == {JobBackend.SYSTEMD}
    assert {s.id for s in site.servers_in("shanghai")} == {"app-sh", "ta-sh", "sms-sh", "cs-sh"}
    assert site.agent_ids[:2] == ("ipc-a", "ipc-b") and "dbconn-sz" in site.agent_ids


def test_unknown_data_center(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "datacenter: shenzhen\n    kind: application",
                "datacenter: guangzhou\n    kind: application")
    assert (f"config/site.yaml:{line}: servers.app-sz.datacenter: unknown data center 'guangzhou' "
            "(known: shanghai, shenzhen)") in problems(cfg_dir)


def test_duplicate_server_name_in_the_file(cfg_dir: Path) -> None:
    first = edit(cfg_dir / "site.yaml", "  app-sh:", "  app-sh:")
    line = edit(cfg_dir / "site.yaml", "  dbconn-sz:", "  app-sh:")
    assert (f"config/site.yaml:{line}: servers.app-sh: duplicate key 'app-sh' (first at line {first})"
            in problems(cfg_dir))


def test_a_server_named_like_a_host(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "  dbconn-sz:", "  ipc-a:")
    assert any(p.startswith(f"config/site.yaml:{line}: servers.ipc-a: duplicate name 'ipc-a': also a host")
               for p in problems(cfg_dir))


def test_a_whitelisted_file_must_be_absolute(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "path: /opt/dbconn/etc/dbconn.ini", "path: etc/dbconn.ini")
    assert (f"config/site.yaml:{line}: servers.dbconn-sz.db_config_files[0].path: must be an absolute path, "
            "got 'etc/dbconn.ini'") in problems(cfg_dir)


def test_unknown_kind(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "kind: db-connection", "kind: mainframe")
    found = [p for p in problems(cfg_dir) if p.startswith(f"config/site.yaml:{line}: servers.dbconn-sz.kind:")]
    assert found and "'application'" in found[0] and "'mainframe'" in found[0]


def test_a_reader_must_be_one_of_the_servers_services(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "readers: [dbconn]", "readers: [dbproxy]")
    assert (f"config/site.yaml:{line}: servers.dbconn-sz.db_config_files[0].readers[0]: unknown service 'dbproxy'"
            in problems(cfg_dir))


def test_a_bad_cron_schedule_names_its_field(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", 'schedule: "30 1 * * 1-5"', 'schedule: "30 25 * * 1-5"')
    assert (f"config/site.yaml:{line}: servers.ta-sz.jobs.ta-import.schedule: hour: must be 0..23, got '25'"
            in problems(cfg_dir))


def test_a_cron_file_must_be_absolute_and_a_timer_has_no_cron_fields(cfg_dir: Path) -> None:
    cron = edit(cfg_dir / "site.yaml", "cron_file: /etc/cron.d/ta-import", "cron_file: cron.d/ta-import")
    timer = edit(cfg_dir / "site.yaml", "sms-send: {backend: systemd, timer: sms-send.timer}",
                 "sms-send: {backend: systemd, timer: sms-send.timer, schedule: '* * * * *'}")
    found = problems(cfg_dir)
    assert (f"config/site.yaml:{cron}: servers.ta-sz.jobs.ta-import.cron_file: must be an absolute path, "
            "got 'cron.d/ta-import'") in found
    assert any(p.startswith(f"config/site.yaml:{timer}: servers.sms-sz.jobs.sms-send.schedule: applies to the "
                            "cron backend only") for p in found)


def test_two_agents_on_one_url(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", 'url: "https://10.40.1.21:9101"', 'url: "https://10.30.1.21:9101"')
    assert (f"config/site.yaml:{line}: servers.app-sh.agent.url: shared with another host or server: "
            "https://10.30.1.21:9101") in problems(cfg_dir)


def test_a_repoint_order_naming_an_unknown_kind(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "rules.yaml", "repoint_order: [ipc, db-connection, application]",
                "repoint_order: [ipc, db-connection, application, mainframe]")
    assert (f"config/rules.yaml:{line}: rules[4].repoint_order[3]: unknown kind 'mainframe' (kinds: ipc, "
            "application, db-connection, ta-import, sms-email, customer-service)") in problems(cfg_dir)


def test_a_repoint_order_must_cover_every_server_with_database_files(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "rules.yaml", "repoint_order: [ipc, db-connection, application]",
                "repoint_order: [ipc, application]")
    assert (f"config/rules.yaml:{line}: rules[4].repoint_order: server dbconn-sz (db-connection) has database "
            "config files but its kind is not in the order: they would keep naming the failed site"
            ) in problems(cfg_dir)


def test_a_repoint_order_lists_the_ipcs_once_and_only_on_repoint_db(cfg_dir: Path) -> None:
    other = edit(cfg_dir / "rules.yaml", "    action: isolate_board\n",
                 "    action: isolate_board\n    repoint_order: [ipc]\n") + 1
    line = edit(cfg_dir / "rules.yaml", "repoint_order: [ipc, db-connection, application]",
                "repoint_order: [db-connection, application, application]")
    found = problems(cfg_dir)
    assert f"config/rules.yaml:{line}: rules[4].repoint_order: must include 'ipc': the IPCs' files name the " \
           "database too" in found
    assert f"config/rules.yaml:{line}: rules[4].repoint_order[2]: 'application' is listed more than once" in found
    assert f"config/rules.yaml:{other}: rules[2].repoint_order: applies to action repoint_db only, not " \
           "isolate_board" in found


def test_the_rule_carries_its_order_into_the_domain() -> None:
    cfg = load_config(REPO / "config")
    rule = next(r for r in cfg.policy.rules if r.id == "database-site-fault")
    assert rule.repoint_order == ("ipc", "db-connection", "application")


def test_a_cron_command_is_one_line(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "command: /opt/ta/bin/import-all,",
                'command: "/opt/ta/bin/import-all\\n* * * * * root sh",')  # YAML's \n: a line break
    assert (f"config/site.yaml:{line}: servers.ta-sz.jobs.ta-import.command: must be one line: a line break would "
            "add lines of its own to the cron file") in problems(cfg_dir)
