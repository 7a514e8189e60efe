"""The controller's Prometheus metrics (prometheus_client), served at GET /metrics (viewer token).

One `ControllerMetrics` per app, with its own `CollectorRegistry`: nothing lives in the library's global
registry, so two apps in one process (the tests) never share series.

Two sources, so that the engine and the executor need no metrics code of their own:
* gauges are read from the engine at scrape time: capacity per host (C channels serving, X IVR calls,
  Y agent calls, free channels), host reachability, the mode, faults present by kind, plans by status;
* counters and histograms are folded from the journal, which already records every fault, decision,
  plan, step (with its duration) and SNMP notification: each scrape reads the entries written since the
  last one (`JournalFold`), starting from the journal's end when the app was created (Prometheus counters
  start at zero with the process, as usual).

Latencies, all from journal timestamps: fault seen -> the decision that acts on it (propose, execute or
report), by disposition; that decision (or the operator's request) -> plan finished or failed, by outcome
(a proposed plan includes the wait for an operator's approval); each plan step's duration by step kind and
result. docs/operations.md lists every series; config/prometheus/ holds a scrape config and alert rules.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccfo.domain.faults import FaultKind
from ccfo.domain.state import Mode
from controller.journal import EntryKind, Journal, JournalEntry
from controller.status import host_capacity
from controller.store import PlanStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DECISION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
PLAN_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
ACTING = frozenset({"propose", "execute", "report"})
FINISHES = {EntryKind.PLAN_FINISHED.value: "finished", EntryKind.PLAN_FAILED.value: "failed"}
SNMP_KIND = "snmp_notification"


class JournalFold:
    """Counters and histograms folded from journal entries, in id order (`feed`), never twice."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.entries = Counter("ccfo_journal_entries", "Journal entries written, by kind", ["kind"], registry=registry)
        self.snmp = Counter("ccfo_snmp_notifications", "SNMP notifications received from the agents, by notification",
                            ["notification"], registry=registry)
        self.fault_to_decision = Histogram(
            "ccfo_fault_to_decision_seconds", "From the first fault seen to the decision that acts on it",
            ["disposition"], buckets=DECISION_BUCKETS, registry=registry)
        self.decision_to_finish = Histogram(
            "ccfo_decision_to_plan_finished_seconds",
            "From the decision (or operator request) to the plan's end, by outcome", ["outcome"],
            buckets=PLAN_BUCKETS, registry=registry)
        self.step_duration = Histogram(
            "ccfo_plan_step_duration_seconds", "Duration of one plan step, by kind and result", ["kind", "result"],
            buckets=STEP_BUCKETS, registry=registry)
        self._faults: dict[tuple[str | None, str | None], float] = {}  # pending: seen, not yet decided
        self._decided_at: float | None = None  # the last acting decision, for the plan it proposes or starts
        self._plans: dict[str, float] = {}  # plan id -> when it was decided
        self._steps: dict[tuple[str, int], str] = {}  # (plan id, step) -> step kind, from step_started

    def feed(self, e: JournalEntry) -> None:
        self.entries.labels(e.kind).inc()
        kind = e.kind
        if kind == EntryKind.FAULT_SEEN:
            self._faults.setdefault((e.host, e.reason), e.ts)
        elif kind == EntryKind.FAULT_CLEARED:
            self._faults.pop((e.host, e.reason), None)
        elif kind == EntryKind.DECISION and e.status in ACTING:
            if self._faults:
                self.fault_to_decision.labels(e.status).observe(max(0.0, e.ts - min(self._faults.values())))
                self._faults.clear()
            self._decided_at = e.ts
        elif kind in (EntryKind.PLAN_PROPOSED, EntryKind.PLAN_STARTED, EntryKind.OPERATOR_ACTION) and e.plan_id:
            if e.plan_id not in self._plans:
                by_rule = e.actor == "controller" and self._decided_at is not None
                self._plans[e.plan_id] = self._decided_at if by_rule and self._decided_at is not None else e.ts
        elif kind in FINISHES and e.plan_id:
            decided = self._plans.pop(e.plan_id, None)
            if decided is not None:
                self.decision_to_finish.labels(FINISHES[kind]).observe(max(0.0, e.ts - decided))
            self._steps = {k: v for k, v in self._steps.items() if k[0] != e.plan_id}
        elif kind == EntryKind.STEP_STARTED and e.plan_id and e.step is not None:
            self._steps[(e.plan_id, e.step)] = str((e.data.get("step") or {}).get("kind", "unknown"))
        elif kind in (EntryKind.STEP_FINISHED, EntryKind.STEP_FAILED) and e.plan_id and e.duration_s is not None:
            step_kind = self._steps.get((e.plan_id, e.step if e.step is not None else -1), "unknown")
            result = "ok" if kind == EntryKind.STEP_FINISHED else "failed"
            self.step_duration.labels(step_kind, result).observe(e.duration_s)
        elif kind == SNMP_KIND:
            self.snmp.labels(str(e.data.get("notification", "unknown"))).inc()


