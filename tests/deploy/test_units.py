"""systemd/: every unit passes `systemd-analyze verify`, the hardening is there, the sysusers file creates
the users, and the polkit rule allows the agent exactly its units and verbs.

`systemd-analyze verify` works offline (systemd need not be PID 1) but checks that each ExecStart binary
exists and is executable, and /opt/ccfo/venv/bin/ccfo and the vendors' programs do not exist here. So
each unit is verified unchanged inside a throw-away root (`--root`): a copy of the system's unit
directory (for the targets the units name) plus an executable stub at every ExecStart path. Any output
fails the test: an unknown or misspelt directive is only a warning with exit code 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agents.services import spec_from_model
from agents.services.systemd import SystemdBackend
from ccfo.config.loader import load_config
from tests.deploy.kit import REPO

SYSTEMD = REPO / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service")) + sorted((SYSTEMD / "examples").glob("*.service"))
AGENT_ACTIONS = ("start", "stop", "restart")  # agents/services/systemd.py: SystemdBackend.start/stop/restart
MANAGE = "org.freedesktop.systemd1.manage-units"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in [*UNITS, SYSTEMD / "examples" / "lab-standin.conf"]:
        for value in directives(unit).get("ExecStart", []):
            if value:
                stub = root / value.split()[0].lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\n")
                stub.chmod(0o755)
    return root


def verify(root: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(fake_root: Path, unit: Path) -> None:
    installed = fake_root / "etc/systemd/system" / unit.name
    shutil.copy(unit, installed)
    done = verify(fake_root, installed)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


@needs_analyze
def test_the_lab_drop_in_verifies_and_a_broken_unit_does_not(fake_root: Path, tmp_path: Path) -> None:
    unit = fake_root / "etc/systemd/system" / "ivr.service"
    shutil.copy(SYSTEMD / "examples" / "ivr.service", unit)
    dropin = fake_root / "etc/systemd/system/ivr.service.d"
    dropin.mkdir(exist_ok=True)
    shutil.copy(SYSTEMD / "examples" / "lab-standin.conf", dropin / "lab-standin.conf")
    done = verify(fake_root, unit)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    broken = fake_root / "etc/systemd/system" / "broken.service"  # the check itself can fail
    broken.write_text((SYSTEMD / "ccfo-agent.service").read_text().replace("ProtectClock=", "ProtectClok="))
    assert "Unknown key" in verify(fake_root, broken).stderr


@needs_analyze
@pytest.mark.parametrize("name", ["ccfo-agent.service", "ccfo-controller.service"])
def test_systemd_rates_the_hardening_ok(fake_root: Path, name: str) -> None:
    """systemd's own exposure score (0 best, 10 worst) stays at most 2.0 ("OK"); 1.8 and 1.6 today."""
    installed = fake_root / "etc/systemd/system" / name
    shutil.copy(SYSTEMD / name, installed)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={fake_root}", "--threshold=20",
                           "--no-pager", str(installed)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr
    assert re.search(r"Overall exposure level for \S+: \d\.\d", done.stdout), done.stdout[-300:]


@pytest.mark.parametrize("name", ["ccfo-agent.service", "ccfo-controller.service"])
def test_ccfo_units_are_notify_with_watchdog_and_hardened(name: str) -> None:
    d = {k: v[-1] for k, v in directives(SYSTEMD / name).items()}
    assert d["Type"] == "notify" and d["NotifyAccess"] == "main" and d["Restart"] == "on-failure"
    assert re.fullmatch(r"\d+s", d["WatchdogSec"])
    assert d["User"] in ("ccfo", "ccfo-agent") and d["Group"] == "ccfo"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
                       "PrivateMounts": "yes", "SystemCallFilter": "~@privileged",
                       "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
                       "AmbientCapabilities": "CAP_NET_BIND_SERVICE"}.items():
        assert d.get(key) == value, (key, d.get(key))
    command = d["ExecStart"].split()
    assert command[:2] == ["/opt/ccfo/venv/bin/ccfo", "agent" if "agent" in name else "controller"]
    assert "--config" in command and command[command.index("--config") + 1] == "/etc/ccfo"


def test_example_units_never_restart_behind_ccfos_back() -> None:
    for unit in (SYSTEMD / "examples").glob("*.service"):
        d = directives(unit)
        assert d["Restart"] == ["no"] and "\n[Install]" not in unit.read_text(), unit.name


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_sysusers_creates_the_two_users_in_one_group(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "ccfo.sysusers.conf")], check=True,
                   capture_output=True, timeout=30)
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    group = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert passwd["ccfo"][3] == passwd["ccfo-agent"][3] == group["ccfo"][2]
    assert passwd["ccfo-agent"][5] == "/var/lib/ccfo" and passwd["ccfo-agent"][6] == "/usr/sbin/nologin"
    for name in ("ccfo-agent.service", "ccfo-controller.service"):
        assert directives(SYSTEMD / name)["User"][0] in passwd


