"""`ccfo checklist ...`: list, check, start, status, runs, done, fail, skip, retry, confirm, rollback, abort, report.

Thin: every command but `check` talks to the controller's API (controller.client.call: CCFO_URL, CCFO_TOKEN
or CCFO_TOKEN_FILE); `check` validates config/checklists offline. Step commands act on the open run unless
`--run` names another. Exit codes: 0 ok; 1 refused (HTTP 409) or a run that failed; 2 usage, auth,
validation or config error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError, Problem
from ccfo.domain.site import Site
from controller import client, offline
from controller.checklists.loader import load_checklists
from controller.checklists.model import Checklist
from controller.checklists.ports import drill_names
from controller.checklists.views import fmt_delta, fmt_duration

MARK = {"done": "[done]", "skipped": "[skip]", "running": "[ .. ]", "failed": "[FAIL]", "blocked": "[blkd]",
        "ready": "[redy]", "awaiting_confirmation": "[conf]", "waiting": "[    ]", "rolling_back": "[rbk.]",
        "rolled_back": "[rbkd]"}


def _conn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="controller API (default $CCFO_URL, a lab running in ./.lab, or http://127.0.0.1:8080)")
    p.add_argument("--token-file", default=None, help="API token file (default $CCFO_TOKEN_FILE, or $CCFO_TOKEN)")
    p.add_argument("--json", action="store_true")


def _run_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="current", help="the run (default: the open run)")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    top = sub.add_parser("checklist", help="upgrade and migration checklists: runs, ticks, timings, reports")
    cs = top.add_subparsers(dest="checklist_cmd", required=True, metavar="SUBCOMMAND")

    p = cs.add_parser("list", help="the checklists the controller knows (and any invalid file)")
    _conn(p)
    p.set_defaults(func=cmd_list)

    p = cs.add_parser("check", help="validate config/checklists offline (exit 0 valid, 2 invalid)")
    p.add_argument("--config", default=os.environ.get("CCFO_CONFIG", "config"))
    p.set_defaults(func=cmd_check)

    p = cs.add_parser("start", help="start a run of checklist NAME")
    _conn(p)
    p.add_argument("name")
    p.add_argument("--rehearsal", action="store_true", help="a rehearsal: its real durations plan later runs")
    p.add_argument("--plan-from", default="auto", metavar="RUN|auto|none",
                   help="planned durations from this rehearsal (default: the latest rehearsal, if any)")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_start)

    p = cs.add_parser("runs", help="every run, newest first")
    _conn(p)
    p.set_defaults(func=cmd_runs)

    p = cs.add_parser("status", help="planned vs. real per step and phase, critical path, projected finish")
    _conn(p)
    p.add_argument("run", nargs="?", default="current")
    p.set_defaults(func=cmd_status)

    for op, helptext, text_arg in (("done", "mark a manual step done", "--note"),
                                   ("fail", "mark a manual step failed (blocks its dependants)", "--note"),
                                   ("skip", "skip a step (releases its dependants)", "--reason"),
                                   ("retry", "retry a failed or rolled-back step, or those of a phase", "--reason"),
                                   ("confirm", "confirm an action or drill step: it runs now", "--note")):
        p = cs.add_parser(op, help=helptext)
        _conn(p)
        _run_opt(p)
        p.add_argument("step", metavar="STEP" if op != "retry" else "STEP|PHASE")
        p.add_argument(text_arg, dest="text", required=op in ("fail", "skip", "retry"), default="")
        p.set_defaults(func=cmd_step, op=op)

    p = cs.add_parser("rollback", help="run the rollbacks of the phase's completed steps, in reverse order")
    _conn(p)
    _run_opt(p)
    p.add_argument("phase")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_rollback)

    p = cs.add_parser("abort", help="close a run that will not be finished")
    _conn(p)
    p.add_argument("run", nargs="?", default="current")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_abort)

    p = cs.add_parser("report", help="the run's report for management")
    _conn(p)
    p.add_argument("run", nargs="?", default="latest")
    p.add_argument("--format", choices=["md", "html", "json"], default="md")
    p.add_argument("--output", "-o", metavar="FILE", help="write it here instead of stdout")
    p.set_defaults(func=cmd_report)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _t(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%a %H:%M", time.localtime(ts))


def cmd_list(args: argparse.Namespace) -> int:
    data = client.call(args, "GET", "/api/v1/checklists")
    lines = [f"{c['name']:<24} {c['phases']} phases, {c['steps']} steps ({c['automatic_steps']} automatic), "
             f"planned {fmt_duration(c['planned_s'])}: {c['title']}" for c in data["checklists"]]
    lines += [f"INVALID {p}" for p in data["problems"]]
    _out(args, data, "\n".join(lines) or "no checklists (put them in CONFIG/checklists/*.yaml)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    found, problems = _checklists(args.config, cfg.site)
    for p in problems:
        print(p, file=sys.stderr)
    for c in found.values():
        print(f"{c.name}: {len(c.phases)} phases, {len(c.steps)} steps, planned {fmt_duration(c.planned_total_s())}")
    return 2 if problems else 0


def _checklists(config: str, site: Site) -> tuple[dict[str, Checklist], list[Problem]]:
    return load_checklists(Path(config) / "checklists", site, drill_names(Path(config)),
                           display_dir=f"{str(config).rstrip('/')}/checklists")


def cmd_check_config(args: argparse.Namespace) -> int:
    """`ccfo check-config`: the site config (controller.offline), then the runbooks in CONFIG/checklists against
    it: a checklist step naming an unknown host, server, service, job or switch file is a config error too."""
    try:
        cfg = offline.load(args)
    except ConfigError:
        return offline.cmd_check_config(args)  # prints the site config's problems
    found, problems = _checklists(args.config, cfg.site)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s) in {args.config}", file=sys.stderr)
        return offline.EXIT_USAGE
    rc = offline.cmd_check_config(args)
    if rc == offline.EXIT_OK and found:
        print("checklists OK: " + ", ".join(f"{c.name} ({len(c.steps)} steps)" for c in found.values()))
    return rc


def cmd_start(args: argparse.Namespace) -> int:
    data = client.call(args, "POST", f"/api/v1/checklists/{args.name}/runs",
                       {"reason": args.reason, "rehearsal": args.rehearsal, "plan_from": args.plan_from})
    _out(args, data, f"run {data['id']} started" + (" (rehearsal)" if data["rehearsal"] else "")
         + (f"; planned durations from rehearsal {data['planned_from']}" if data["planned_from"] else "")
         + "\n" + status_text(data))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    data = client.call(args, "GET", "/api/v1/checklist-runs")
    lines = [f"{r['id']:<26} {r['status']:<22} {'rehearsal' if r['rehearsal'] else 'real':<9} started "
             f"{_t(r['started'])} by {r['started_by']}" for r in data["runs"]]
    _out(args, data, "\n".join(lines) or "no runs")
    return 0


def status_text(s: dict[str, Any]) -> str:
    lines = [f"{s['id']} ({s['title']}): {s['status'].replace('_', ' ').upper()}"
             f"{'  REHEARSAL' if s['rehearsal'] else ''}",
             f"  started {_t(s['started'])} by {s['started_by']}; planned durations from "
             + (f"rehearsal {s['planned_from']}" if s["planned_from"] else "the checklist"),
             f"  planned finish {_t(s['planned_finish'])}; {'finished' if s['ended'] else 'projected'} "
             f"{_t(s['ended'] or s['projected_finish'])} ({fmt_delta(s['slip_s'])})",
             f"  critical path: {' -> '.join(s['critical_path'])}"]
    if s["maintenance"]:
        lines.append(f"  site in maintenance mode for phase {s['maintenance']['phase']} "
                     f"(restores {s['maintenance']['previous_mode']})")
    for p in s["phases"]:
        real = f", real {fmt_duration(p['real_s'])}" if p["real_s"] is not None else ""
        lines.append(f"PHASE {p['id']} [{p['state']}] planned {_t(p['planned_start'])} "
                     f"{fmt_duration(p['planned_s'])}{real}: {p['title']}")
        for x in p["steps"]:
            dur = fmt_duration(x["real_s"] if x["real_s"] is not None else x["elapsed_s"])
            extra = (f" blocked by {', '.join(x['blocked_by'])}" if x["blocked_by"] else "") + (
                f" -- waiting for {x['awaiting']}" if x["awaiting"] else "") + (f" -- {x['note']}" if x["note"] else "")
            lines.append(f"  {MARK.get(x['state'], x['state'])}{'*' if x['critical'] else ' '}{x['id']:<26} "
                         f"{x['kind']:<9} {x['owner']:<10} plan {fmt_duration(x['planned_s']):>7} real {dur:>7}"
                         f"{extra}")
    lines.append(s["line"])
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    data = client.call(args, "GET", f"/api/v1/checklist-runs/{args.run}")
    _out(args, data, status_text(data))
    return 1 if data["status"] in ("blocked", "aborted") else 0


def cmd_step(args: argparse.Namespace) -> int:
    body = {"reason": args.text} if args.op in ("skip", "retry") else {"note": args.text}
    data = client.call(args, "POST", f"/api/v1/checklist-runs/{args.run}/steps/{args.step}/{args.op}", body)
    _out(args, data, data["line"])
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    data = client.call(args, "POST", f"/api/v1/checklist-runs/{args.run}/phases/{args.phase}/rollback",
                       {"reason": args.reason})
    _out(args, data, data["line"])
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    data = client.call(args, "POST", f"/api/v1/checklist-runs/{args.run}/abort", {"reason": args.reason})
    _out(args, data, data["line"])
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    data = client.call(args, "GET", f"/api/v1/checklist-runs/{args.run}/report",
                       params={"format": args.format, "envelope": "true"})
    if args.output:
        Path(args.output).write_text(data["content"], encoding="utf-8")
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(data["content"])
    return 0
