"""Controller HA on the live lab (`LabLayout(controllers=3)`: a 3-member etcd, three controller members,
real agents, stand-in services, the PDU and the SIP front), in automatic mode.

(a) kill -9 of the leader while its failover plan runs: the trigger is the plan's cursor on etcd (the
    record the next leader takes over) passing its first step, watched on etcd itself, so the kill lands
    mid-plan every time without a sleep. Another member leads with a higher term within lease_ttl_s + 1 s,
    takes the plan over as interrupted and resumes it by itself (automatic mode); the plan finishes. No
    step ran twice: each agent action id of the plan was executed once by its agent (the agents' own logs
    and action records: a re-sent step is answered from the record, `replayed`), and in the new leader's
    journal no step before the resumed one was started again.
(b) SIGSTOP of the leader while its plan runs: another member leads with a higher term and finishes the
    plan; after SIGCONT the old leader acts no more (it answers /leader 503 naming the new leader and starts
    no step: its own journal), the agents' action records show no action with its term started after the first action
    with the new term, and an action sent as the old leader sends it (its term, the controller's agent
    token) is refused by each agent with 409 naming both terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccfo.clients.etcd import EtcdClient
from controller.cluster.statesync import plans_prefix
from lab.site import LabSite
from tests.ha.etcdkit import need_etcd
from tests.integration.labkit import critical_hosts, layout
from tests.support import async_wait_until

# Slow (`make test-slow`, run by CI): two live labs with three controllers, about a minute together, and
# make test's 15-minute budget is spent
pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.timeout(400)]
TTL = 5.0


class Member:
    """One controller member's API (viewer/operator tokens)."""

    def __init__(self, lab: LabSite, url: str) -> None:
        self.url = url
        self.c = httpx.AsyncClient(base_url=url, timeout=10)
        self.view = {"Authorization": f"Bearer {lab.token('viewer')}"}
        self.op = {"Authorization": f"Bearer {lab.token('operator')}"}

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.c.get(path, params=params, headers=self.view)
        r.raise_for_status()
        return r.json()

    async def journal(self, **params: Any) -> list[dict[str, Any]]:
        return list(reversed((await self.get("/api/v1/journal", limit=500, **params))["entries"]))  # oldest first

    async def aclose(self) -> None:
        await self.c.aclose()


async def start_lab(tmp_path: Path) -> LabSite:
    need_etcd()
    lab = LabSite(layout(tmp_path, controllers=3, mode="automatic"))
    try:
        await lab.up(timeout=240)
    except BaseException:
        await lab.down()
        raise
    return lab


async def normal(m: Member) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        s = await m.get("/api/v1/status")
        return s["state"] == "normal" and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())
    return False


async def plan_mid_way(lab: LabSite) -> dict[str, Any]:
    """Crash the primary's CTI and return the plan record once etcd holds it running with its first step
    done (the leader's statesync puts every cursor move on etcd; we watch those puts)."""
    assert lab.controllers.etcd is not None
    prefix = plans_prefix(lab.site["site"]["name"])
    async with EtcdClient(lab.controllers.etcd.endpoints) as etcd:
        rev = (await etcd.get(prefix, prefix=True)).revision
        async with etcd.watch(prefix, prefix=True, start_revision=rev + 1) as watch:
            await lab.inject("ipc-a", "service", "cti", "crash")
            async with asyncio.timeout(60):
                async for ev in watch:
                    if not ev.kv.value:
                        continue
                    rec = json.loads(ev.kv.text)
                    if rec["status"] == "running" and rec["next_step"] >= 1:
                        return rec  # type: ignore[no-any-return]
    raise AssertionError("the watch ended")


async def finished(m: Member, plan_id: str, timeout: float = 120) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError):
            p = await m.get(f"/api/v1/plans/{plan_id}")
            return p if p["status"] in ("finished", "failed", "aborted") else None  # type: ignore[no-any-return]
        return None
    plan = await async_wait_until(done, timeout=timeout)
    assert plan["status"] == "finished", plan
    return plan  # type: ignore[no-any-return]