class ControllerMetrics:
    """The registry of one controller app: `await render()` on every scrape."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.fold = JournalFold(self.registry)
        self.registry.register(_EngineState(engine))
        self._journal: Journal = engine.journal
        self.position = self._journal.last_id()
        self._lock = threading.Lock()

    def catch_up(self) -> int:
        """Fold the journal entries written since the last scrape; how many there were."""
        with self._lock:
            entries = self._journal.query(after_id=self.position, limit=None, newest_first=False)
            for e in entries:
                self.fold.feed(e)
                self.position = e.id
            return len(entries)

    async def render(self) -> bytes:
        await asyncio.to_thread(self.catch_up)
        return generate_latest(self.registry)


class _EngineState(Collector):
    """Gauges read from the engine at scrape time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []  # computed on collect

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        yield CounterMetricFamily("ccfo_engine_cycles", "Control cycles run", value=engine.cycles)
        by_kind = dict.fromkeys((k.value for k in FaultKind), 0)
        for f in engine.tracker.present():
            by_kind[f.kind.value] += 1
        faults = GaugeMetricFamily("ccfo_faults_present", "Faults present now, by kind", labels=["kind"])
        for k, n in by_kind.items():
            faults.add_metric([k], n)
        yield faults
        counts = dict.fromkeys((s.value for s in PlanStatus), 0)
        for p in engine.store.plans(None, 10_000):
            counts[p.status.value] += 1
        plans = GaugeMetricFamily("ccfo_plans", "Plans by status", labels=["status"])
        for s, n in counts.items():
            plans.add_metric([s], n)
        yield plans
        mode = GaugeMetricFamily("ccfo_mode", "The controller's mode: 1 for the current one", labels=["mode"])
        for m in Mode:
            mode.add_metric([m.value], 1.0 if engine.state.mode is m else 0.0)
        yield mode
        yield from _hosts(engine)


def _hosts(engine: Any) -> Iterator[Metric]:
    snap = engine.snap
    families = {key: GaugeMetricFamily(name, help_, labels=["host"]) for key, name, help_ in (
        ("channels", "ccfo_host_channels", "C: channels serving calls on the host (X + 2Y <= C)"),
        ("ivr_calls", "ccfo_host_ivr_calls", "X: calls in the IVR"),
        ("agent_calls", "ccfo_host_agent_calls", "Y: calls transferred to an agent"),
        ("free", "ccfo_host_free_channels", "Channels free now: C - X - 2Y"),
    )}
    reachable = GaugeMetricFamily("ccfo_host_reachable", "1 while the host's agent reports in time", labels=["host"])
    active = GaugeMetricFamily("ccfo_host_active", "1 for the host that runs CTI/IVR", labels=["host"])
    for host in engine.site.hosts:
        view = snap.hosts.get(host.id) if snap else None
        cap = host_capacity(engine.site, engine.state, host.id, view.health if view else None)
        for key, family in families.items():
            family.add_metric([host.id], cap[key])
        reachable.add_metric([host.id], 1.0 if view is not None and view.reachable else 0.0)
        active.add_metric([host.id], 1.0 if engine.state.active_host == host.id else 0.0)
    yield from families.values()
    yield reachable
    yield active
