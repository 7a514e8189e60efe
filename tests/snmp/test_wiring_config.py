"""The SNMP and FastAGI settings of site.yaml: defaults, `check-config` cross-checks (file, line, field),
and their translation into credentials and notification targets (secrets from files, never printed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.config.models import ControllerModel, NotifyTargetModel, SnmpModel
from ccfo.snmp.security import Secret
from ccfo.snmp.wiring import (
    SnmpConfigError,
    controller_target,
    file_reader,
    host_credentials,
    notify_target,
    trap_destination,
)
from tests.configkit import copy_config, edit, problems

REPO = Path(__file__).resolve().parents[2]
KEYS = "      auth_key_file: secrets/snmp-auth-key\n      priv_key_file: secrets/snmp-priv-key\n"


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    return copy_config(tmp_path)




def add_targets(cfg_dir: Path, targets: str, host_keys: str = KEYS) -> int:
    """Give ipc-a's snmp section these notify_targets lines; returns the line of the first target."""
    line = edit(cfg_dir / "site.yaml", KEYS, host_keys + "      notify_targets:\n" + targets)
    return line + host_keys.count("\n") + 1


def test_defaults() -> None:
    cfg = load_config(REPO / "config")
    ctl, a = cfg.site_model.controller, cfg.site_model.hosts["ipc-a"]
    assert (ctl.snmp_trap_listen, ctl.snmp_nms_targets, ctl.snmp_poll_interval_s) == (None, [], 10.0)
    assert (a.agi.enabled, a.agi.listen, a.agi.fail_open) == (True, "127.0.0.1:4573", True)
    assert a.snmp.notify_targets == []
    target = NotifyTargetModel(host="nms")
    assert (target.port, target.kind) == (162, "trap")


def test_valid_targets_load(cfg_dir: Path) -> None:
    add_targets(cfg_dir, "        - {host: 10.9.0.1, kind: inform, user: ccfo}\n"
                         "        - {host: 10.9.0.2, port: 1162, community_file: secrets/nms-community}\n")
    edit(cfg_dir / "site.yaml", "  poll_interval_s: 5.0\n",
         "  poll_interval_s: 5.0\n  snmp_trap_listen: 10.20.1.5:1162\n  snmp_poll_interval_s: 30\n"
         "  snmp_nms_targets:\n    - {host: 10.9.0.1, user: ctl, auth_key_file: a, priv_key_file: p}\n")
    cfg = load_config(cfg_dir)
    targets = cfg.site_model.hosts["ipc-a"].snmp.notify_targets
    assert [(t.host, t.kind, t.user, t.community_file) for t in targets] == [
        ("10.9.0.1", "inform", "ccfo", None), ("10.9.0.2", "trap", None, "secrets/nms-community")]
    assert cfg.site_model.controller.snmp_trap_listen == "10.20.1.5:1162"
    assert cfg.site_model.controller.snmp_nms_targets[0].user == "ctl"


def test_a_v3_target_without_keys_is_refused(cfg_dir: Path) -> None:
    line = add_targets(cfg_dir, "        - {host: 10.9.0.1, user: nms}\n", host_keys="")
    out = problems(cfg_dir)
    assert (f"config/site.yaml:{line}: hosts.ipc-a.snmp.notify_targets[0].user: SNMPv3 target user 'nms' has no "
            "keys: set auth_key_file and priv_key_file here or in the host's snmp section") in out, out


def test_a_target_is_v2c_or_v3_not_both_nor_neither(cfg_dir: Path) -> None:
    line = add_targets(cfg_dir, "        - {host: 10.9.0.1, user: nms, community_file: secrets/c}\n"
                                "        - {host: 10.9.0.2}\n")
    out = problems(cfg_dir)
    for i in (0, 1):
        assert (f"config/site.yaml:{line + i}: hosts.ipc-a.snmp.notify_targets[{i}]: give exactly one of "
                "community_file (SNMPv2c) or user (SNMPv3)") in out, out


def test_the_host_read_user_as_a_target_must_keep_its_keys(cfg_dir: Path) -> None:
    add_targets(cfg_dir, "        - {host: 10.9.0.1, user: ccfo, auth_key_file: other-a, priv_key_file: other-p}\n")
    assert any("notify_targets[0].user: 'ccfo' is this host's read user" in p for p in problems(cfg_dir))


def test_keys_come_in_pairs(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "      priv_key_file: secrets/snmp-priv-key\n", "")
    out = problems(cfg_dir)
    assert (f"config/site.yaml:{line - 1}: hosts.ipc-a.snmp.auth_key_file: SNMPv3 needs both auth_key_file and "
            "priv_key_file") in out, out


def test_controller_nms_v3_target_needs_its_own_keys(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "  poll_interval_s: 5.0\n",
                "  poll_interval_s: 5.0\n  snmp_nms_targets:\n    - {host: 10.9.0.1, user: ccfo}\n")
    out = problems(cfg_dir)
    assert (f"config/site.yaml:{line + 2}: controller.snmp_nms_targets[0].user: SNMPv3 target user 'ccfo' has no "
            "keys: set auth_key_file and priv_key_file here") in out, out