# --- the polkit rule --------------------------------------------------------------------------------------

HARNESS = """
const fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null}, addRule: (f) => rules.push(f)};
new Function("polkit", fs.readFileSync(process.argv[1], "utf8"))(polkit);
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
console.log(JSON.stringify(cases.map(([user, id, unit, verb]) => {
  const action = {id: id, lookup: (k) => ({unit: unit, verb: verb})[k]};
  for (const rule of rules) {
    const result = rule(action, {user: user});
    if (result !== null && result !== undefined) return result;
  }
  return "not handled";
})));
"""


def managed_units() -> set[str]:
    """Every unit the agent's systemd backend may start or stop for the example site."""
    cfg = load_config(REPO / "config")
    units = set()
    for host in cfg.site_model.hosts.values():
        specs = [spec_from_model(n, s) for n, s in host.services.items()]
        specs.append(spec_from_model(host.board.driver_service, host.board.driver))
        units |= {s.unit_name if "." in s.unit_name else f"{s.unit_name}.service" for s in specs}
    return units


def polkit(cases: list[tuple[str, str, str, str]]) -> list[str]:
    done = subprocess.run(["node", "-e", HARNESS, str(SYSTEMD / "50-ccfo-agent.rules")], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_rule_lists_exactly_the_units_the_agent_manages() -> None:
    text = (SYSTEMD / "50-ccfo-agent.rules").read_text()
    listed = set(re.findall(r'"([a-z0-9-]+\.service)"', text))
    assert listed == managed_units() == {f"{n}.service" for n in
                                         ("cti", "ivr", "kcxp", "kcbp", "kcxp-replica", "kcbp-replica", "dahdi")}
    assert {f"{n}.service" for n in ("cti", "ivr", "kcxp", "kcbp", "kcxp-replica", "kcbp-replica")} == \
        {p.name for p in (SYSTEMD / "examples").glob("*.service")}


def test_the_backend_runs_just_these_verbs_on_these_units(tmp_path: Path) -> None:
    """What agents/services/systemd.py really runs, through a stand-in systemctl that records its argv."""
    log = tmp_path / "argv"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\necho active\n')
    fake.chmod(0o755)
    backend = SystemdBackend(systemctl=str(fake))
    cfg = load_config(REPO / "config")
    host = cfg.site_model.hosts["ipc-a"]
    specs = [spec_from_model(n, s) for n, s in host.services.items()]
    specs.append(spec_from_model(host.board.driver_service, host.board.driver))

    async def drive() -> None:
        for spec in specs:
            await backend.status(spec)
            for verb in AGENT_ACTIONS:
                await getattr(backend, verb)(spec)

    asyncio.run(drive())
    changes = {tuple(line.split()) for line in log.read_text().splitlines() if "is-active" not in line}
    assert changes == {("--no-ask-password", verb, unit) for verb in AGENT_ACTIONS for unit in managed_units()}


@pytest.mark.skipif(shutil.which("node") is None, reason="evaluating the polkit rule needs node")
def test_polkit_allows_the_agent_exactly_its_units_and_verbs() -> None:
    units = sorted(managed_units())
    allowed = [("ccfo-agent", MANAGE, u, v) for u in units for v in AGENT_ACTIONS]
    refused = ([("ccfo-agent", MANAGE, u, v) for u in units for v in ("reload", "reload-or-restart", "kill")]
               + [("ccfo-agent", MANAGE, u, "start") for u in ("ssh.service", "asterisk.service", "cti",
                                                              "ccfo-agent.service", "cti.service.d", "")]
               + [("ccfo-agent", "org.freedesktop.systemd1.manage-unit-files", "cti.service", "enable"),
                  ("ccfo-agent", "org.freedesktop.login1.reboot", "", ""),
                  ("ccfo-agent", "org.freedesktop.systemd1.reload-daemon", "", "")])
    others = [(user, MANAGE, "cti.service", "start") for user in ("ccfo", "asterisk", "root", "ccfo-agent2")]
    results = polkit(allowed + refused + others)
    assert results[:len(allowed)] == ["yes"] * len(allowed)
    assert results[len(allowed):len(allowed) + len(refused)] == ["no"] * len(refused)
    assert results[len(allowed) + len(refused):] == ["not handled"] * len(others)


def test_example_units_match_the_example_site() -> None:
    site = yaml.safe_load((REPO / "config" / "site.yaml").read_text())
    for host in site["hosts"].values():
        for name, svc in host["services"].items():
            assert (SYSTEMD / "examples" / svc.get("unit", f"{name}.service")).is_file(), name
