"""The lab's config tree with and without the managed servers (LabLayout.servers): validated by the production
loader, servers on their own addresses, their files, backups and cron files under the lab directory."""

from __future__ import annotations

from pathlib import Path

from agents.jobs import CronJobs, JobSpec
from ccfo.config.loader import load_config
from controller.checklists.loader import load_checklist
from lab.labconfig import LabLayout, build
from lab.site import _write_cron

REPO = Path(__file__).resolve().parents[2]


def test_the_default_lab_keeps_the_ipc_pair_only(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path)
    site = build(REPO / "config", layout)
    assert "servers" not in site and layout.server_addresses == {}
    assert load_config(layout.config).site_model.servers == {}
    assert not (layout.config / "switches.yaml").exists(), "the switches name the servers"
    runbooks = sorted(p.name for p in (layout.config / "checklists").glob("*.yaml"))
    assert runbooks == ["weekend-upgrade.yaml"], "the migration runbook acts on the servers: only with them"


def test_with_servers_every_server_gets_an_agent_address_token_and_lab_paths(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, net="127.9.1", servers=True)
    build(REPO / "config", layout)
    loaded = load_config(layout.config)  # the production loader accepts the generated tree
    servers = loaded.site_model.servers
    shipped = load_config(REPO / "config").site_model.servers
    assert list(servers) == list(shipped)
    addresses = list(layout.server_addresses.values())
    assert len(set(addresses)) == len(servers) and not set(addresses) & set(layout.hosts.values())
    for name, server in servers.items():
        assert server.datacenter == shipped[name].datacenter and server.role == shipped[name].role
        assert server.agent.url == f"http://{layout.server_addresses[name]}:{layout.agent_port}"
        assert (layout.config / "secrets" / f"agent-token-{name}").stat().st_mode & 0o077 == 0
        assert Path(server.backup_dir) == layout.host_dir(name) / "backups"
        assert sorted(server.services) == sorted(shipped[name].services)
        for f in server.db_config_files:
            assert Path(f.path).parent == layout.host_dir(name) / "etc"
        assert sorted(server.jobs) == sorted(shipped[name].jobs)
        for job in server.jobs.values():  # systemd timers too: the lab has no systemd, every job is a cron file
            assert job.backend.value == "cron" and Path(job.cron_file or "").parent == layout.host_dir(name) / "cron.d"
    assert (layout.config / "switches.yaml").exists()
    migration = load_checklist(layout.config / "checklists" / "datacenter-migration.yaml", loaded.site)
    assert migration.step("stop-shanghai-app").kind.value == "action", "the runbook's server names fit the lab"
    entry = servers["cs-sz"].switch_files[0]
    assert entry.reload is not None and entry.reload[-2:] == ["reload", f"http://{layout.server_addresses['cs-sz']}:"
                                                                        f"{layout.entry_port}"]
    tokens = (layout.config / "secrets" / "tokens.yaml").read_text()
    assert all(f"host: {name}" in tokens for name in servers)


def test_the_labs_cron_files_are_what_the_agent_itself_writes(tmp_path: Path) -> None:
    spec = JobSpec("ta-import", "cron", "30 1 * * 1-5", "echo ran >> /dev/null", "taimport", tmp_path / "ta-import")
    cron = CronJobs(tmp_path / "backups")
    for enabled in (True, False):
        _write_cron(spec.cron_file, spec.name, spec.cron_line, enabled)  # type: ignore[arg-type]
        written = spec.cron_file.read_text()  # type: ignore[union-attr]
        assert cron.status(spec).state == ("enabled" if enabled else "disabled")
        cron.set(spec, enabled)  # the agent finds its own content: nothing rewritten, nothing kept aside
        assert spec.cron_file.read_text() == written  # type: ignore[union-attr]
        assert not (tmp_path / "backups").exists()
