"""The campaign's cluster invariants (lab.campaign_cluster) on synthetic observations, and the cluster draw."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from controller.journal import Journal
from lab.campaign_cluster import (
    Act,
    acting_violations,
    copy_gaps,
    entry_fields,
    published_loss,
    read_acts,
    read_copy,
    read_highest_term,
    stale_term_violations,
)
from lab.campaign_plan import EXAMPLE, HA_WEIGHTS, WEIGHTS, draw_run, replay_command, weights_for


def act(host: str, ident: str, term: int | None, started: float, ended: float | None = None) -> Act:
    return Act(host, ident, term, started, ended if ended is not None else started + 0.1, "stop")


# --- stale terms on one agent -------------------------------------------------------------------------

def test_non_decreasing_terms_on_an_agent_are_fine():
    acts = [act("a", "1", 7, 1.0), act("a", "2", 7, 2.0), act("a", "3", 9, 3.0)]
    assert stale_term_violations("a", acts) == []


def test_an_agent_running_a_lower_term_after_a_higher_one_is_a_violation():
    acts = [act("a", "2", 9, 2.0), act("a", "1", 7, 3.0)]
    [bad] = stale_term_violations("a", acts)
    assert "term 7" in bad and "seen term 9" in bad


def test_an_action_without_a_term_after_a_term_is_a_violation_and_the_persisted_term_counts():
    assert stale_term_violations("a", [act("a", "1", None, 1.0)], highest_before=4)
    assert stale_term_violations("a", [act("a", "1", 3, 1.0)], highest_before=4)
    assert stale_term_violations("a", [act("a", "1", 4, 1.0)], highest_before=4) == []


# --- one leader acting across agents ------------------------------------------------------------------

def test_a_deposed_leader_acting_on_another_agent_after_its_successor_began_is_a_violation():
    acts = [act("ipc-a", "x1", 5, 1.0), act("ipc-b", "y1", 8, 2.0), act("ipc-a", "x2", 5, 2.5)]
    bad, overlaps = acting_violations(acts)
    assert len(bad) == 1 and "term 5" in bad[0] and "term 8" in bad[0] and "ipc-a" in bad[0]
    assert overlaps == 0


def test_an_older_terms_action_still_running_when_a_newer_term_began_is_counted_not_judged():
    acts = [act("ipc-a", "x1", 5, 1.0, ended=3.0), act("ipc-b", "y1", 8, 2.0)]
    bad, overlaps = acting_violations(acts)
    assert bad == [] and overlaps == 1


def test_terms_one_after_another_are_fine_and_untermed_actions_are_not_judged():
    acts = [act("a", "1", 5, 1.0), act("b", "2", 5, 1.5), act("a", "3", 8, 4.0), act("b", "4", None, 5.0)]
    assert acting_violations(acts) == ([], 0)


# --- the journal across leader changes ----------------------------------------------------------------

P = "/ccfo/site/journal/"


def test_a_published_entry_gone_or_changed_is_a_loss_unless_the_bounded_history_trimmed_it():
    before = {f"{P}ctl-a/000000000001": "a", f"{P}ctl-a/000000000005": "b", f"{P}ctl-b/000000000002": "c"}
    after = {f"{P}ctl-a/000000000005": "b*"}
    bad = published_loss(before, after, {"ctl-a": 1})  # trimmed up to id 1 inclusive, as journalsync does
    assert len(bad) == 2
    assert any("ctl-a/000000000005" in b and "changed" in b for b in bad)
    assert any("ctl-b/000000000002" in b and "gone" in b for b in bad)


def test_a_members_copy_must_hold_every_published_entry_identically():
    doc = {"id": 3, "ts": 10.5, "kind": "plan_started", "host": None, "plan_id": "p1", "step": None,
           "actor": "engine", "reason": "r", "status": None, "duration_s": None, "data": {"b": 1, "a": 2}}
    key = f"{P}ctl-a/000000000003"
    assert copy_gaps("ctl-b", {key: doc}, {key: entry_fields(doc)}) == []
    assert "lacks" in copy_gaps("ctl-b", {key: doc}, {})[0]
    assert "differs" in copy_gaps("ctl-b", {key: doc}, {key: entry_fields({**doc, "reason": "other"})})[0]


def test_read_copy_keys_own_entries_and_replicas_as_etcd_does(tmp_path):
    path = tmp_path / "journal-ctl-b.sqlite"
    j = Journal(path)
    own = j.append("plan_started", ts=1.0, plan_id="p1", actor="engine", data={"x": 1})
    doc = {"ts": 2.0, "kind": "plan_finished", "host": None, "plan_id": "p1", "step": None, "actor": "engine",
           "reason": None, "status": "finished", "duration_s": None, "data": {"y": [1, 2]}}
    j.append_replica(f"{P}ctl-a/000000000009", 42, doc)
    j.close()
    copy = read_copy(path, "ctl-b", "site")
    assert set(copy) == {f"{P}ctl-b/{own.id:012d}", f"{P}ctl-a/000000000009"}
    assert copy_gaps("ctl-b", {f"{P}ctl-a/000000000009": doc}, copy) == []


# --- the agents' records ------------------------------------------------------------------------------

def test_the_agents_files_are_read_as_they_are_written(tmp_path):
    (tmp_path / "actions.json").write_text(json.dumps({"results": [
        {"action_id": "p1-0", "fingerprint": "f", "result": {"action_id": "p1-0", "action": "stop", "term": 7,
                                                             "started": 10.0, "ended": 11.0}}]}))
    (tmp_path / "term.json").write_text(json.dumps({"version": 1, "highest_term": 7}))
    [a] = read_acts("ipc-a", tmp_path)
    assert (a.host, a.action_id, a.term, a.started, a.ended, a.what) == ("ipc-a", "p1-0", 7, 10.0, 11.0, "stop")
    assert read_highest_term(tmp_path) == 7
    assert read_acts("ipc-a", tmp_path / "none") == [] and read_highest_term(tmp_path / "none") is None


# --- the cluster draw -------------------------------------------------------------------------------

CLUSTER = replace(EXAMPLE, controllers=("ctl-a", "ctl-b", "ctl-c")).with_cluster(("etcd1", "etcd2", "etcd3"), True)


def test_one_controller_draws_what_it_always_drew():
    assert weights_for(EXAMPLE) == dict(WEIGHTS)
    assert "controller_kill" in {e.kind for r in range(200) for e in draw_run("x", r, EXAMPLE).events}


@pytest.mark.parametrize("partitions", [False, True])
def test_a_cluster_draws_its_own_events_with_valid_arguments(partitions):
    topo = replace(CLUSTER, partitions=partitions)
    events = [e for r in range(300) for e in draw_run("ha", r, topo).events]
    kinds = {e.kind for e in events}
    assert "controller_kill" not in kinds and set(HA_WEIGHTS) <= kinds
    assert ("partition" in kinds) is partitions
    for e in events:
        if e.kind in ("leader_kill", "leader_pause"):
            assert e.args[0] in ("now", "mid-plan")
        if e.kind == "leader_pause":
            assert 1.0 <= float(e.args[1]) <= 9.0
        if e.kind == "member_kill":
            assert e.args[0] in topo.controllers
        if e.kind == "etcd_kill":
            assert e.args[0] in topo.etcd
        if e.kind == "partition":
            kind, _, name = e.args[0].partition(":")
            assert kind in ("leader", "controller", "etcd", "host")
            assert name in {"leader": ("",), "controller": topo.controllers, "etcd": topo.etcd,
                            "host": topo.hosts}[kind]
            assert 1.0 <= float(e.args[1]) <= 12.0
    assert draw_run("ha", 3, topo) == draw_run("ha", 3, topo)
    assert "--weight" not in replay_command("ha", 3)
