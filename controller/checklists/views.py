"""Read models of checklist runs: the status JSON the API, the CLI, the dashboard and the reports share.

Per step: state (done, running, ready, awaiting confirmation, blocked by ..., ...), owner, who started and
ended it and when, the note, planned vs. real duration and the deviation, projected start and end, on
the critical path or not; per phase the same in sum; for the run the planned and projected finish, the
slip, the critical path and one sentence. Pure: `now` is a parameter; times are epoch seconds.
"""

from __future__ import annotations

from typing import Any

from controller.checklists.machine import Readiness, RunState, current_phase, operator_event, readiness
from controller.checklists.model import Checklist, Refused, StepStatus, phase_offsets
from controller.checklists.model import describe as describe_event
from controller.checklists.schedule import Schedule, schedule
from controller.checklists.specs import describe


def checklist_summary(c: Checklist) -> dict[str, Any]:
    return {"name": c.name, "title": c.title, "description": c.description, "phases": len(c.phases),
            "steps": len(c.steps), "planned_s": c.planned_total_s(),
            "automatic_steps": sum(1 for s in c.steps if s.kind.automatic)}


def checklist_detail(c: Checklist) -> dict[str, Any]:
    offsets = phase_offsets(c)
    out = checklist_summary(c)
    out["phases"] = [{"id": p.id, "title": p.title, "start": str(p.start) if p.start else None,
                      "start_offset_s": offsets[p.id], "maintenance": p.maintenance,
                      "steps": [{"id": s.id, "title": s.title, "kind": s.kind.value, "owner": s.owner,
                                 "planned_s": s.planned_s, "after": list(s.after), "what": describe(s.spec),
                                 "confirm": s.confirm, "timeout_s": s.timeout_s, "notes": s.notes,
                                 "rollback": {"kind": s.rollback.kind.value, "title": s.rollback.title,
                                              "what": describe(s.rollback.spec)} if s.rollback else None}
                                for s in p.steps]} for p in c.phases]
    return out


def step_state(run: RunState, step_id: str) -> tuple[str, list[str]]:
    sr = run.steps[step_id]
    if sr.status is not StepStatus.PENDING:
        return sr.status.value, []
    state, blockers = readiness(run, run.checklist.step(step_id))
    return state.value, list(blockers)


def run_summary(run: RunState, now: float) -> dict[str, Any]:
    sched = schedule(run, now)
    counts: dict[str, int] = {}
    for sid in run.steps:
        state = step_state(run, sid)[0]
        counts[state] = counts.get(state, 0) + 1
    cur = current_phase(run)
    return {"id": run.id, "checklist": run.checklist.name, "title": run.checklist.title, "rehearsal": run.rehearsal,
            "started": run.started, "started_by": run.started_by, "reason": run.reason, "ended": run.ended,
            "outcome": run.outcome, "status": run_state(run), "current_phase": cur.id if cur else None,
            "planned_from": run.planned_from, "counts": counts, "steps": len(run.steps),
            "planned_finish": sched.planned_finish, "projected_finish": sched.projected_finish,
            "slip_s": sched.slip_s}


def run_state(run: RunState) -> str:
    if not run.open:
        return run.outcome or "closed"
    if run.rollback is not None:
        return "rolling_back"
    states = [step_state(run, s)[0] for s in run.steps]
    if "running" in states or "ready" in states:
        return "active"
    if "awaiting_confirmation" in states:
        return "awaiting_confirmation"
    if any(s in ("failed", "blocked", "rolled_back") for s in states):
        return "blocked"
    return "active"


def run_status(run: RunState, now: float, *, timeline: bool = False) -> dict[str, Any]:
    sched = schedule(run, now)
    phases = [_phase(run, sched, p.id, now) for p in run.checklist.phases]
    steps = [s for p in phases for s in p["steps"]]
    out = run_summary(run, now) | {
        "now": now,
        "phases": phases,
        "ready": [s["id"] for s in steps if s["state"] == Readiness.READY.value],
        "running": [s["id"] for s in steps if s["state"] == "running"],
        "awaiting_confirmation": [s["id"] for s in steps if s["state"] == Readiness.AWAITING_CONFIRMATION.value],
        "awaiting_operator": [s["id"] for s in steps if s["awaiting"]],
        "blocked": [s["id"] for s in steps if s["state"] == Readiness.BLOCKED.value],
        "failed": [s["id"] for s in steps if s["state"] == "failed"],
        "skipped": [s["id"] for s in steps if s["state"] == "skipped"],
        "critical_path": list(sched.critical_path),
        "maintenance": {"phase": run.maintenance.phase, "previous_mode": run.maintenance.previous_mode}
        if run.maintenance else None,
        "rollback": {"phase": run.rollback.phase, "queue": list(run.rollback.queue), "by": run.rollback.by,
                     "reason": run.rollback.reason} if run.rollback else None,
        "rollback_offers": rollback_offers(run),
    }
    out["line"] = _line(out)
    if timeline:
        out["timeline"] = [{"at": e.at, "actor": e.actor, "event": e.kind.value, "step": e.step, "phase": e.phase,
                            "outcome": e.outcome, "note": e.note, "text": describe_event(e)} for e in run.events]
    return out