@pytest.mark.parametrize("value", ["1162", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", ":162"])
def test_trap_listen_must_be_host_and_port(cfg_dir: Path, value: str) -> None:
    line = edit(cfg_dir / "site.yaml", "  poll_interval_s: 5.0\n",
                f"  poll_interval_s: 5.0\n  snmp_trap_listen: '{value}'\n")
    out = problems(cfg_dir)
    assert any(p.startswith(f"config/site.yaml:{line + 1}: controller.snmp_trap_listen: must be HOST:PORT")
               for p in out), out


def test_agi_listen_is_checked_and_can_be_switched_off(cfg_dir: Path) -> None:
    line = edit(cfg_dir / "site.yaml", "    fax_channels: 4               # the 4-channel fax board\n",
                "    fax_channels: 4\n    agi: {listen: 'localhost', enabled: false}\n")
    assert any(p.startswith(f"config/site.yaml:{line + 1}: hosts.ipc-a.agi.listen: must be HOST:PORT")
               for p in problems(cfg_dir))


def test_a_host_without_credentials_is_a_warning_when_the_controller_listens(cfg_dir: Path) -> None:
    edit(cfg_dir / "site.yaml", KEYS, "", count=2)
    edit(cfg_dir / "site.yaml", "  poll_interval_s: 5.0\n",
         "  poll_interval_s: 5.0\n  snmp_trap_listen: 0.0.0.0:1162\n")
    cfg = load_config(cfg_dir, display_dir="config")
    warned = [str(w) for w in cfg.warnings if "no SNMP keys or community" in str(w)]
    assert len(warned) == 2 and "hosts.ipc-b.snmp: warning:" in warned[1], warned


# --- from the models to credentials and targets --------------------------------------------------


def secrets_dir(tmp_path: Path, **files: str) -> Path:
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
    return tmp_path


def test_credentials_and_targets_from_files(tmp_path: Path) -> None:
    d = secrets_dir(tmp_path, auth="auth-key-123", priv="priv-key-456", community="nms-community",
                    nauth="nms-auth-789", npriv="nms-priv-012")
    read = file_reader(lambda p: d / p)
    snmp = SnmpModel(auth_key_file="auth", priv_key_file="priv", community_file="community")
    user, community = host_credentials(snmp, read)
    assert user is not None and user.name == "ccfo" and user.auth_key == Secret("auth-key-123")
    assert community == Secret("nms-community")
    borrowed = notify_target("t0", NotifyTargetModel(host="10.9.0.1", kind="inform", user="ops"), read, user)
    assert borrowed.user is not None and borrowed.user.priv_key == Secret("priv-key-456")
    own = notify_target("t1", NotifyTargetModel(host="10.9.0.1", user="nms", auth_key_file="nauth",
                                                priv_key_file="npriv"), read)
    assert own.user is not None and own.user.auth_key == Secret("nms-auth-789")
    v2c = notify_target("t2", NotifyTargetModel(host="10.9.0.2", community_file="community"), read)
    assert (v2c.version, v2c.kind, v2c.port) == ("v2c", "trap", 162)
    assert "nms-community" not in repr(v2c) and "priv-key-456" not in repr(borrowed)


def test_unreadable_or_short_keys_are_named_without_their_content(tmp_path: Path) -> None:
    d = secrets_dir(tmp_path, auth="short", priv="priv-key-456")
    read = file_reader(lambda p: d / p)
    with pytest.raises(SnmpConfigError, match="shorter than 8") as short:
        host_credentials(SnmpModel(auth_key_file="auth", priv_key_file="priv"), read)
    assert "short'" not in str(short.value) and "priv-key-456" not in str(short.value)
    with pytest.raises(SnmpConfigError, match="missing"):
        host_credentials(SnmpModel(auth_key_file="missing", priv_key_file="priv"), read)
    assert host_credentials(SnmpModel(), read) == (None, None)
    with pytest.raises(SnmpConfigError, match="has no keys"):
        notify_target("t", NotifyTargetModel(host="h", user="nms"), read)


def test_the_controller_target_follows_the_trap_listen_address(tmp_path: Path) -> None:
    community = Secret("c0mmunity")
    assert trap_destination(ControllerModel()) is None
    assert controller_target(ControllerModel(), None, community) is None
    ctl = ControllerModel(snmp_trap_listen="127.9.1.100:1162")
    assert trap_destination(ctl) == ("127.9.1.100", 1162)
    target = controller_target(ctl, None, community)
    assert target is not None and (target.kind, target.version, target.port) == ("inform", "v2c", 1162)
    assert controller_target(ctl, None, None) is None
    wildcard = ControllerModel(snmp_trap_listen="0.0.0.0:1162", url="http://10.20.1.5:8080")
    assert trap_destination(wildcard) == ("10.20.1.5", 1162)
    assert trap_destination(ControllerModel(snmp_trap_listen="0.0.0.0:1162")) == ("127.0.0.1", 1162)
