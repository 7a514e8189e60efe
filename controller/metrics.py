"""Prometheus text exposition of the controller's state (faults, decisions, plans, steps, capacity).

Computed on scrape from the engine and the store; no client library needed for a handful of series.
"""

from __future__ import annotations

from typing import Any

from controller.status import host_capacity
from controller.store import PlanStatus


def _line(name: str, value: float, **labels: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(engine: Any) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[str]) -> None:
        out.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples])

    present = engine.tracker.present()
    by_kind: dict[str, int] = {}
    for f in present:
        by_kind[f.kind.value] = by_kind.get(f.kind.value, 0) + 1
    metric("ccfo_faults_present", "gauge", "Faults present now, by kind",
           [_line("ccfo_faults_present", n, kind=k) for k, n in sorted(by_kind.items())] or
           [_line("ccfo_faults_present", 0, kind="none")])
    metric("ccfo_cycles_total", "counter", "Control cycles run", [_line("ccfo_cycles_total", engine.cycles)])
    plans = engine.store.plans(None, 10_000)
    counts = {s.value: 0 for s in PlanStatus}
    for p in plans:
        counts[p.status.value] += 1
    metric("ccfo_plans", "gauge", "Plans by status", [_line("ccfo_plans", n, status=s) for s, n in counts.items()])
    durations = [p.updated - p.created for p in plans if p.status is PlanStatus.FINISHED]
    metric("ccfo_plan_duration_seconds_sum", "counter", "Total duration of finished plans",
           [_line("ccfo_plan_duration_seconds_sum", sum(durations))])
    metric("ccfo_plan_duration_seconds_count", "counter", "Finished plans",
           [_line("ccfo_plan_duration_seconds_count", len(durations))])
    cap = []
    snap = engine.snap
    for host in engine.site.hosts:
        view = snap.hosts.get(host.id) if snap else None
        c = host_capacity(engine.site, engine.state, host.id, view.health if view else None)
        for key in ("channels", "ivr_calls", "agent_calls", "fax_calls", "free"):
            cap.append(_line(f"ccfo_host_{key}", c[key], host=host.id))
    out.extend(["# HELP ccfo_host_channels Channels serving calls, per host (X + 2Y <= channels)",
                "# TYPE ccfo_host_channels gauge", *cap])
    metric("ccfo_mode", "gauge", "The controller's mode (1 for the current one)",
           [_line("ccfo_mode", 1, mode=engine.state.mode.value)])
    return "\n".join(out) + "\n"