def rollback_offers(run: RunState) -> list[dict[str, Any]]:
    """For each phase with a failed step: the way back of its completed steps, offered to the operator (who
    may also retry or skip the failed step). Never run by itself: `ccfo checklist rollback PHASE` runs it.
    Only what the machine would accept now is offered (no rollback under way, no later phase started)."""
    bad = (StepStatus.FAILED, StepStatus.ROLLBACK_FAILED)
    out = []
    for p in run.checklist.phases:
        failed = [x.id for x in p.steps if run.steps[x.id].status in bad]
        if not failed:
            continue
        try:
            ev = operator_event(run, "rollback", p.id, "", "", run.started)
        except Refused:
            continue
        queue = list(ev.data["queue"])
        out.append({"phase": p.id, "failed": failed, "queue": queue,
                    "undoes": [s for s in queue if run.checklist.step(s).rollback is not None],
                    "command": f"ccfo checklist rollback {p.id} --reason TEXT"})
    return out


def _phase(run: RunState, sched: Schedule, phase_id: str, now: float) -> dict[str, Any]:
    p = run.checklist.phase(phase_id)
    t = sched.phases[phase_id]
    steps = [_step(run, sched, s.id, now) for s in p.steps]
    states = {s["state"] for s in steps}
    state = ("done" if states <= {"done", "skipped"} else "rolled_back" if "rolled_back" in states
             else "blocked" if states & {"failed", "blocked"} and not states & {"running", "ready"}
             else "active" if any(s["started"] for s in steps) or states & {"ready", "awaiting_confirmation"}
             else "waiting")
    return {"id": p.id, "title": p.title, "start": str(p.start) if p.start else None, "maintenance": p.maintenance,
            "state": state, "planned_start": t.planned_start, "planned_end": t.planned_end,
            "planned_s": t.planned_end - t.planned_start, "start_at": t.start, "end_at": t.end, "real_s": t.real_s,
            "projected": t.projected, "deviation_s": (t.end - t.start) - (t.planned_end - t.planned_start),
            "steps": steps}


def _step(run: RunState, sched: Schedule, step_id: str, now: float) -> dict[str, Any]:
    s, sr, t = run.checklist.step(step_id), run.steps[step_id], sched.steps[step_id]
    state, blockers = step_state(run, step_id)
    awaiting = None
    if state == "running" and not s.kind.automatic:
        awaiting = f"{s.owner}: mark it done or failed"
    elif state == "rolling_back" and s.rollback and not s.rollback.kind.automatic:
        awaiting = f"{s.owner}: {s.rollback.title}, then mark it done or failed"
    elif state == Readiness.AWAITING_CONFIRMATION.value:
        awaiting = "an operator's confirmation"
    return {"id": s.id, "title": s.title, "kind": s.kind.value, "owner": s.owner, "what": describe(s.spec),
            "after": list(s.after), "state": state, "blocked_by": blockers, "awaiting": awaiting,
            "started": sr.started, "ended": sr.ended, "started_by": sr.started_by, "ended_by": sr.ended_by,
            "note": sr.note, "attempts": sr.attempts, "output": dict(sr.output),
            "planned_s": t.planned_s, "planned_source": run.planned_from if run.planned_from else "checklist",
            "real_s": t.real_s, "elapsed_s": (now - sr.started) if state == "running" and sr.started else None,
            "deviation_s": t.deviation_s, "planned_start": t.planned_start, "planned_end": t.planned_end,
            "start_at": t.start, "end_at": t.end, "projected": t.projected, "critical": t.critical,
            "rollback": {"kind": s.rollback.kind.value, "title": s.rollback.title} if s.rollback else None,
            "history": [{"what": a.what, "started": a.started, "ended": a.ended, "outcome": a.outcome, "by": a.by,
                         "note": a.note} for a in sr.history]}


def _line(v: dict[str, Any]) -> str:
    done = v["counts"].get("done", 0) + v["counts"].get("skipped", 0)
    parts = [f"{v['id']}: {v['status'].replace('_', ' ')}, {done}/{v['steps']} steps done or skipped"]
    if v["current_phase"]:
        parts.append(f"phase {v['current_phase']}")
    for key, label in (("awaiting_confirmation", "awaiting confirmation"), ("running", "running"),
                       ("failed", "FAILED"), ("blocked", "blocked")):
        if v[key]:
            parts.append(f"{label}: {', '.join(v[key][:4])}{' ...' if len(v[key]) > 4 else ''}")
    for offer in v.get("rollback_offers") or ():
        parts.append(f"offered: roll back phase {offer['phase']} (undoes {', '.join(offer['undoes']) or 'nothing'}) "
                     f"or retry or skip {', '.join(offer['failed'])}")
    if v["outcome"] is None:
        parts.append(f"projected finish {fmt_delta(v['slip_s'])} against the plan")
    return "; ".join(parts)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(abs(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    out = (f"{d}d" if d else "") + (f"{h}h" if h else "") + (f"{m:02d}m" if (d or h) else f"{m}m" if m else "")
    if not (d or h) and (sec or not m):
        out += f"{sec:02d}s" if m else f"{sec}s"
    return ("-" if seconds < 0 else "") + out


def fmt_delta(seconds: float) -> str:
    if abs(seconds) < 1:
        return "on time"
    return ("+" if seconds > 0 else "-") + fmt_duration(abs(seconds))
