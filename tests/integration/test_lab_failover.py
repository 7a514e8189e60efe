"""End to end on the live lab: real lab AMI servers, stand-in service daemons, real agents, the real
controller, the lab PDU and database endpoints, all over loopback. An independent watcher samples the
service processes throughout and fails the test if CTI/IVR ever run on both hosts at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.integration.labkit import Api, critical_hosts, layout, running
from tests.support import async_wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


class Watch:
    """Samples which hosts run CTI/IVR every 20 ms, from the process table (not the controller's view)."""

    def __init__(self, lab: LabSite) -> None:
        self.lab = lab
        self.both: list[list[str]] = []
        self.samples = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            hosts = critical_hosts(self.lab)
            self.samples += 1
            if len(hosts) > 1:
                self.both.append(hosts)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await async_wait_until(lambda: self.samples >= 3, timeout=5)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        assert not self.both, f"split brain seen: {self.both[:3]}"


async def start_lab(tmp_path: Path, **kw) -> tuple[LabSite, Api, Watch]:
    lab = LabSite(layout(tmp_path, **kw))
    try:
        await lab.up()
    except Exception:
        await lab.down()
        raise
    api = Api(lab)
    await async_wait_until(lambda: _all_reachable(api), timeout=20)
    return lab, api, Watch(lab)


async def _all_reachable(api: Api) -> bool:
    s = await api.status()
    return s["state"] == "normal" and all(h["reachable"] for h in s["hosts"].values())


@pytest_asyncio.fixture
async def site(tmp_path):
    lab, api, watch = await start_lab(tmp_path)
    yield lab, api
    await watch.stop()
    await api.aclose()
    await lab.down()


async def finished(api: Api, plan_id: str, timeout: float = 60) -> dict:
    plan = await async_wait_until(lambda: _done(api, plan_id), timeout=timeout)
    assert plan["status"] == "finished", plan
    return plan


async def _done(api: Api, plan_id: str) -> dict | None:
    p = await api.plan(plan_id)
    return p if p["status"] in ("finished", "failed", "aborted") else None


async def test_primary_cti_crash_supervised_failover_and_failback(site):
    lab, api = site
    await lab.inject("ipc-a", "service", "cti", "crash")
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=20)
    assert proposed[0]["source"] == "primary-cti-ivr-fault"
    assert running(lab, "ipc-a", "ivr") and not running(lab, "ipc-b", "cti"), "nothing moves before approval"
    r = await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "night shift approves"})
    assert r.status_code == 200, r.text
    await finished(api, proposed[0]["id"])
    assert critical_hosts(lab) == ["ipc-b"]
    assert running(lab, "ipc-b", "kcxp-replica") and not running(lab, "ipc-b", "kcxp")
    assert not any(running(lab, "ipc-a", s) for s in ("cti", "ivr", "kcxp", "kcbp"))
    s = await async_wait_until(lambda: _state(api, "failed over"), timeout=10)
    assert s["active_host"] == "ipc-b" and s["capacity"]["channels"] == 30
    # the documented order, from the journal
    steps = [e for e in reversed(await api.journal(plan_id=proposed[0]["id"], kind="step_finished"))]
    texts = [e["data"]["text"] for e in steps]
    assert texts.index("stop cti on ipc-a (best effort; a later step guarantees it)") < texts.index(
        "start cti on ipc-b")
    # failback after "repair"
    r = await api.post("/api/v1/failback", {"reason": "primary repaired", "drain_timeout_s": 5})
    assert r.status_code == 202, r.text
    await finished(api, r.json()["id"])
    await async_wait_until(lambda: _state(api, "normal"), timeout=15)
    assert critical_hosts(lab) == ["ipc-a"] and running(lab, "ipc-b", "kcxp")


async def _state(api: Api, want: str) -> dict | None:
    s = await api.status()
    return s if s["state"] == want and not s["faults"] else None


