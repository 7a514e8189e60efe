"""`ccfo init` (in-process, from the source checkout) and the production warnings of `ccfo check-config`."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest
import yaml

from ccfo.config.loader import load_config
from ccfo.platform.auth import Role, TokenStore
from controller.cli import main
from controller.init import GENERATED, data_root, write_tree
from tests.configkit import copy_config, edit
from tests.deploy.kit import REPO


def test_init_writes_a_valid_private_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "etc-ccfo"
    assert main(["init", "--site", "acme", str(target)]) == 0
    out = capsys.readouterr().out
    assert "wrote a starting config for site acme" in out and "secrets/README" in out
    cfg = load_config(target)
    assert cfg.site.name == "acme" and cfg.site_model.controller.journal == "/var/lib/ccfo-controller/journal.sqlite"
    assert cfg.site_model.controller.listen == "127.0.0.1:8080" and cfg.site_model.controller.tls_cert_file is None
    assert sorted(p.name for p in (target / "checklists").iterdir()) == \
        sorted(p.name for p in (REPO / "config" / "checklists").glob("*.yaml"))
    assert (target / "asterisk" / "manager-ccfo.conf").is_file() and (target / "rules.yaml").is_file()
    secrets_dir = target / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    values = set()
    for name in GENERATED:
        assert (secrets_dir / name).stat().st_mode & 0o777 == 0o600
        values.add((secrets_dir / name).read_text().strip())
    assert len(values) == len(GENERATED) and all(len(v) >= 32 for v in values)
    readme = (secrets_dir / "README").read_text()
    for name in (*GENERATED, "tokens.yaml", "pdu-community", "controller.key", "ipc-a.key", "ipc-b.key", "app-sz.key",
                 "dbconn-sz.key"):
        assert name in readme, name
    assert "tls/ca.crt" in (target / "site.yaml").read_text() and (target / "tls" / "README").is_file()
    tokens = TokenStore.load(secrets_dir / "tokens.yaml")  # the agents' token is registered, by digest only
    principal = tokens.authenticate((secrets_dir / "agent-token").read_text().strip(), now=0.0)
    assert principal is not None and principal.role is Role.AGENT
    assert (secrets_dir / "agent-token").read_text().strip() not in (secrets_dir / "tokens.yaml").read_text()
    assert "acme" not in (REPO / "config" / "site.yaml").read_text()  # the example is untouched
    assert not any(str(v) in out for v in values)  # secrets are not printed


def test_init_with_the_controller_url_serves_https_on_the_operations_network(tmp_path: Path) -> None:
    write_tree(tmp_path / "c", "acme", controller_url="https://ops.example.net:8443", state_dir="/srv/ccfo/")
    ctl = load_config(tmp_path / "c").site_model.controller
    assert (ctl.listen, ctl.url, ctl.journal) == ("0.0.0.0:8443", "https://ops.example.net:8443",
                                                  "/srv/ccfo/journal.sqlite")
    assert (ctl.tls_cert_file, ctl.tls_key_file, ctl.ca_file) == ("tls/controller.crt", "secrets/controller.key",
                                                                  "tls/ca.crt")
    text = (tmp_path / "c" / "site.yaml").read_text()
    assert "mode: supervised                # the source plan" in text  # comments survive


def test_init_never_overwrites_and_checks_its_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "site.yaml").write_text("precious\n")
    assert main(["init", "--site", "acme", str(tmp_path / "used")]) == 2
    assert "is not an empty directory: ccfo init never overwrites" in capsys.readouterr().err
    assert (tmp_path / "used" / "site.yaml").read_text() == "precious\n"
    assert main(["init", "--site", "Acme Corp", str(tmp_path / "new")]) == 2
    assert "--site 'Acme Corp': a site name is lower case" in capsys.readouterr().err
    assert main(["init", "--site", "acme", "--controller-url", "http://ops:8080", str(tmp_path / "new")]) == 2
    assert "expected https://HOST[:PORT]" in capsys.readouterr().err


def test_init_group_makes_the_tree_readable_by_the_services_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    write_tree(tmp_path / "c", "acme", group=group)
    secrets_dir = tmp_path / "c" / "secrets"
    assert secrets_dir.stat().st_mode & 0o777 == 0o750 and secrets_dir.stat().st_gid == os.getgid()
    assert (secrets_dir / "agent-token").stat().st_mode & 0o777 == 0o640


def test_the_data_comes_from_the_checkout_here() -> None:
    assert data_root() == REPO


# --- production warnings -------------------------------------------------------------------------------------

@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)



def warnings(cfg_dir: Path) -> list[str]:
    return [str(w) for w in load_config(cfg_dir, display_dir="config").warnings]


def test_production_warnings_for_lab_only_settings(cfg_dir: Path) -> None:
    site = cfg_dir / "site.yaml"
    edit(site, "  listen: 127.0.0.1:8080", "  listen: 0.0.0.0:8080")
    edit(site, "      tls_cert_file: tls/ipc-b.crt", "      #")
    edit(site, "    community_file: secrets/pdu-community", "    #")
    edit(site, "      priv_key_file: secrets/snmp-priv-key\n",
         "      priv_key_file: secrets/snmp-priv-key\n      notify_targets: [{host: 10.9.0.1, community_file: c}]\n")
    found = "\n".join(warnings(cfg_dir))
    assert "controller.listen: warning: plain HTTP on a non-loopback address" in found, found
    assert "hosts.ipc-b.agent.url: warning: https, but the agent has no tls_cert_file" in found, found
    assert "fencing.pdu: warning: no community_file" in found, found
    assert "hosts.ipc-a.snmp.notify_targets[0].community_file: warning: SNMP v2c" in found, found


def test_production_warns_without_automatic_fencing(cfg_dir: Path) -> None:
    assert "fencing" not in "\n".join(warnings(cfg_dir))
    edit(cfg_dir / "site.yaml", "  method: pdu ", "  method: operator ")
    found = "\n".join(warnings(cfg_dir))
    assert "fencing.method: warning: no automatic fencing: an unreachable primary waits for an operator" in found, found


def test_agents_cannot_reach_a_controller_on_loopback(cfg_dir: Path) -> None:
    found = "\n".join(warnings(cfg_dir))
    assert "controller.listen: warning: agents on other machines (ipc-a 10.20.1.11, ipc-b 10.20.1.12) cannot " \
           "reach the controller at http://127.0.0.1:8080" in found, found
    edit(cfg_dir / "site.yaml", "  listen: 127.0.0.1:8080", "  listen: 127.0.0.1:8080\n  url: https://10.20.0.5:8443")
    assert "cannot reach the controller" not in "\n".join(warnings(cfg_dir))


def test_the_example_needs_its_tls_files_only_at_run_time(cfg_dir: Path) -> None:
    cfg = load_config(cfg_dir)
    a = cfg.site_model.hosts["ipc-a"].agent
    assert (a.tls_cert_file, a.tls_key_file, a.ca_file) == ("tls/ipc-a.crt", "secrets/ipc-a.key", "tls/ca.crt")
    assert yaml.safe_load((cfg_dir / "site.yaml").read_text())["fencing"]["pdu"]["community_file"]