def executions(lab: LabSite, plan_id: str) -> Counter[str]:
    """Agent action ids of this plan each agent executed (its log's `action ID ...: start` line, written once
    per execution; a repeated id is answered from the record and logged otherwise)."""
    seen: Counter[str] = Counter()
    for host in lab.site["hosts"]:
        text = (lab.layout.root / "logs" / f"{host}-agent.log").read_text(errors="replace")
        seen.update(re.findall(rf"action ({re.escape(plan_id)}-\d+-\d+) .*: start$", text, re.M))
    return seen


def records(lab: LabSite) -> list[dict[str, Any]]:
    """Every action result the agents keep (actions.json in each agent's state dir), with its host."""
    out = []
    for host in lab.site["hosts"]:
        path = lab.layout.host_dir(host) / "agent" / "actions.json"
        if path.exists():
            out += [{**item["result"], "host": host} for item in json.loads(path.read_text())["results"]]
    return out


def epoch(ts: float | str) -> float:
    return ts if isinstance(ts, float | int) else datetime.fromisoformat(ts).timestamp()


def terms_in_order(recs: list[dict[str, Any]]) -> None:
    """On each agent, the actions it executed never go back to an older term (at most one leader acting)."""
    for host in {r["host"] for r in recs}:
        mine = sorted((r for r in recs if r["host"] == host and r.get("term") is not None), key=lambda r: r["started"])
        terms = [r["term"] for r in mine]
        assert terms == sorted(terms), f"{host} executed an older term after a newer one: {terms}"


async def test_kill_9_of_the_leader_mid_plan_the_next_leader_resumes_and_no_step_runs_twice(tmp_path: Path) -> None:
    lab = await start_lab(tmp_path)
    members: list[Member] = []
    try:
        lead = await lab.controllers.wait_leader(30)
        old = Member(lab, lead.url)
        members.append(old)
        await async_wait_until(lambda: normal(old), timeout=60)
        rec = await plan_mid_way(lab)
        t_kill = time.monotonic()
        await lab.kill_controller(lead.name)
        new_lead = await lab.controllers.wait_leader(TTL + 5, above=lead.term or 0)
        elapsed = time.monotonic() - t_kill
        assert elapsed <= TTL + 1, f"new leader after {elapsed:.2f} s (bound {TTL + 1:g} s)"
        new = Member(lab, new_lead.url)
        members.append(new)
        plan = await finished(new, rec["id"])
        assert critical_hosts(lab) == ["ipc-b"]

        entries = await new.journal(plan_id=rec["id"])
        kinds = [e["kind"] for e in entries]
        assert "plan_interrupted" in kinds and "plan_resumed" in kinds and kinds[-1] == "plan_finished", kinds
        resumed = next(e for e in entries if e["kind"] == "plan_resumed")
        assert resumed["actor"] == "controller", resumed  # by itself: automatic mode
        # the takeover (controller/engine.py adopt): the plan stored interrupted at the cursor found on etcd
        cursor = next(e for e in entries if e["kind"] == "plan_interrupted")["data"]["from_step"]
        assert cursor >= rec["next_step"] >= 1
        after = entries[kinds.index("plan_resumed"):]
        restarted = Counter(e["step"] for e in after if e["kind"] == "step_started")
        assert sorted(restarted) == list(range(cursor, len(plan["steps"]))), restarted
        assert set(restarted.values()) == {1}, restarted
        finished_steps = Counter(e["step"] for e in entries if e["kind"] == "step_finished")
        assert all(finished_steps[i] >= 1 for i in range(cursor, len(plan["steps"]))), finished_steps
        assert all(n == 1 for i, n in finished_steps.items() if i != cursor), finished_steps

        ran = executions(lab, rec["id"])
        assert ran and set(ran.values()) == {1}, f"an agent action of the plan ran twice: {ran}"
        mine = [r for r in records(lab) if r["action_id"].startswith(rec["id"] + "-")]
        assert sorted(r["action_id"] for r in mine) == sorted(ran), (mine, ran)
        assert {r["term"] for r in mine} <= {lead.term, new_lead.term}
        terms_in_order(records(lab))
        print(f"kill -9 of {lead.name} (term {lead.term}) at plan step {rec['next_step']} -> {new_lead.name} "
              f"(term {new_lead.term}) in {elapsed:.2f} s; resumed at step {cursor}; "
              f"finished steps {dict(finished_steps)}")
    finally:
        for m in members:
            await m.aclose()
        await lab.down()


