"""SNMP and FastAGI on the live lab: net-snmp's snmpwalk against a real agent's responder, a span alarm
travelling agent -> controller as an SNMPv3 inform, and the admission server refusing a transfer on a full
host. One lab for the module (on the test's own 127.x.y network); each test sets up the state it needs."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from ccfo.snmp import layout as L
from ccfo.snmp.security import Secret, V3User
from lab.site import LabSite
from tests.integration.labkit import Api, layout
from tests.snmp.conftest import MIB_DIR, ROOT, need, run_tool, v3_args
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]
LAY = L.Layout()
CAPACITY_NAMES = ("ccfoCapChannels", "ccfoCapIvrCalls", "ccfoCapAgentCalls", "ccfoCapFaxCalls",
                  "ccfoCapFreeChannels", "ccfoCapReserve", "ccfoCapUsedChannels", "ccfoCapFaxChannels")
STATUS_FIELDS = ("channels", "ivr_calls", "agent_calls", "fax_calls", "free", "reserve", "used", "fax_channels")
SPAN_COLUMNS = {"ccfoSpanAlarmState": L.SPAN_ALARM_COL, "ccfoSpanDChannel": L.SPAN_DCHANNEL_COL,
                "ccfoSpanChannels": L.SPAN_CHANNELS_COL}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LabSite, Api]]:
    lab = LabSite(layout(tmp_path_factory.mktemp("snmp")))
    try:
        await lab.up()
        api = Api(lab)
        await async_wait_until(lambda: _all_reachable(api), timeout=20)
    except Exception:
        await lab.down()
        raise
    yield lab, api
    await api.aclose()
    await lab.down()


async def _all_reachable(api: Api) -> bool:
    s = await api.status()
    return s["state"] == "normal" and all(h["reachable"] for h in s["hosts"].values())


def lab_user(lab: LabSite) -> V3User:
    secrets = lab.layout.config / "secrets"
    return V3User("ccfo", Secret.from_file(secrets / "snmp-auth-key"), Secret.from_file(secrets / "snmp-priv-key"))


class Walk:
    """snmpwalk of an agent's CCFO-MIB, by MIB names when the base MIBs are cached, else by numeric OIDs."""

    def __init__(self, values: dict[str, str], named: bool) -> None:
        self.values, self.named = values, named

    def get(self, name: str, oid: L.Oid) -> int:
        return int(self.values[f"CCFO-MIB::{name}" if self.named else "." + ".".join(map(str, oid))])

    def capacity(self) -> dict[str, int]:
        return {field: self.get(f"{name}.0", LAY.capacity(arc))
                for arc, (name, field) in enumerate(zip(CAPACITY_NAMES, STATUS_FIELDS, strict=True), start=1)}

    def span(self, n: int) -> dict[str, int]:
        return {name: self.get(f"{name}.{n}", LAY.span(col, n)) for name, col in SPAN_COLUMNS.items()}


async def snmpwalk(lab: LabSite, host: str, tmp: Path) -> Walk:
    addr = lab.site["hosts"][host]["address"]
    cache = ROOT / ".cache" / "mibs"
    named = (cache / "SNMPv2-SMI").exists()
    env = dict(os.environ, SNMPCONFPATH=str(tmp), SNMP_PERSISTENT_DIR=str(tmp), MIBS="", MIBDIRS="")
    mib = ["-M", f"{cache}:{MIB_DIR}", "-m", "CCFO-MIB", "-OQUe"] if named else ["-On", "-OQe"]
    root = "CCFO-MIB::ccfoMIB" if named else "." + ".".join(map(str, LAY.root))
    done = await run_tool(need("snmpwalk"), *v3_args(lab_user(lab)), *mib,
                          f"udp:{addr}:{lab.layout.snmp_port}", root, env=env)
    assert done.rc == 0, done.err
    values = {}
    for line in done.out.splitlines():
        m = re.match(r"^(\S+) = (.*)$", line.strip())
        if m and "No more variables" not in line:
            values[m.group(1)] = m.group(2).strip().strip('"')
    return Walk(values, named)


