"""The dry run of a drill: its plan in words, and what the controller is expected to decide, computed
offline from the site config with the same pure core the controller runs (no lab, no controller).

What it must not do: contact anything or start any process.
"""

from __future__ import annotations

from typing import Any

from ccfo.config.loader import LoadedConfig
from ccfo.domain.faults import FaultTracker, parse_fault
from ccfo.domain.plan import PlanRefused, build_switchover
from ccfo.domain.rules import evaluate
from ccfo.domain.state import SiteState
from drills.model import FaultKind, ScenarioModel, StateModel


def _state_text(m: StateModel) -> str:
    parts = []
    if m.state:
        parts.append(f"state {m.state}")
    if m.active_host:
        parts.append(f"active host {m.active_host}")
    if m.duties:
        parts.append("duties " + " ".join(f"{h}={d}" for h, d in m.duties.items()))
    if m.board_isolated:
        parts.append("board isolated " + " ".join(f"{h}={v}" for h, v in m.board_isolated.items()))
    if m.active_db:
        parts.append(f"active database {m.active_db}")
    if m.active_db_changed is not None:
        parts.append("active database " + ("changed" if m.active_db_changed else "unchanged"))
    if m.min_channels is not None:
        parts.append(f"at least {m.min_channels} channels")
    return ", ".join(parts) or "(any)"


def steps(s: ScenarioModel) -> list[str]:
    """The drill's steps, in order, as sentences."""
    e, wb, st = s.expect, s.way_back, s.steady_state
    out = [f"preflight: no plan running or proposed, the site is {st.state or 'in its steady state'}",
           f"steady state: {_state_text(st)}; calls: {', '.join(c.value for c in st.calls) or 'none'}"]
    if s.load.rate_cps > 0:
        out.append(f"steady load: {s.load.rate_cps:g} calls/s through the SIP front (SIPp): the front "
                   "routes each call as the controller set it, for the whole drill")
    via = "the lab" if s.lab else "the agent" if s.fault.kind is not FaultKind.SWITCHOVER else "the controller"
    out.append(f"fault: {s.fault.describe()} (through {via})")
    if e.detect:
        out.append(f"expect within {e.detect.within_s:g} s: the controller sees "
                   f"{e.detect.fault or s.fault.fault_text() or 'the fault'}")
    if e.decide:
        out.append(f"expect within {e.decide.within_s:g} s: decision {e.decide.action.value}"
                   + (f" by rule {e.decide.rule}" if e.decide.rule else ""))
    if e.plan:
        out.append(f"expect within {e.plan.within_s:g} s: the plan has finished"
                   + (" (the runner approves it as the operator on duty)" if e.plan.approve else ""))
    if e.state:
        out.append(f"expect within {e.state.within_s:g} s: {_state_text(e.state)}")
    out.append(f"expect within {e.recover.within_s:g} s: an inbound call answered by "
               f"{s.recover_host() or 'the active host'} (time to recover)")
    out.append(f"verification calls: {', '.join(c.value for c in e.verify_calls) or 'none'}")
    if e.call_limits is not None:
        for phase, where in (("drill", "during the drill"), ("way_back", "on the way back")):
            for key, limit in e.call_limits.limits(phase).items():
                out.append(f"expect at most {limit} call(s) of the steady load {key} {where}")
    if e.max_failed_calls is not None:
        out.append(f"expect at most {e.max_failed_calls} failed call(s) of the steady load")
    back = ["undo the fault" if wb.restore else "leave the fault",
            {"auto": "fail back if a host is not in its home duty", "always": "fail back",
             "never": "no failback"}[wb.failback]]
    out.append(f"way back (always runs once the fault is in; within {wb.within_s:g} s): {', then '.join(back)}")
    out.append(f"steady state again within {st.within_s:g} s, then the calls again")
    return out


def expected_decision(s: ScenarioModel, cfg: LoadedConfig) -> dict[str, Any]:
    """What the controller's rules decide for this fault from the normal state (the config's mode)."""
    state = SiteState.normal(cfg.site, cfg.site_model.controller.mode)
    if s.fault.kind is FaultKind.SWITCHOVER:
        try:
            plan = build_switchover(cfg.site, state, s.fault.to or "", s.fault.drain_timeout_s, "drill dry run")
        except PlanRefused as exc:
            return {"action": "switchover", "refused": str(exc), "steps": []}
        return {"action": "switchover", "rule": "operator", "disposition": "execute", "reason": plan.title,
                "steps": [st.describe() for st in plan.steps]}
    fault = parse_fault(s.fault.fault_text(str(cfg.site.active_db)) or "")
    now = 1_000_000.0
    decision = evaluate(cfg.site, state, FaultTracker.empty(cfg.flap).observe([fault], now - 86_400), cfg.policy, now)
    return {"action": decision.action.value, "rule": decision.rule, "disposition": decision.disposition.value,
            "reason": decision.reason, "steps": [st.describe() for st in decision.plan.steps] if decision.plan else []}


def text(s: ScenarioModel, cfg: LoadedConfig | None) -> str:
    lines = [f"Drill {s.name} (target {s.target}): {s.description.strip()}"]
    if s.source:
        lines.append(f"Source: {s.source}")
    lines += [f"  {i:>2}. {line}" for i, line in enumerate(steps(s), 1)]
    if cfg is not None:
        d = expected_decision(s, cfg)
        lines.append(f"The controller is expected to decide (offline, from {cfg.directory}): {d['action']}"
                     + (f" by rule {d['rule']}" if d.get("rule") else "") + f" ({d.get('disposition', '-')})")
        if d.get("refused"):
            lines.append(f"  refused: {d['refused']}")
        lines += [f"      {i:>2}. {step}" for i, step in enumerate(d["steps"], 1)]
    return "\n".join(lines)