async def test_sigstop_of_the_leader_mid_plan_its_later_actions_are_refused(tmp_path: Path) -> None:
    lab = await start_lab(tmp_path)
    members: list[Member] = []
    try:
        lead = await lab.controllers.wait_leader(30)
        old = Member(lab, lead.url)
        members.append(old)
        await async_wait_until(lambda: normal(old), timeout=60)
        rec = await plan_mid_way(lab)
        lab.pause_controller(lead.name)
        t_pause = time.time()
        try:
            new_lead = await lab.controllers.wait_leader(TTL + 10, above=lead.term or 0)
            assert new_lead.name != lead.name
            new = Member(lab, new_lead.url)
            members.append(new)
            await finished(new, rec["id"])
            agent_token = {h: (lab.layout.config / "secrets" / f"agent-token-{h}").read_text().strip()
                           for h in lab.site["hosts"]}
        finally:
            lab.resume_controller(lead.name)
        t_resume = time.time()
        assert critical_hosts(lab) == ["ipc-b"]

        # the old leader, running again, does not act: it says so, and a request to act is refused
        async def demoted() -> dict[str, Any] | None:
            with contextlib.suppress(httpx.HTTPError):
                r = await old.c.get("/leader")
                body = r.json()
                # 503 at once; the name of the new leader once its watch has caught up
                return body if r.status_code == 503 and body.get("leader") == new_lead.name else None  # type: ignore
            return None
        seen = await async_wait_until(demoted, timeout=15)
        assert seen["leader"] == new_lead.name, seen
        cluster = await old.get("/api/v1/cluster")
        assert cluster["leader"] == new_lead.name and cluster["term"] == new_lead.term, cluster
        assert {m["name"]: m["role"] for m in cluster["members"]}[lead.name] == "follower", cluster

        # the agents: no action with the old term started after the new term was seen, nor after the pause
        recs = records(lab)
        terms_in_order(recs)
        first_new = min(r["started"] for r in recs if r.get("term") == new_lead.term)
        stale = [r for r in recs if r.get("term") == lead.term and r["started"] >= first_new]
        assert not stale, stale
        # SIGSTOP lands between two of the leader's instructions: the one step it had just sent may reach
        # its agent after the pause (seen once: step 1, 36 ms after); nothing it would send later does
        late = [r for r in recs if r.get("term") == lead.term and r["started"] > t_pause]
        assert len(late) <= 1 and all(r["started"] - t_pause < 1.0 for r in late), \
            f"actions of the paused leader's term after the pause: {late}"
        # whatever the old leader still sends is refused by every agent: 409 naming its term and the new one
        for host, spec in lab.site["hosts"].items():
            r = httpx.post(spec["agent"]["url"] + "/v1/actions", timeout=10,
                           headers={"Authorization": f"Bearer {agent_token[host]}"},
                           json={"action_id": f"stale-{host}", "action": "start", "service": "kcxp",
                                 "term": lead.term, "reason": "the paused leader's pending step"})
            assert r.status_code == 409, r.text
            assert f"stale leader term {lead.term} refused" in r.json()["detail"], r.text
            assert int(r.headers["X-Ccfo-Highest-Term"]) >= (new_lead.term or 0)
        recs_after = records(lab)
        assert not [r for r in recs_after if r["action_id"].startswith("stale-")]
        old_journal = await old.journal(plan_id=rec["id"])
        late_steps = [e for e in old_journal if e["kind"] == "step_started" and epoch(e["ts"]) > t_resume]
        assert not late_steps, late_steps
        print(f"SIGSTOP of {lead.name} (term {lead.term}) at plan step {rec['next_step']} -> {new_lead.name} "
              f"(term {new_lead.term}); resumed {t_resume - t_pause:.1f} s later; no stale action accepted")
    finally:
        for m in members:
            await m.aclose()
        await lab.down()
