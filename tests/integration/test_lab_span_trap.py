"""A span alarm from the lab AMI server to a real `snmptrapd`, in one piece: the lab's simulated Asterisk
raises the alarm on its AMI socket, the real agent process reads it (agents/ami), its SNMP responder turns
the view change into an SNMPv3 authPriv trap to the notification target site.yaml gives it, and net-snmp's
snmptrapd accepts and decodes it with the CCFO-MIB. Nothing in between is stubbed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from ccfo.snmp.security import Secret, V3User, engine_id_for
from lab.site import REPO, LabSite
from tests.integration.labkit import layout
from tests.snmp.conftest import free_udp_port, mib_cache, snmp_env  # noqa: F401 (fixtures)
from tests.snmp.trapd import snmptrapd, v3_sender_line
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


def source_with_nms(tmp: Path, port: int) -> Path:
    """The example config with one extra notification target on ipc-a: the test's snmptrapd."""
    src = tmp / "source"
    shutil.copytree(REPO / "config", src)
    site = yaml.safe_load((src / "site.yaml").read_text())
    site["hosts"]["ipc-a"]["snmp"]["notify_targets"] = [{"host": "127.0.0.1", "port": port, "kind": "trap",
                                                         "user": "ccfo"}]
    (src / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return src


async def test_a_span_alarm_on_the_lab_ami_reaches_snmptrapd_through_the_agent(
        tmp_path: Path, mib_cache: Path, snmp_env: dict[str, str]) -> None:  # noqa: F811
    port = free_udp_port()
    lab = LabSite(layout(tmp_path), source=source_with_nms(tmp_path, port))
    try:
        await lab.up()
        secrets = lab.layout.config / "secrets"
        user = V3User("ccfo", Secret.from_file(secrets / "snmp-auth-key"), Secret.from_file(secrets / "snmp-priv-key"))
        engine_id = engine_id_for(lab.site["site"]["snmp_enterprise"], "ipc-a")
        (tmp_path / "trapd").mkdir()
        async with snmptrapd(tmp_path / "trapd", mib_cache, snmp_env, v3_sender_line(user, engine_id),
                             port=port) as trapd:
            started = time.monotonic()
            await lab.inject("ipc-a", "span", "2", "red")

            def alarm_line() -> str | None:
                return next((x for x in trapd.text().splitlines() if "CCFO-MIB::ccfoSpanAlarmRaised" in x), None)

            line = await async_wait_until(alarm_line, timeout=5, describe=trapd.text)
            assert time.monotonic() - started < 2.0, "the trap took longer than the agent's notification budget"
            assert "TRAP2, SNMP v3" in line, line
            assert "CCFO-MIB::ccfoSpanAlarmState.2 = INTEGER: red(2)" in line, line
            assert 'ccfoHostName.0 = STRING: "ipc-a"' in line or "STRING: ipc-a" in line, line
            assert "ccfoSpanAlarmState.1 " not in line, "only the span that changed is in the trap"
    finally:
        await lab.down()
