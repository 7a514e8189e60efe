"""Argument parsers of the commands that run or talk to the controller service (see controller.client)."""

from __future__ import annotations

import argparse
import os

from ccfo.domain.state import Mode
from ccfo.platform.auth import Role
from controller import client


def _conn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="controller API (default $CCFO_URL, a lab running in ./.lab, or http://127.0.0.1:8080)")
    p.add_argument("--token-file", default=None, help="API token file (default $CCFO_TOKEN_FILE, or $CCFO_TOKEN)")
    p.add_argument("--json", action="store_true")


def _follow(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="return once the plan has started")
    p.add_argument("--wait-timeout", type=float, default=900.0, metavar="S")


def _confirm(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true",
                   help="run without asking (required without a terminal); the plan is not shown first")
    p.add_argument("--dry-run", action="store_true", help="show the plan the controller would run now, run nothing")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("controller", help="run the controller service (API, dashboard, engine)")
    p.add_argument("--config", default=os.environ.get("CCFO_CONFIG", "config"))
    p.add_argument("--ready-file", help="write {pid, api} here (JSON) once serving")
    p.add_argument("--member", default=os.environ.get("CCFO_MEMBER"),
                   help="this process's name in site.yaml cluster.members (controller HA; env CCFO_MEMBER)")
    p.add_argument("--log-level", default="INFO")

    def run_controller(args: argparse.Namespace) -> int:
        # Imported when it runs: the service loads uvicorn, FastAPI and the whole API, which no other
        # command needs (every `ccfo` call would pay for it).
        from controller.service import cmd_controller
        return cmd_controller(args)
    p.set_defaults(func=run_controller)

    p = sub.add_parser("status", help="site state, hosts, capacity, faults, decision")
    _conn(p)
    p.set_defaults(func=client.cmd_status)

    p = sub.add_parser("failover", help="fail over to HOST now (operator)")
    _conn(p)
    _follow(p)
    p.add_argument("--to", required=True, metavar="HOST")
    p.add_argument("--reason", required=True)
    _confirm(p)
    p.set_defaults(func=client.cmd_failover)

    p = sub.add_parser("switchover", help="planned switchover to HOST, draining calls first")
    _conn(p)
    _follow(p)
    p.add_argument("--to", required=True, metavar="HOST")
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--reason", required=True)
    _confirm(p)
    p.set_defaults(func=client.cmd_switchover)

    p = sub.add_parser("failback", help="back to the normal layout after repair")
    _conn(p)
    _follow(p)
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--reason", required=True)
    _confirm(p)
    p.set_defaults(func=client.cmd_failback)

    p = sub.add_parser("switch", help="run a named switch of the managed servers (switches.yaml), or its inverse")
    _conn(p)
    _follow(p)
    p.add_argument("name", metavar="NAME", help="the switch (`ccfo switches` lists them)")
    p.add_argument("--inverse", action="store_true", help="run the switch's way back")
    p.add_argument("--reason", required=True)
    _confirm(p)
    p.set_defaults(func=client.cmd_switch)

    p = sub.add_parser("switches", help="list the named switches and their steps")
    _conn(p)
    p.set_defaults(func=client.cmd_switches)

    p = sub.add_parser("plans", help="list plans (pending, running, history)")
    _conn(p)
    p.add_argument("--status", help="comma-separated: proposed,running,finished,failed,interrupted,...")
    p.set_defaults(func=client.cmd_plans)

    for op, helptext in (("approve", "approve a proposed plan (it runs at once)"), ("reject", "reject a proposed plan"),
                         ("resume", "resume an interrupted or failed plan"), ("abort", "abort a plan")):
        p = sub.add_parser(op, help=helptext)
        _conn(p)
        _follow(p)
        p.add_argument("id")
        p.add_argument("--reason", required=True)
        p.set_defaults(func=client.cmd_plan_op, op=op)

    p = sub.add_parser("confirm-off", help="confirm a host is powered off (fencing without a PDU)")
    _conn(p)
    p.add_argument("id", help="the plan waiting for the confirmation")
    p.add_argument("--host", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=client.cmd_confirm_off)

    p = sub.add_parser("mode", help="set the mode: automatic, supervised, manual, maintenance (admin)")
    _conn(p)
    p.add_argument("mode", choices=[m.value for m in Mode])
    p.add_argument("--reason", required=True)
    p.set_defaults(func=client.cmd_mode)

    p = sub.add_parser("journal", help="the journal, newest last")
    _conn(p)
    p.add_argument("--kind")
    p.add_argument("--host")
    p.add_argument("--plan")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=client.cmd_journal)

    p = sub.add_parser("token", help="manage API tokens")
    tsub = p.add_subparsers(dest="token_cmd", required=True)
    t = tsub.add_parser("add", help="create a token (printed once) and store its digest")
    t.add_argument("name")
    t.add_argument("--role", required=True, choices=[r.name.lower() for r in Role])
    t.add_argument("--tokens-file", required=True)
    t.add_argument("--host", help="agent tokens: the host it may report for")
    t.add_argument("--expires", help="ISO date-time after which the token is refused")
    t.set_defaults(func=client.cmd_token_add)