async def test_primary_span_alarm_isolates_the_board_only(site):
    lab, api = site
    await lab.inject("ipc-a", "span", "1", "red")
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=20)
    assert proposed[0]["action"] == "isolate_board"
    await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "isolate it"})
    await finished(api, proposed[0]["id"])
    assert not running(lab, "ipc-a", "dahdi"), "the primary's board driver is stopped"
    assert all(running(lab, "ipc-a", s) for s in ("cti", "ivr", "kcxp", "kcbp")), "other services untouched"
    s = await api.status()
    assert s["hosts"]["ipc-a"]["board_isolated"] and s["capacity"]["channels"] == 30


async def test_standby_fault_takes_the_standby_out(site):
    lab, api = site
    await lab.inject("ipc-b", "service", "kcxp", "crash")
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=20)
    assert proposed[0]["action"] == "isolate_standby"
    await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "standby broken"})
    await finished(api, proposed[0]["id"])
    assert not running(lab, "ipc-b", "kcbp") and not running(lab, "ipc-b", "dahdi")
    assert critical_hosts(lab) == ["ipc-a"]
    s = await api.status()
    assert s["hosts"]["ipc-b"]["duty"] == "out" and s["capacity"]["channels"] == 60


async def test_database_site_down_repoints_config_files_with_backups(site):
    lab, api = site
    files = {host: {f["id"]: Path(f["path"]) for f in lab.site["hosts"][host]["db_config_files"]}
             for host in ("ipc-a", "ipc-b")}
    originals = {host: {fid: path.read_bytes() for fid, path in by_id.items()} for host, by_id in files.items()}
    shenzhen = lab.site["databases"]["sites"]["shenzhen"]["host"].encode()
    assert all(shenzhen in data for by_id in originals.values() for data in by_id.values()), originals
    await lab.inject("db", "shenzhen", "down")
    proposed = await async_wait_until(lambda: api.plans("proposed"), timeout=30)
    assert proposed[0]["action"] == "repoint_db"
    await api.post(f"/api/v1/plans/{proposed[0]['id']}/approve", {"reason": "DB site lost"})
    await finished(api, proposed[0]["id"])
    shanghai = lab.site["databases"]["sites"]["shanghai"]["host"]
    for host in ("ipc-a", "ipc-b"):
        etc = lab.layout.host_dir(host) / "etc"
        assert f"host = {shanghai}" in (etc / "kcbp-db.ini").read_text()
        assert f"db.host={shanghai}" in (etc / "db.properties").read_text()
        # One whole backup per repointed file, holding exactly the content from before the change.
        backups = {b.name.split(".", 1)[0]: b.read_bytes() for b in (lab.layout.host_dir(host) / "backups").iterdir()
                   if b.name.endswith(".bak")}
        assert sorted(backups) == sorted(files[host]), backups
        for fid, data in backups.items():
            assert data == originals[host][fid], f"{host} {fid}: backup differs from the original content"
            assert data != files[host][fid].read_bytes(), f"{host} {fid}: the file was not changed"
    restarts = [e for e in await api.journal(plan_id=proposed[0]["id"], kind="step_finished")
                if e["data"]["text"].startswith("restart")]
    assert {e["data"]["text"] for e in restarts} == {"restart kcbp on ipc-a", "restart cti on ipc-a",
                                                      "restart kcbp on ipc-b"}
    assert (await api.status())["active_db"] == "shanghai"


async def test_primary_unreachable_is_fenced_at_the_pdu_before_the_standby_starts(tmp_path):
    lab, api, watch = await start_lab(tmp_path, mode="automatic")
    try:
        await lab.inject("ipc-a", "unreachable")
        plan = await async_wait_until(lambda: _any_plan(api), timeout=30)
        done = await finished(api, plan["id"])
        assert done["steps"][0]["kind"] == "fence"
        assert lab.pdu.state[1] == 2, "ipc-a's outlet is off"
        assert critical_hosts(lab) == ["ipc-b"]
        fence = next(e for e in await api.journal(plan_id=plan["id"], kind="step_finished") if e["step"] == 0)
        assert "powered off at the PDU" in fence["data"]["output"]
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()


