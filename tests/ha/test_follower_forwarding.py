"""Follower forwarding (issue 14 item 6) with two real `ccfo controller --member` processes on a real
3-member etcd: a change sent to the follower is authenticated there, forwarded once to the leader, done
and journaled by the leader under the caller's name, and the leader's answer comes back unchanged
(`X-Ccfo-Member` names the leader, `X-Ccfo-Forwarded-By` the follower). A request without a valid token
is 401 on the follower and goes nowhere; a request already forwarded is never forwarded again (503 with
Retry-After); with the leader gone and no other member leading, the follower answers 503 naming the
member it tried; once the follower leads, it handles changes itself. No agents run here (the members
observe unreachable hosts); the failover's plan runs on the leader and waits at its fence step."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.etcd import EtcdCluster
from tests.ha.memberkit import leader_probe, member_config, start_member, stop_members, token
from tests.support import wait_until

TTL = 3


def _journal(url: str, headers: dict[str, str], kind: str) -> list[dict[str, Any]]:
    r = httpx.get(url + "/api/v1/journal", params={"kind": kind}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["entries"]  # type: ignore[no-any-return]


@pytest.mark.timeout(150)
def test_changes_sent_to_the_follower_are_done_by_the_leader(tmp_path: Path, etcd3: EtcdCluster) -> None:
    config, urls = member_config(tmp_path, etcd3, TTL)
    admin, operator, viewer = token(config, "admin"), token(config, "operator"), token(config, "viewer")
    procs = {m: start_member(config, m, tmp_path) for m in urls}
    try:
        for m, (_, ready) in procs.items():
            wait_until(lambda ready=ready: ready.exists(), timeout=60,
                       describe=lambda m=m: (tmp_path / f"{m}.log").read_text()[-2000:])
        leader = wait_until(lambda: [m for m, u in urls.items() if leader_probe(u)[0] == 200] or None,
                            timeout=15)[0]
        follower = next(m for m in urls if m != leader)
        via = urls[follower]

        # a read is served by the member asked, never forwarded
        read = httpx.get(via + "/api/v1/status", headers=viewer, timeout=10)
        assert read.status_code == 200 and read.headers["x-ccfo-member"] == follower
        assert "x-ccfo-forwarded-by" not in read.headers

        # a mode change sent to the follower: done by the leader, its answer back, journaled with the caller
        key = {"Idempotency-Key": "mode-via-the-follower"}
        body = {"mode": "manual", "reason": "night work, sent to the follower"}
        done = httpx.put(via + "/api/v1/mode", json=body, headers={**admin, **key}, timeout=15)
        assert done.status_code == 200 and done.json() == {"mode": "manual"}, done.text
        assert done.headers["x-ccfo-member"] == leader and done.headers["x-ccfo-forwarded-by"] == follower
        status = httpx.get(urls[leader] + "/api/v1/status", headers=viewer, timeout=10).json()
        assert status["mode"] == "manual"
        modes = _journal(urls[leader], viewer, "mode_changed")
        assert [(e["actor"], e["data"]["to"], e["reason"]) for e in modes] == [("lab-admin", "manual", body["reason"])]
        # the same request again (a client retry): the leader's first answer, replayed, nothing done twice
        again = httpx.put(via + "/api/v1/mode", json=body, headers={**admin, **key}, timeout=15)
        assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.headers["x-ccfo-member"] == leader
        assert len(_journal(urls[leader], viewer, "mode_changed")) == 1

        # a failover sent to the follower: the leader starts the plan; its 202 comes back with the plan
        plan = httpx.post(via + "/api/v1/failover", json={"to": "ipc-b", "reason": "failover sent to the follower"},
                          headers=operator, timeout=15)
        assert plan.status_code == 202 and plan.headers["x-ccfo-member"] == leader, plan.text
        on_leader = httpx.get(urls[leader] + f"/api/v1/plans/{plan.json()['id']}", headers=viewer, timeout=10)
        assert on_leader.status_code == 200 and on_leader.json()["requested_by"] == "lab-operator"
        started = _journal(urls[leader], viewer, "plan_started")
        assert [(e["plan_id"], e["actor"]) for e in started] == [(plan.json()["id"], "lab-operator")]
        # the query goes along: a dry run asked of the follower is the leader's dry run
        dry = httpx.post(via + "/api/v1/failover", params={"dry_run": "true"}, headers=operator, timeout=15,
                         json={"to": "ipc-b", "reason": "what would run"})
        assert dry.status_code == 200 and dry.json()["dry_run"] is True and dry.headers["x-ccfo-member"] == leader
        # the leader checks the role: a viewer may not change the mode, wherever it asks
        denied = httpx.put(via + "/api/v1/mode", json={"mode": "automatic", "reason": "a viewer tries"},
                           headers=viewer, timeout=15)
        assert denied.status_code == 403 and denied.headers["x-ccfo-member"] == leader, denied.text

        # no token, or a wrong one: 401 on the follower itself, not forwarded (no leader's header on it)
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}):
            refused = httpx.put(via + "/api/v1/mode", json={"mode": "automatic", "reason": "no token"},
                                headers=headers, timeout=15)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", refused.text
            assert refused.headers["x-ccfo-member"] == follower and "x-ccfo-forwarded-by" not in refused.headers

        # a request that was already forwarded is never forwarded again: no loop can form
        hop = {**admin, "X-Ccfo-Forwarded-By": "ctl-z"}
        looped = httpx.put(via + "/api/v1/mode", json={"mode": "automatic", "reason": "second hop"}, headers=hop,
                           timeout=15)
        assert looped.status_code == 503 and looped.headers["retry-after"] == str(TTL), looped.text
        assert looped.headers["x-ccfo-member"] == follower and "forwarded once only" in looped.json()["detail"]
        # ... while the leader handles a forwarded request as its own
        back = httpx.put(urls[leader] + "/api/v1/mode", json={"mode": "supervised", "reason": "from ctl-z"},
                         headers=hop, timeout=15)
        assert back.status_code == 200 and back.headers["x-ccfo-member"] == leader
        assert [e["data"]["to"] for e in _journal(urls[leader], viewer, "mode_changed")] == ["supervised", "manual"]

        # the leader killed: until the follower leads, a change sent to it is 503 naming the member tried
        proc = procs[leader][0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        lost = httpx.put(via + "/api/v1/mode", json={"mode": "manual", "reason": "while nobody leads"},
                         headers=admin, timeout=15)
        assert lost.status_code == 503 and lost.headers["retry-after"] == str(TTL), lost.text
        assert f"{leader}: unreachable" in lost.json()["detail"] and "no controller member leads now" in \
            lost.json()["detail"]
        wait_until(lambda: leader_probe(via)[0] == 200 or None, timeout=TTL + 5)
        mine = httpx.put(via + "/api/v1/mode", json={"mode": "manual", "reason": "the new leader acts"},
                         headers=admin, timeout=15)
        assert mine.status_code == 200 and mine.headers["x-ccfo-member"] == follower, mine.text
        assert "x-ccfo-forwarded-by" not in mine.headers
    finally:
        stop_members(procs)
