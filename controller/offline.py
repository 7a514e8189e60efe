"""The offline commands: check-config, capacity, capacity blocking, plan. They need no running controller.

Thin: parse arguments into domain values, call the pure core, render text or JSON. Exit codes follow the
CLI convention: 0 ok, 1 refused (the answer is "no"), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ccfo.config.loader import LoadedConfig, load_config
from ccfo.config.yamlpos import ConfigError
from ccfo.domain.capacity import Scenario, SiteCapacity, scenario_channels, site_capacity
from ccfo.domain.faults import Fault, FaultKind, FaultSyntaxError, FaultTracker, parse_fault
from ccfo.domain.plan import PlanRefused, build_failback, build_failover, build_switchover
from ccfo.domain.rules import Decision, Disposition, evaluate
from ccfo.domain.site import Duty
from ccfo.domain.state import Mode, SiteState

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: printed as one line, exit 2."""


def load(args: argparse.Namespace) -> LoadedConfig:
    return load_config(args.config)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load(args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    for w in cfg.warnings:
        print(w, file=sys.stderr)
    hosts = ", ".join(f"{h.id} {h.role.value} {h.channels} channels" for h in cfg.site.hosts)
    servers = (f"; {len(cfg.site.servers)} servers in " + ", ".join(
        f"{dc} ({len(cfg.site.servers_in(dc))})" for dc in cfg.site.datacenters)) if cfg.site.servers else ""
    print(f"config OK: site {cfg.site.name}: {hosts}{servers}; {len(cfg.policy.rules)} rules; "
          f"database {cfg.site.active_db} active")
    return EXIT_OK


def _span_downs(cfg: LoadedConfig, items: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in items:
        host, _, span = item.partition(":")
        if host not in cfg.site.host_ids or not span.isdigit():
            hosts = ", ".join(cfg.site.host_ids)
            raise UsageError(f"--span-down {item!r}: expected HOST:SPAN with HOST one of {hosts}")
        if cfg.site.host(host).board.span(int(span)) is None:
            raise UsageError(f"--span-down {item!r}: {host} has no span {span}")
        out.setdefault(host, []).append(int(span))
    return out


def _trunk_downs(cfg: LoadedConfig, items: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        host, _, name = item.partition(":")
        if host not in cfg.site.host_ids or not name:
            hosts = ", ".join(cfg.site.host_ids)
            raise UsageError(f"--trunk-down {item!r}: expected HOST:TRUNK with HOST one of {hosts}")
        if cfg.site.host(host).trunk(name) is None:
            known = ", ".join(t.name for t in cfg.site.host(host).trunks) or "none"
            raise UsageError(f"--trunk-down {item!r}: {host} has no trunk {name} (trunks: {known})")
        out.setdefault(host, []).append(name)
    return out


def capacity_json(cap: SiteCapacity) -> dict[str, Any]:
    return {
        "scenario": cap.scenario,
        "agent_calls": cap.agent_calls,
        "max_ivr_calls": cap.max_ivr_calls,
        "max_agent_calls": cap.max_agent_calls,
        "channels": cap.channels,
        "hosts": {
            name: {"channels": h.channels, "max_ivr_calls": h.max_ivr_calls, "max_agent_calls": h.max_agent_calls,
                   "agent_calls": h.agent_calls, "ivr_calls_that_fit": h.ivr_calls_that_fit}
            for name, h in cap.hosts.items()
        },
    }


def cmd_capacity(args: argparse.Namespace) -> int:
    if getattr(args, "capacity_cmd", None) == "blocking":
        return cmd_blocking(args)
    cfg = load(args)
    scenario = Scenario(args.scenario)
    trunks_down = _trunk_downs(cfg, getattr(args, "trunk_down", []))
    channels = scenario_channels(cfg.site, scenario, _span_downs(cfg, args.span_down), trunks_down)
    cap = site_capacity(channels, args.agent_calls, cfg.site.capacity, scenario.value)
    if args.json:
        data = capacity_json(cap)
        for name, host in data["hosts"].items():
            host["trunks"] = [{"name": t.name, "driver": t.driver.value, "channels": t.channels,
                               "state": "down" if t.name in trunks_down.get(name, ()) else "up"}
                              for t in cfg.site.host(name).trunks]
        print(json.dumps(data, indent=2))
    else:
        _print_capacity(cfg, cap, trunks_down)
    if cap.max_ivr_calls is None:
        per_host = " + ".join(f"{n} {h.max_agent_calls}" for n, h in cap.hosts.items())
        print(f"refused: {args.agent_calls} agent calls do not fit in scenario {scenario.value}: "
              f"at most {cap.max_agent_calls} ({per_host})", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _print_capacity(cfg: LoadedConfig, cap: SiteCapacity, trunks_down: dict[str, list[str]] | None = None) -> None:
    data = capacity_json(cap)
    pol = cfg.site.capacity
    print(f"Scenario {cap.scenario}, {cap.agent_calls} agent call(s); each IVR call holds "
          f"{pol.channels_per_ivr_call} channel, each agent call {pol.channels_per_agent_call}, "
          f"reserve {pol.reserve_for_transfers} per host")
    print(f"{'host':<10}{'role':<9}{'C':>5}{'max IVR':>9}{'max agent':>11}{'agent placed':>14}{'IVR that fit':>14}")
    for name, h in data["hosts"].items():
        role = cfg.site.host(name).role.value
        fit = "-" if h["ivr_calls_that_fit"] is None else h["ivr_calls_that_fit"]
        print(f"{name:<10}{role:<9}{h['channels']:>5}{h['max_ivr_calls']:>9}{h['max_agent_calls']:>11}"
              f"{h['agent_calls']:>14}{fit!s:>14}")
    total_ivr = sum(h["max_ivr_calls"] for h in data["hosts"].values())
    fit_all = "-" if cap.max_ivr_calls is None else cap.max_ivr_calls
    print(f"{'site':<19}{cap.channels:>5}{total_ivr:>9}{cap.max_agent_calls:>11}{cap.agent_calls:>14}{fit_all!s:>14}")
    for host in cfg.site.hosts:
        if host.trunks:
            down = set((trunks_down or {}).get(host.id, ()))
            listed = ", ".join(f"{t.name} ({t.driver.value}, {t.channels} ch{', down' if t.name in down else ''})"
                               for t in host.trunks)
            print(f"{host.id} SIP trunks: {listed}")
    if cap.max_ivr_calls is not None:
        print(f"With {cap.agent_calls} agent call(s), {cap.max_ivr_calls} more IVR call(s) fit.")


def cmd_blocking(args: argparse.Namespace) -> int:
    from ccfo.domain import blocking  # numpy: only this command pays for it (every ccfo call did)

    try:
        if args.model == "transfer":
            for opt in ("arrivals_per_min", "ivr_minutes", "transfer_ratio", "agent_minutes"):
                if getattr(args, opt) is None:
                    raise UsageError(f"--model transfer needs --{opt.replace('_', '-')}")
            t = blocking.transfer_chain(args.channels, args.arrivals_per_min, args.ivr_minutes,
                                        args.transfer_ratio, args.agent_minutes, args.reserve)
            out: dict[str, Any] = {"model": "transfer", "channels": args.channels, "reserve": args.reserve,
                                   "new_call_blocking": t.new_call_blocking, "transfer_blocking": t.transfer_blocking,
                                   "mean_ivr_calls": t.mean_ivr_calls, "mean_agent_calls": t.mean_agent_calls}
        else:
            if args.ivr_erlangs is None or args.agent_erlangs is None:
                raise UsageError("--ivr-erlangs and --agent-erlangs are required (or use --model transfer)")
            if args.reserve == 0:
                b = blocking.kaufman_roberts(args.channels, args.ivr_erlangs, args.agent_erlangs)
                method = "kaufman-roberts"
            else:
                b = blocking.reservation_chain(args.channels, args.ivr_erlangs, args.agent_erlangs, args.reserve)
                method = "markov-chain-with-reservation"
            out = {"model": "classes", "method": method, "channels": args.channels, "reserve": args.reserve,
                   "ivr_blocking": b.ivr_blocking, "agent_blocking": b.agent_blocking}
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:<20} {v:.6g}" if isinstance(v, float) else f"{k:<20} {v}")
    return EXIT_OK


def _state_from_args(cfg: LoadedConfig, args: argparse.Namespace) -> SiteState:
    mode = Mode(args.mode) if args.mode else cfg.site_model.controller.mode
    state = SiteState.normal(cfg.site, mode)
    for item in args.duty or []:
        host, _, duty = item.partition("=")
        if host not in cfg.site.host_ids or duty not in {d.value for d in Duty}:
            raise UsageError(f"--duty {item!r}: expected HOST=primary|standby|takeover|out")
        state = state.with_host(host, duty=Duty(duty))
    for host in args.isolated or []:
        if host not in cfg.site.host_ids:
            raise UsageError(f"--isolated {host!r}: unknown host")
        state = state.with_host(host, board_isolated=True)
    return state


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = load(args)
    state = _state_from_args(cfg, args)
    try:
        faults = [parse_fault(f) for f in args.faults]
    except FaultSyntaxError as exc:
        raise UsageError(str(exc)) from exc
    for f in faults:
        _check_fault_subject(cfg, f)
    operator = [x for x in (args.failover_to, args.switchover_to, args.failback) if x]
    if operator and faults:
        raise UsageError("give either faults or one operator action, not both")
    if len(operator) > 1:
        raise UsageError("give one operator action at a time")
    if operator:
        return _operator_plan(cfg, state, args)
    if not faults:
        raise UsageError("give at least one FAULT, or --failover-to / --switchover-to / --failback")
    now = 1_000_000.0
    tracker = FaultTracker.empty(cfg.flap).observe(faults, now - 86_400)
    decision = evaluate(cfg.site, state, tracker, cfg.policy, now)
    _print_decision(decision, state, args.json)
    return EXIT_OK


def _check_fault_subject(cfg: LoadedConfig, f: Fault) -> None:
    if f.db_site is not None:
        if f.db_site not in {s.id for s in cfg.site.db_sites}:
            raise UsageError(f"{f}: unknown database site {f.db_site!r}")
        return
    if f.host not in cfg.site.host_ids:
        raise UsageError(f"{f}: unknown host {f.host!r} (hosts: {', '.join(cfg.site.host_ids)})")
    host = cfg.site.host(f.component)
    if f.kind is FaultKind.SERVICE_DOWN and host.service(f.subject) is None:
        raise UsageError(f"{f}: {f.host} has no service {f.subject!r}")
    if f.kind in (FaultKind.SPAN_ALARM, FaultKind.DCHANNEL_DOWN) and host.board.span(int(f.subject)) is None:
        raise UsageError(f"{f}: {f.host} has no span {f.subject}")


def _operator_plan(cfg: LoadedConfig, state: SiteState, args: argparse.Namespace) -> int:
    why = args.reason or "operator request (dry run)"
    try:
        if args.failover_to:
            plan = build_failover(cfg.site, state, _known(cfg, args.failover_to), why)
        elif args.switchover_to:
            plan = build_switchover(cfg.site, state, _known(cfg, args.switchover_to), args.drain_timeout, why)
        else:
            plan = build_failback(cfg.site, state, args.drain_timeout, why)
    except PlanRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    decision = Decision("operator", plan.action, Disposition.PROPOSE, f"operator: {plan.title}", (), plan)
    _print_decision(decision, state, args.json)
    return EXIT_OK


def _known(cfg: LoadedConfig, host: str) -> str:
    if host not in cfg.site.host_ids:
        raise UsageError(f"unknown host {host!r} (hosts: {', '.join(cfg.site.host_ids)})")
    return host


def _print_decision(d: Decision, state: SiteState, as_json: bool) -> None:
    if as_json:
        print(json.dumps(d.to_dict(), indent=2))
        return
    if d.faults:
        print("Faults:  " + ", ".join(map(str, d.faults)))
    print(f"Mode:    {state.mode.value}")
    print(f"Rule:    {d.rule or '(none)'}")
    print(f"Action:  {d.action.value} ({d.disposition.value}{', approval required' if d.approval_required else ''})")
    print(f"Why:     {d.reason}")
    for note in d.notes:
        print(f"Note:    {note}")
    if d.plan:
        print(f"Plan:    {d.plan.title}")
        for i, step in enumerate(d.plan.steps, 1):
            print(f"  {i:>2}. {step.describe()}")