async def test_automatic_mode_fails_over_a_cti_crash_without_approval(tmp_path):
    lab, api, watch = await start_lab(tmp_path, mode="automatic")
    try:
        await lab.inject("ipc-a", "service", "cti", "crash")
        plan = await async_wait_until(lambda: _any_plan(api), timeout=30)
        assert plan["source"] == "primary-cti-ivr-fault" and plan["requested_by"] == "controller"
        assert plan["decided_by"] is None, "nobody approved it: the mode did"
        await finished(api, plan["id"])
        assert critical_hosts(lab) == ["ipc-b"]
        s = await async_wait_until(lambda: _state(api, "failed over"), timeout=10)
        assert s["active_host"] == "ipc-b" and s["capacity"]["channels"] == 30
        assert await api.plans("proposed") == [], "automatic mode proposes nothing"
    finally:
        await watch.stop()
        await api.aclose()
        await lab.down()


async def _any_plan(api: Api) -> dict | None:
    for status in ("running", "finished", "failed"):
        plans = await api.plans(status)
        if plans:
            return plans[0]
    return None


async def test_maintenance_mode_reports_and_does_nothing(site):
    lab, api = site
    r = await api.put("/api/v1/mode", {"mode": "maintenance", "reason": "weekend upgrade"})
    assert r.status_code == 200
    await lab.inject("ipc-a", "service", "ivr", "crash")
    await async_wait_until(lambda: _decided(api, "failover"), timeout=20)
    assert await api.plans("proposed,running,finished") == []
    assert critical_hosts(lab) == ["ipc-a"] and (await api.status())["state"] == "maintenance"


async def _decided(api: Api, action: str) -> dict | None:
    d = (await api.status())["decision"]
    return d if d and d["action"] == action and d["disposition"] == "report" else None


async def test_planned_switchover_drains_calls_before_cutting(site):
    lab, api = site
    await lab.calls("ipc-a", 3, 1)
    r = await api.post("/api/v1/switchover", {"to": "ipc-b", "reason": "planned", "drain_timeout_s": 60})
    assert r.status_code == 202, r.text
    plan_id = r.json()["id"]
    await async_wait_until(lambda: _step_running(api, plan_id, "wait_drained"), timeout=20)
    assert critical_hosts(lab) == ["ipc-a"], "CTI/IVR keep serving while calls drain"
    await lab.calls("ipc-a", 0, 0)  # the callers hang up
    await finished(api, plan_id)
    assert critical_hosts(lab) == ["ipc-b"] and running(lab, "ipc-a", "kcxp"), "old primary is now the standby"


async def _step_running(api: Api, plan_id: str, kind: str) -> bool:
    p = await api.plan(plan_id)
    return p["status"] == "running" and p["steps"][p["next_step"]]["kind"] == kind


async def test_controller_killed_mid_plan_shows_interrupted_and_resumes(site):
    lab, api = site
    await lab.calls("ipc-a", 2, 0)
    r = await api.post("/api/v1/switchover", {"to": "ipc-b", "reason": "planned", "drain_timeout_s": 120})
    plan_id = r.json()["id"]
    await async_wait_until(lambda: _step_running(api, plan_id, "wait_drained"), timeout=20)
    ctl = lab.procs["controller"]
    ctl.signal(signal.SIGKILL)
    await ctl.proc.wait()
    await lab._start_controller(30)
    await async_wait_until(lambda: _plan_status(api, plan_id, "interrupted"), timeout=20)
    await lab.calls("ipc-a", 0, 0)
    r = await api.post(f"/api/v1/plans/{plan_id}/resume", {"reason": "controller restarted"})
    assert r.status_code == 200, r.text
    await finished(api, plan_id)
    assert critical_hosts(lab) == ["ipc-b"]


async def _plan_status(api: Api, plan_id: str, status: str) -> bool:
    try:
        return (await api.plan(plan_id))["status"] == status
    except Exception:
        return False


async def test_api_auth_on_the_live_controller(site):
    lab, api = site
    r = await api.c.post("/api/v1/failover", json={"to": "ipc-b", "reason": "x y z"})
    assert r.status_code == 401
    r = await api.post("/api/v1/failover", {"to": "ipc-b", "reason": "x y z"}, role="viewer")
    assert r.status_code == 403
    r = await api.post("/api/v1/failover", {"to": "ipc-b"})
    assert r.status_code == 422
    assert critical_hosts(lab) == ["ipc-a"]
