"""CCFO-MIB passes smilint and loads in net-snmp, and its OIDs are exactly ccfo.snmp.layout's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ccfo.snmp import layout as L
from tests.snmp.conftest import MIB_DIR, need

MIB = MIB_DIR / "CCFO-MIB.txt"


def smilint(level: int, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("smilint"), "-l", str(level), "-s", "-p", str(MIB)], capture_output=True, text=True,
                          env={"SMIPATH": f"{cache}:{MIB_DIR}", "PATH": "/usr/bin:/bin"}, timeout=30, check=False)


def test_smilint_level_4_is_clean(mib_cache: Path) -> None:
    done = smilint(4, mib_cache)
    assert done.returncode == 0
    assert (done.stdout + done.stderr).strip() == ""


def test_smilint_level_6_only_notes_the_enterprise_node(mib_cache: Path) -> None:
    # The one remark at the strictest levels: enterprises.32473 has no MIB of its own (it is the RFC 5612
    # documentation number), so the module's registration point is an implicit node.
    done = smilint(6, mib_cache)
    lines = [x for x in (done.stderr + done.stdout).splitlines() if x.strip()]
    assert lines, "smilint -l 6 should at least remark on the implicit enterprise node"
    assert all("implicit node definition" in x for x in lines), lines


def translate(names: list[str], cache: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run([need("snmptranslate"), "-M", f"{cache}:{MIB_DIR}", "-m", "CCFO-MIB", "-On",
                           *(f"CCFO-MIB::{n}" for n in names)], capture_output=True, text=True, env=env, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "Cannot find module" not in done.stderr and "Unlinked" not in done.stderr, done.stderr
    return [x.strip() for x in done.stdout.splitlines() if x.strip()]


def dotted(oid: L.Oid) -> str:
    return "." + ".".join(map(str, oid))


def expected_oids() -> dict[str, L.Oid]:
    lay = L.Layout()
    names = {
        "ccfoMIB": lay.root, "ccfoHostName": lay.host_name[:-1], "ccfoHostRole": lay.host_role[:-1],
        "ccfoHostDuty": lay.host_duty[:-1], "ccfoHostMode": lay.host_mode[:-1], "ccfoAmiLink": lay.ami_link[:-1],
        "ccfoBoardDriver": lay.board_driver[:-1],
        "ccfoSpanAlarmState": lay.span(L.SPAN_ALARM_COL, 1)[:-1],
        "ccfoSpanDChannel": lay.span(L.SPAN_DCHANNEL_COL, 1)[:-1],
        "ccfoSpanChannels": lay.span(L.SPAN_CHANNELS_COL, 1)[:-1],
        "ccfoSpanDsx1LineStatus": lay.span(L.SPAN_DSX1_COL, 1)[:-1],
        "ccfoTrunkName": lay.trunk(L.TRUNK_NAME_COL, 1)[:-1],
        "ccfoTrunkDriver": lay.trunk(L.TRUNK_DRIVER_COL, 1)[:-1],
        "ccfoTrunkState": lay.trunk(L.TRUNK_STATE_COL, 1)[:-1],
        "ccfoTrunkChannels": lay.trunk(L.TRUNK_CHANNELS_COL, 1)[:-1],
        "ccfoServiceName": lay.service(L.SVC_NAME_COL, 1)[:-1],
        "ccfoServiceState": lay.service(L.SVC_STATE_COL, 1)[:-1],
        "ccfoServiceLastChange": lay.service(L.SVC_CHANGE_COL, 1)[:-1],
        "ccfoEventHost": lay.event(L.EVENT_HOST)[:-1], "ccfoEventRule": lay.event(L.EVENT_RULE)[:-1],
        "ccfoEventAction": lay.event(L.EVENT_ACTION)[:-1], "ccfoEventPlanId": lay.event(L.EVENT_PLAN)[:-1],
        "ccfoEventDuty": lay.event(L.EVENT_DUTY)[:-1], "ccfoEventText": lay.event(L.EVENT_TEXT)[:-1],
    }
    cap_names = ["ccfoCapChannels", "ccfoCapIvrCalls", "ccfoCapAgentCalls", "ccfoCapFaxCalls", "ccfoCapFreeChannels",
                 "ccfoCapReserve", "ccfoCapUsedChannels", "ccfoCapFaxChannels"]
    names.update({n: lay.capacity(i)[:-1] for i, n in enumerate(cap_names, start=1)})
    ntf = {"ccfoSpanAlarmRaised": L.Notification.SPAN_ALARM_RAISED,
           "ccfoSpanAlarmCleared": L.Notification.SPAN_ALARM_CLEARED,
           "ccfoDChannelDown": L.Notification.DCHANNEL_DOWN, "ccfoDChannelUp": L.Notification.DCHANNEL_UP,
           "ccfoServiceDown": L.Notification.SERVICE_DOWN, "ccfoServiceUp": L.Notification.SERVICE_UP,
           "ccfoBoardDriverDown": L.Notification.DRIVER_DOWN, "ccfoBoardDriverUp": L.Notification.DRIVER_UP,
           "ccfoAmiLost": L.Notification.AMI_LOST, "ccfoAmiRestored": L.Notification.AMI_RESTORED,
           "ccfoRoleChanged": L.Notification.ROLE_CHANGED,
           "ccfoTrunkDown": L.Notification.TRUNK_DOWN, "ccfoTrunkUp": L.Notification.TRUNK_UP,
           "ccfoDecision": L.Notification.DECISION,
           "ccfoPlanStarted": L.Notification.PLAN_STARTED, "ccfoPlanFinished": L.Notification.PLAN_FINISHED,
           "ccfoPlanFailed": L.Notification.PLAN_FAILED, "ccfoSiteRoleChanged": L.Notification.SITE_ROLE_CHANGED}
    names.update({n: lay.notification(k) for n, k in ntf.items()})
    assert set(ntf.values()) == set(L.Notification), "every notification type must be in the MIB"
    return names


def test_snmptranslate_loads_the_mib_and_oids_match_the_layout(mib_cache: Path, snmp_env: dict[str, str]) -> None:
    expected = expected_oids()
    got = translate(list(expected), mib_cache, snmp_env)
    assert got == [dotted(o) for o in expected.values()]


def test_dsx1_line_status_column_is_the_ds1_mib_arc(mib_cache: Path, snmp_env: dict[str, str]) -> None:
    # the standard DS1-MIB column is served by number only (its MIB text is not shipped): check the arc
    done = subprocess.run([need("snmptranslate"), "-M", f"{mib_cache}:{MIB_DIR}", "-m", "CCFO-MIB", "-On",
                           "SNMPv2-SMI::transmission.18.6.1.10"], capture_output=True, text=True, env=snmp_env,
                          timeout=30, check=False)
    assert done.stdout.strip() == dotted(L.DSX1_LINE_STATUS)


@pytest.mark.parametrize("enterprise", [32473, 99999])
def test_layout_follows_the_configured_enterprise(enterprise: int) -> None:
    lay = L.Layout(enterprise)
    assert lay.root == (1, 3, 6, 1, 4, 1, enterprise, 1)
    assert lay.kind_of(lay.notification(L.Notification.PLAN_FAILED)) is L.Notification.PLAN_FAILED
    assert lay.kind_of(L.Layout(12345).notification(L.Notification.PLAN_FAILED)) is None
