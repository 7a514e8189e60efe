"""The controller's metrics (controller/metrics.py) over a real engine, executor and journal (agents are
tests/controller/fakeworld.py's in-memory world): the exposition is parsed back with prometheus_client's own
parser and its values are checked against what the journal recorded. promtool checks the live endpoints
(tests/integration/test_lab_metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccfo.domain.state import Mode
from controller.metrics import ControllerMetrics
from controller.store import PlanStatus
from tests.controller.harness import Harness
from tests.support import async_wait_until

pytestmark = pytest.mark.asyncio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


async def test_an_automatic_failover_shows_in_counters_histograms_and_gauges(tmp_path):
    h = Harness(tmp_path, Mode.AUTOMATIC)
    exporter = ControllerMetrics(h.engine)
    await h.start()
    try:
        got = samples((await exporter.render()).decode())
        assert value(got, "ccfo_mode", mode="automatic") == 1 and value(got, "ccfo_mode", mode="supervised") == 0
        assert value(got, "ccfo_plans", status="finished") == 0
        assert value(got, "ccfo_host_active", host="ipc-a") == 1
        h.crash("ipc-a", "ivr")
        await async_wait_until(lambda: h.plans(PlanStatus.FINISHED), timeout=10)
        await async_wait_until(lambda: h.engine.running is None, timeout=5)
        got = samples((await exporter.render()).decode())
        journal = h.journal.query(before_id=exporter.position + 1, limit=None, newest_first=False)  # as folded
    finally:
        await h.stop()
    kinds = [e.kind for e in journal]
    for kind in set(kinds):
        assert value(got, "ccfo_journal_entries_total", kind=kind) == kinds.count(kind), kind
    assert value(got, "ccfo_plans", status="finished") == 1
    assert value(got, "ccfo_host_active", host="ipc-b") == 1 and value(got, "ccfo_host_active", host="ipc-a") == 0
    # fault seen -> the decision that executes: exactly one observation, as long as the journal says
    seen = min(e.ts for e in journal if e.kind == "fault_seen")
    decided = next(e for e in journal if e.kind == "decision" and e.status == "execute")
    assert value(got, "ccfo_fault_to_decision_seconds_count", disposition="execute") == 1
    assert value(got, "ccfo_fault_to_decision_seconds_sum", disposition="execute") == pytest.approx(decided.ts - seen)
    finished = next(e for e in journal if e.kind == "plan_finished")
    assert value(got, "ccfo_decision_to_plan_finished_seconds_count", outcome="finished") == 1
    assert value(got, "ccfo_decision_to_plan_finished_seconds_sum", outcome="finished") == pytest.approx(
        finished.ts - decided.ts)
    # every step's duration, by the kind its step_started entry named
    steps = [e for e in journal if e.kind == "step_finished"]
    kinds_of = {e.step: e.data["step"]["kind"] for e in journal if e.kind == "step_started"}
    for kind in set(kinds_of.values()):
        mine = [e for e in steps if kinds_of[e.step] == kind]
        assert value(got, "ccfo_plan_step_duration_seconds_count", kind=kind, result="ok") == len(mine)
        assert value(got, "ccfo_plan_step_duration_seconds_sum", kind=kind, result="ok") == pytest.approx(
            sum(e.duration_s for e in mine))


async def test_entries_are_counted_once_and_from_the_apps_start(tmp_path):
    h = Harness(tmp_path)
    await h.start()
    try:
        await h.engine.record("note", reason="before the exporter")
        exporter = ControllerMetrics(h.engine)
        await h.engine.record("snmp_notification", host="ipc-a", data={"notification": "span_alarm_raised"})
        assert exporter.catch_up() == 1
        assert exporter.catch_up() == 0
        got = samples((await exporter.render()).decode())
    finally:
        await h.stop()
    assert value(got, "ccfo_snmp_notifications_total", notification="span_alarm_raised") == 1
    assert ("ccfo_journal_entries_total", (("kind", "note"),)) not in got, "written before the app existed"


async def test_two_apps_do_not_share_a_registry(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Harness(tmp_path / "a"), Harness(tmp_path / "b")
    ea, eb = ControllerMetrics(a.engine), ControllerMetrics(b.engine)
    assert ea.registry is not eb.registry
    await a.engine.record("note", reason="only in a")
    ea.catch_up()
    eb.catch_up()
    assert value(samples((await ea.render()).decode()), "ccfo_journal_entries_total", kind="note") == 1
    assert ("ccfo_journal_entries_total", (("kind", "note"),)) not in samples((await eb.render()).decode())
    for h in (a, b):
        h.journal.close()
        h.store.close()