async def test_snmpwalk_v3_authpriv_shows_the_capacity_and_spans_the_controller_shows(site, tmp_path):
    lab, api = site
    await lab.calls("ipc-a", ivr=5, agent=2)

    async def loaded() -> dict[str, Any] | None:
        s = await api.status()
        cap = s["hosts"]["ipc-a"]["capacity"]
        return s if (cap["ivr_calls"], cap["agent_calls"]) == (5, 2) else None

    status = await async_wait_until(loaded, timeout=10)
    walk = await snmpwalk(lab, "ipc-a", tmp_path)
    want = status["hosts"]["ipc-a"]["capacity"]
    assert walk.capacity() == {f: want[f] for f in STATUS_FIELDS}
    assert walk.capacity()["used"] == 5 + 2 * 2 and walk.capacity()["channels"] == 60
    for host in ("ipc-a", "ipc-b"):
        walk = walk if host == "ipc-a" else await snmpwalk(lab, host, tmp_path)
        spans = status["hosts"][host]["spans"]
        assert spans, status["hosts"][host]
        for s in spans:
            assert walk.span(s["span"]) == {
                "ccfoSpanAlarmState": L.SPAN_ALARM[L.span_alarm_name(s["alarm"])],
                "ccfoSpanDChannel": L.UP if s["dchannel_up"] else L.DOWN,
                "ccfoSpanChannels": s["channels"]}, (host, s)


async def agi(host: str, port: int, script: str) -> dict[str, str]:
    """Play Asterisk's side of a FastAGI session; the variables the server set."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    env = {"agi_network": "yes", "agi_network_script": script, "agi_request": f"agi://{host}:{port}/{script}",
           "agi_channel": "DAHDI/i1/4000-1", "agi_uniqueid": "1795427911.33", "agi_context": "from-trunk",
           "agi_extension": "200", "agi_priority": "4"}
    writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
    found: dict[str, str] = {}
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            name, _, value = line.decode().strip().removeprefix("SET VARIABLE ").partition(" ")
            found[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            writer.write(b"200 result=1\n")
    finally:
        writer.close()
    return found


async def test_fastagi_refuses_a_transfer_on_the_full_30_channel_host(site):
    lab, api = site
    await lab.calls("ipc-b", ivr=28, agent=1)  # X + 2Y = 30 = C on ipc-b

    async def full() -> bool:
        cap = (await api.status())["hosts"]["ipc-b"]["capacity"]
        return (cap["ivr_calls"], cap["agent_calls"]) == (28, 1)

    await async_wait_until(full, timeout=10)
    addr_b, addr_a = lab.site["hosts"]["ipc-b"]["address"], lab.site["hosts"]["ipc-a"]["address"]
    refused = await agi(addr_b, lab.layout.agi_port, "admit?kind=agent")
    assert refused["CCFO_ADMIT"] == "no", refused
    assert "no room" in refused["CCFO_REASON"] and "30" in refused["CCFO_REASON"], refused
    admitted = await agi(addr_a, lab.layout.agi_port, "admit?kind=agent")  # 60 channels: room left
    assert admitted["CCFO_ADMIT"] == "yes", admitted
    await lab.calls("ipc-b", ivr=27, agent=1)
    await async_wait_until(lambda: _admits(addr_b, lab.layout.agi_port), timeout=10)


async def _admits(host: str, port: int) -> bool:
    return (await agi(host, port, "admit?kind=agent")).get("CCFO_ADMIT") == "yes"


async def test_a_span_alarm_reaches_the_controllers_trap_receiver_within_a_second(site):
    lab, api = site
    started = time.time()
    await lab.inject("ipc-a", "span", "1", "red")

    async def arrived() -> dict[str, Any] | None:
        return next((e for e in await api.journal(kind="snmp_notification")
                     if e["data"]["notification"] == "span_alarm_raised" and e["host"] == "ipc-a"
                     and e["data"]["span"] == 1 and e["ts"] >= started), None)

    entry = await async_wait_until(arrived, timeout=5)
    assert entry["ts"] - started < 1.0, entry
    assert entry["data"]["fields"]["alarm"] == "red" and entry["data"]["version"] == "v3", entry

    async def seen() -> bool:
        spans = (await api.status())["hosts"]["ipc-a"]["spans"]
        return any(s["span"] == 1 and s["alarm"] == "red" for s in spans)

    await async_wait_until(seen, timeout=5)
