"""The campaign's event draw: deterministic per (seed, run), within its bounds, replayable."""

from __future__ import annotations

import random

import pytest

from lab.campaign_plan import (
    BURST_SIZE,
    EXAMPLE,
    MAX_BURSTS,
    MAX_EVENTS,
    MAX_GAP_S,
    MIN_EVENTS,
    WEIGHTS,
    Topology,
    draw_run,
    replay_command,
)
from lab.labconfig import LabLayout, build
from lab.site import REPO


@pytest.mark.parametrize("seed", ["1", "ci", 42])
def test_the_same_seed_and_run_draw_the_same_events(seed):
    for run in range(20):
        assert draw_run(seed, run) == draw_run(seed, run)


def test_runs_and_seeds_draw_different_sequences():
    draws = {draw_run("1", run).events for run in range(50)} | {draw_run("2", run).events for run in range(50)}
    assert len(draws) == 100


def test_a_run_draws_3_to_8_events_with_gaps_of_0_to_3_seconds():
    plans = [draw_run("bounds", run) for run in range(300)]
    counts = {len([e for e in p.events if e.kind != "burst"]) for p in plans}
    assert counts == set(range(MIN_EVENTS, MAX_EVENTS + 1))
    assert {p.kinds().get("burst", 0) for p in plans} == set(range(MAX_BURSTS + 1))
    gaps = [e.gap_s for p in plans for e in p.events]
    assert min(gaps) >= 0 and max(gaps) <= MAX_GAP_S
    assert 0.4 < sum(gaps) / len(gaps) < 1.1, "short pauses are likelier (mean about 0.75 s)"


def test_every_kind_of_event_is_drawn_with_valid_arguments():
    events = [e for run in range(300) for e in draw_run("kinds", run).events]
    assert {e.kind for e in events} == set(WEIGHTS) | {"burst"}
    for e in events:
        if e.kind in ("span_alarm", "span_clear"):
            assert int(e.args[1]) in EXAMPLE.spans[e.args[0]]
        if e.kind == "span_alarm":
            assert e.args[2] in ("red", "yellow", "blue")
        if e.kind in ("service_crash", "service_hang"):
            assert e.args[1] in EXAMPLE.services[e.args[0]]
        if e.kind in ("db_down", "db_up"):
            assert e.args[0] in EXAMPLE.db_sites
        if e.kind == "controller_kill":
            assert e.args[0] in ("now", "mid-plan") and 0 <= float(e.args[1]) <= 1


def test_the_example_topology_is_the_lab_site(tmp_path):
    site = build(REPO / "config", LabLayout(tmp_path))
    assert Topology.from_site(site) == EXAMPLE


def test_the_replay_command_names_seed_and_run():
    assert replay_command("abc", 17) == "ccfo lab campaign --seed abc --run 17"


def test_bursts_send_several_requests_at_once_in_both_directions():
    bursts = [e for run in range(300) for e in draw_run("bursts", run).events if e.kind == "burst"]
    assert len(bursts) > 100
    for b in bursts:
        assert BURST_SIZE[0] <= len(b.args) <= BURST_SIZE[1] + len(EXAMPLE.hosts)
        targets = {r.split(":")[1] for r in b.args if r.startswith(("failover:", "switchover:"))}
        assert targets == set(EXAMPLE.hosts), b.args  # opposite directions in every burst
        assert all(r.split(":")[0] in ("failover", "switchover", "failback", "approve") for r in b.args)
    assert any("approve" in b.args for b in bursts) and any(r.startswith("failback:") for b in bursts for r in b.args)


def test_bursts_leave_the_other_events_of_a_run_as_they_were():
    """Bursts draw from a stream of their own: without them, a run is the sequence older reports replayed."""
    for run in range(30):
        rng = random.Random(f"ci:{run}")
        n = rng.randint(MIN_EVENTS, MAX_EVENTS)
        assert len([e for e in draw_run("ci", run).events if e.kind != "burst"]) == n


def test_a_weight_override_is_another_mix_and_the_default_draws_are_unchanged():
    assert draw_run("w", 3) == draw_run("w", 3, weights={})
    heavy = [e.kind for run in range(100) for e in draw_run("w", run, weights={"service_hang": 20}).events]
    plain = [e.kind for run in range(100) for e in draw_run("w", run).events]
    assert heavy.count("service_hang") > 4 * max(1, plain.count("service_hang"))
    none = [e.kind for run in range(50) for e in draw_run("w", run, weights={"service_hang": 0}).events]
    assert "service_hang" not in none
    assert replay_command("w", 3, {"service_hang": 6}) == "ccfo lab campaign --seed w --weight service_hang=6 --run 3"
