"""Planned vs. real timing of a run: the baseline plan, the projection from now, the critical path.

Both schedules are the same forward pass over the steps in checklist order (dependencies always point
backwards, the loader makes sure): a step starts when its phase starts and its `after` steps end; a
phase starts when the phase before it ends and, for a real run, not before its planned start (`sat
08:00`: the source plan's weekend does not move because Friday went fast). The baseline uses planned
durations only, from the run's start. The projection uses what is known: real start and end of finished
steps, real start of running ones (and at least `now` as their end), `now` as the earliest start of
anything still to do. The critical path is the chain of steps that set the projected finish.

A rehearsal's real durations can be a later run's planned durations (`planned_from_rehearsal`): the
lesson of comparable cutovers is to rehearse once to learn the real timings.

Pure: `now` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.checklists.machine import RunState
from controller.checklists.model import Checklist, StepStatus, phase_offsets


@dataclass(frozen=True, slots=True)
class StepTiming:
    step: str
    planned_s: float
    planned_start: float
    planned_end: float
    start: float  # real when started, else projected
    end: float  # real when finished, else projected
    real_s: float | None  # the real duration of a finished step (None otherwise)
    deviation_s: float  # (real or projected duration) - planned duration
    projected: bool  # start/end are projections
    critical: bool


@dataclass(frozen=True, slots=True)
class PhaseTiming:
    phase: str
    planned_start: float
    planned_end: float
    start: float
    end: float
    real_s: float | None  # first start to last end of a finished phase
    projected: bool


@dataclass(frozen=True, slots=True)
class Schedule:
    steps: Mapping[str, StepTiming]
    phases: Mapping[str, PhaseTiming]
    planned_finish: float
    projected_finish: float
    critical_path: tuple[str, ...]

    @property
    def slip_s(self) -> float:
        return self.projected_finish - self.planned_finish


def planned_from_rehearsal(checklist: Checklist, rehearsal: RunState) -> dict[str, float]:
    """Planned seconds per step: the rehearsal's real duration where it finished the step (its last,
    successful attempt), the checklist's planned duration elsewhere."""
    out = {}
    for step in checklist.steps:
        sr = rehearsal.steps.get(step.id)
        real = sr.real_s if sr is not None else None
        out[step.id] = real if real is not None else step.planned_s
    return out


def _pass(s: RunState, now: float | None, gates: bool) -> tuple[dict[str, tuple[float, float]], dict[str, str | None],
                                                                dict[str, tuple[float, float]]]:
    """(start, end) per step, the predecessor that set each start, (start, end) per phase.

    `now=None` is the baseline (planned durations only); otherwise the projection."""
    offsets = phase_offsets(s.checklist)
    times: dict[str, tuple[float, float]] = {}
    pred: dict[str, str | None] = {}
    phases: dict[str, tuple[float, float]] = {}
    prev_end, prev_last = s.started, None
    for phase in s.checklist.phases:
        off = offsets.get(phase.id)
        p_start = max(prev_end, s.started + off) if gates and off is not None else prev_end
        for step in phase.steps:
            dur = s.planned[step.id]
            es, who = p_start, (prev_last if p_start == prev_end else None)
            for dep in step.after:
                if times[dep][1] >= es:  # on a tie the dependency, not the phase start, sets it
                    es, who = times[dep][1], dep
            sr = s.steps[step.id]
            if now is None:
                start, end = es, es + dur
            elif sr.status in (StepStatus.DONE, StepStatus.SKIPPED) and sr.started is not None:
                start, end = sr.started, max(sr.started, sr.ended or sr.started)
            elif sr.status is StepStatus.SKIPPED:
                start = end = es
            elif sr.status is StepStatus.RUNNING and sr.started is not None:
                start, end = sr.started, max(now, sr.started + dur)
            else:
                start = max(es, now)
                who = who if start == es else None
                end = start + dur
            times[step.id], pred[step.id] = (start, end), who
        if phase.steps:
            last = max(phase.steps, key=lambda x: times[x.id][1]).id
            phases[phase.id] = (min(times[x.id][0] for x in phase.steps), times[last][1])
            prev_end, prev_last = max(prev_end, times[last][1]), last
        else:
            phases[phase.id] = (p_start, p_start)
            prev_end = p_start
    return times, pred, phases


def schedule(s: RunState, now: float, gates: bool | None = None) -> Schedule:
    """The baseline and the projection of run `s` at `now`. `gates` (default: real runs only) makes a
    phase wait for its planned start."""
    gated = (not s.rehearsal) if gates is None else gates
    base, _, base_phases = _pass(s, None, gated)
    proj, pred, proj_phases = _pass(s, now, gated)
    steps = s.checklist.steps
    planned_finish = max((base[x.id][1] for x in steps), default=s.started)
    projected_finish = max((proj[x.id][1] for x in steps), default=s.started)
    path: list[str] = []
    if steps:
        last = max(range(len(steps)), key=lambda i: (proj[steps[i].id][1], i))  # ties: the later step
        cur: str | None = steps[last].id
        while cur is not None and cur not in path:
            path.append(cur)
            cur = pred.get(cur)
    critical = set(path)
    timings = {}
    for step in steps:
        sr = s.steps[step.id]
        start, end = proj[step.id]
        finished = sr.status in (StepStatus.DONE, StepStatus.SKIPPED) and sr.ended is not None
        real = sr.real_s
        dur = end - start
        timings[step.id] = StepTiming(step.id, s.planned[step.id], base[step.id][0], base[step.id][1], start, end,
                                      real, (real if real is not None else dur) - s.planned[step.id]
                                      if sr.status is not StepStatus.SKIPPED else 0.0,
                                      not finished, step.id in critical)
    phases = {}
    for phase in s.checklist.phases:
        done = all(s.steps[x.id].status.complete for x in phase.steps)
        started = [s.steps[x.id].started for x in phase.steps if s.steps[x.id].started is not None]
        ended = [s.steps[x.id].ended for x in phase.steps if s.steps[x.id].ended is not None]
        real = max(ended) - min(started) if done and started and ended else None  # type: ignore[type-var]
        phases[phase.id] = PhaseTiming(phase.id, *base_phases[phase.id], *proj_phases[phase.id], real, not done)
    return Schedule(timings, phases, planned_finish, projected_finish, tuple(reversed(path)))
