"""The lab with its managed servers (LabLayout(servers=True)): the site's other machines run as real server-profile
agents per data center, with stand-in services, whitelisted files and real cron files. Rule 4 end to end (issue
#17's first Done-when item on live processes): a database site fault repoints the IPCs' files AND the servers'
files, each with a whole backup of what was there before, and restarts the active servers' readers only."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.integration.labkit import Api, layout, running
from tests.support import async_wait_until

# Slow (`make test-slow`, run by CI): nine server agents beside the IPC lab, three minutes on the 2-core box.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(240)]
REPOINTED = ("ipc-a", "ipc-b", "dbconn-sz", "app-sz", "app-sh")  # every machine with database config files


@pytest_asyncio.fixture
async def site(tmp_path: Path):
    lab = LabSite(layout(tmp_path, servers=True))
    try:
        await lab.up(timeout=90)
    except Exception:
        await lab.down()
        raise
    api = Api(lab)
    try:
        await async_wait_until(lambda: _all_reporting(api), timeout=40)
        yield lab, api
    finally:
        await api.aclose()
        await lab.down()


async def _all_reporting(api: Api) -> dict[str, Any] | None:
    s = await api.status()
    ok = s["state"] == "normal" and all(h["reachable"] for h in s["hosts"].values()) and s["servers"] and all(
        v["reachable"] and (v["db_site"] is not None or not _has_files(v)) for v in s["servers"].values())
    return s if ok else None


def _has_files(server: dict[str, Any]) -> bool:
    return server["kind"] in ("application", "db-connection")


def _files(lab: LabSite, machine: str) -> dict[str, Path]:
    spec = lab.site["hosts"].get(machine) or lab.site["servers"][machine]
    return {f["id"]: Path(f["path"]) for f in spec["db_config_files"]}


async def test_the_servers_report_per_datacenter_with_their_services_and_real_cron_files(site):
    lab, api = site
    s = await api.status()
    assert sorted(s["datacenters"]) == ["shanghai", "shenzhen"]
    assert sorted(s["servers"]) == sorted(lab.site["servers"])
    by_dc = {dc: sorted(n for n, v in s["servers"].items() if v["datacenter"] == dc) for dc in s["datacenters"]}
    assert by_dc == {"shanghai": ["app-sh", "cs-sh", "sms-sh", "ta-sh"],
                     "shenzhen": ["app-sz", "cs-sz", "dbconn-sz", "sms-sz", "ta-sz"]}
    # Active servers run their services, backup ones keep them stopped: from the process table, then the report.
    assert running(lab, "app-sz", "appserver") and running(lab, "cs-sz", "apache2")
    assert not running(lab, "app-sh", "appserver") and not running(lab, "cs-sh", "mysql")
    assert s["servers"]["app-sz"]["services"] == {"appserver": "active"}
    assert s["servers"]["app-sh"]["services"] == {"appserver": "inactive"}
    # The jobs the status shows are the cron files on disk: enabled on ta-sz, commented out on ta-sh.
    jobs = {n: {j["name"]: j for j in v["jobs"]} for n, v in s["servers"].items()}
    assert jobs["ta-sz"]["ta-import"]["state"] == "enabled" and jobs["ta-sz"]["ta-import"]["next_run"] > 0
    assert jobs["ta-sh"]["ta-import"] == {**jobs["ta-sh"]["ta-import"], "state": "disabled", "next_run": None}
    assert sorted(jobs["sms-sh"]) == ["mail-send", "sms-send"]
    line = lab.site["servers"]["ta-sz"]["jobs"]["ta-import"]
    cron_sz = (lab.layout.host_dir("ta-sz") / "cron.d" / "ta-import").read_text()
    cron_sh = (lab.layout.host_dir("ta-sh") / "cron.d" / "ta-import").read_text()
    assert f"\n{line['schedule']} {line['user']} {line['command']}\n" in cron_sz
    sh = lab.site["servers"]["ta-sh"]["jobs"]["ta-import"]
    assert f"\n#ccfo-disabled# {sh['schedule']} {sh['user']} {sh['command']}\n" in cron_sh
    # The job's command is real: run as cron would (sh -c), it writes what it did.
    assert subprocess.run(["/bin/sh", "-c", line["command"]], check=False).returncode == 0
    assert (lab.layout.host_dir("ta-sz") / "jobs.log").read_text() == "ta-sz ta-import ran\n"


async def test_database_site_down_repoints_the_ipcs_and_the_servers_files_with_backups(site):
    lab, api = site
    files = {m: _files(lab, m) for m in REPOINTED}
    originals = {m: {fid: p.read_bytes() for fid, p in by_id.items()} for m, by_id in files.items()}
    shenzhen = lab.site["databases"]["sites"]["shenzhen"]["host"]
    shanghai = lab.site["databases"]["sites"]["shanghai"]["host"]
    assert all(shenzhen.encode() in data for by_id in originals.values() for data in by_id.values()), originals
    await lab.inject("db", "shenzhen", "down")
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=40)
    assert proposed[0]["action"] == "repoint_db"
    hosts_in_order = list(dict.fromkeys(st["host"] for st in (await api.plan(proposed[0]["id"]))["steps"]
                                        if st.get("host")))
    assert hosts_in_order == list(REPOINTED), "rules.yaml's repoint_order: ipc, db-connection, application"
    r = await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "Shenzhen database lost"})
    assert r.status_code == 200, r.text
    plan = await async_wait_until(lambda: _done(api, proposed[0]["id"]), timeout=90)
    assert plan["status"] == "finished", plan
    for machine in REPOINTED:
        backups = {b.name.split(".", 1)[0]: b.read_bytes()
                   for b in (lab.layout.host_dir(machine) / "backups").iterdir() if b.name.endswith(".bak")}
        assert sorted(backups) == sorted(files[machine]), (machine, backups)
        for fid, path in files[machine].items():
            now = path.read_bytes()
            assert shanghai.encode() in now and shenzhen.encode() not in now, (machine, fid, now)
            assert backups[fid] == originals[machine][fid], f"{machine} {fid}: the backup is not the old content"
            assert now.replace(shanghai.encode(), shenzhen.encode()) == originals[machine][fid], \
                f"{machine} {fid}: more than the database host changed"
    assert "jdbc:oracle:thin:@" + shanghai in files["app-sz"]["app-datasource"].read_text()
    restarts = {e["data"]["text"] for e in await api.journal(plan_id=proposed[0]["id"], kind="step_finished")
                if e["data"]["text"].startswith("restart")}
    assert restarts == {"restart kcbp on ipc-a", "restart cti on ipc-a", "restart kcbp on ipc-b",
                        "restart dbconn on dbconn-sz", "restart appserver on app-sz"}
    assert running(lab, "app-sz", "appserver") and running(lab, "dbconn-sz", "dbconn")
    assert not running(lab, "app-sh", "appserver"), "the Shanghai backup environment is repointed, not started"
    s = await async_wait_until(lambda: _servers_on(api, "shanghai"), timeout=20)
    assert s["active_db"] == "shanghai"


async def _servers_on(api: Api, site: str) -> dict[str, Any] | None:
    s = await api.status()
    ok = all(v["db_site"] == site for v in s["servers"].values() if _has_files(v))
    return s if ok else None


async def _done(api: Api, plan_id: str) -> dict[str, Any] | None:
    p = await api.plan(plan_id)
    return p if p["status"] in ("finished", "failed", "aborted") else None


def _machine_state(lab: LabSite) -> dict[str, Any]:
    """Every server's files (etc/, cron.d/) byte for byte and its services' processes, from the disk and the process
    table (not from the controller or the agents)."""
    out: dict[str, Any] = {}
    for name, spec in lab.site["servers"].items():
        d = lab.layout.host_dir(name)
        files = {f"{sub}/{p.name}": p.read_bytes() for sub in ("etc", "cron.d") for p in sorted((d / sub).iterdir())}
        out[name] = (files, {svc: running(lab, name, svc) for svc in spec["services"]})
    return out


async def _switch(api: Api, name: str, inverse: bool) -> dict[str, Any]:
    r = await api.post(f"/api/v1/switches/{name}", {"reason": "section III rehearsal", "inverse": inverse})
    assert r.status_code == 202, r.text
    plan = await async_wait_until(lambda: _done(api, r.json()["id"]), timeout=90)
    assert plan["status"] == "finished", plan
    return plan


def _entry(lab: LabSite, server: str) -> str:
    r = httpx.get(lab.entry_url(server), follow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def test_section_iii_switches_run_on_the_servers_and_their_inverses_restore_them(site):
    lab, api = site
    before = _machine_state(lab)
    urls = lab.site["servers"]["cs-sz"]["switch_files"][0]["values"]
    assert _entry(lab, "cs-sz") == _entry(lab, "cs-sh") == urls["shenzhen"]
    dry = await api.post("/api/v1/switches/customer-service-to-shanghai?dry_run=true", {"reason": "what would it do"})
    assert dry.status_code == 200 and dry.json()["plan"]["steps"][0]["text"] == "start mysql on cs-sh"
    assert _machine_state(lab) == before, "a dry run changes nothing"

    await _switch(api, "customer-service-to-shanghai", inverse=False)
    assert running(lab, "cs-sh", "apache2") and running(lab, "cs-sh", "mysql")
    assert _entry(lab, "cs-sz") == _entry(lab, "cs-sh") == urls["shanghai"], "both entry points reloaded"
    conf = lab.layout.host_dir("cs-sh") / "etc" / "cs-entry.conf"
    (backup,) = (lab.layout.host_dir("cs-sh") / "backups").glob("cs-entry.*.bak")
    assert backup.read_bytes() == before["cs-sh"][0]["etc/cs-entry.conf"] != conf.read_bytes()

    await _switch(api, "sms-email-from-shanghai", inverse=False)
    cron = (lab.layout.host_dir("sms-sh") / "cron.d" / "sms-send").read_text()
    assert "\n#ccfo-disabled#" not in cron, cron
    assert "#ccfo-disabled# " in (lab.layout.host_dir("sms-sz") / "cron.d" / "sms-send").read_text()
    gateway = lab.site["servers"]["app-sz"]["switch_files"][0]["values"]["shanghai"]
    assert f"sms.gateway={gateway}\n" in (lab.layout.host_dir("app-sz") / "etc" / "messaging.properties").read_text()

    async def jobs_enabled() -> dict | None:  # the status shows the server's next pushed report (a heartbeat)
        s = await api.status()
        jobs = {j["name"]: j["state"] for j in s["servers"]["sms-sh"]["jobs"]}
        return jobs if jobs == {"sms-send": "enabled", "mail-send": "enabled"} else None

    assert await async_wait_until(jobs_enabled, timeout=10)

    await _switch(api, "sms-email-from-shanghai", inverse=True)
    await _switch(api, "customer-service-to-shanghai", inverse=True)
    assert _machine_state(lab) == before, "the inverses put every file, cron file and service back"
    assert _entry(lab, "cs-sz") == _entry(lab, "cs-sh") == urls["shenzhen"]
    actions = [e["data"]["title"] for e in await api.journal(kind="operator_action")]
    assert sorted(actions) == sorted(["Switch the customer-service entry back to Shanghai",
                                      "Send SMS and e-mail from Shanghai again",
                                      "Send SMS and e-mail from Shenzhen again",
                                      "Switch the customer-service entry to Shenzhen again"]), actions
