"""`ccfo demo`: the main job, end to end on the lab site.

Starts the lab (two simulated IPC hosts with their Asterisk, services and agents, the database sites,
the PDU and the controller), then runs a disaster drill on it (`primary-cti-crash` by default): SIPp
verification calls in the steady state, the primary's CTI killed, the controller's proposal approved as
the operator on duty, the failover followed step by step, calls verified on the standby, and the way
back (failback). It prints the drill's report and journal and leaves the lab and its dashboard running
(`--down`: stops it at the end, as tests/test_demo.py does; `--net`/`--controller-listen` put it on other
loopback addresses). `--offline` walks the offline commands instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from controller import offline


def add_parser(sub: argparse._SubParsersAction, ccfo: Callable[[list[str]], int]) -> None:  # type: ignore[type-arg]
    """`ccfo demo`; `ccfo` is the command line's entry point (controller.cli.main), which the demo runs."""
    p = sub.add_parser("demo", help="start the lab site and run a disaster drill on it (primary CTI crash)")
    p.add_argument("--config", default="config")
    p.add_argument("--dir", default=".lab", help="lab directory")
    p.add_argument("--offline", action="store_true", help="walk the offline commands only (no lab)")
    p.add_argument("--drill", default="primary-cti-crash", help="the drill scenario to run on the lab")
    p.add_argument("--net", default="127.0.1", help="the lab's loopback network (NET.1, NET.2, ...)")
    p.add_argument("--controller-listen", default="127.0.0.1:8080", help="the lab controller's HOST:PORT")
    p.add_argument("--down", action="store_true", help="stop the lab at the end (default: leave it running)")
    p.set_defaults(func=run, ccfo_main=ccfo)


def _section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(args: argparse.Namespace) -> int:
    return run_offline(args) if args.offline else run_lab(args)


def _ccfo(args: argparse.Namespace, argv: list[str]) -> int:
    print("$ ccfo " + " ".join(argv), flush=True)
    return int(args.ccfo_main(argv))


class Demo:
    def __init__(self, lab_dir: Path) -> None:
        state = json.loads((lab_dir / "lab.json").read_text())
        secrets = lab_dir / "config" / "secrets"
        self.api = state["api"].removesuffix("/api/v1")
        self.dashboard = state["dashboard"]
        self.viewer = {"Authorization": "Bearer " + (secrets / "viewer.token").read_text().strip()}
        self.operator = {"Authorization": "Bearer " + (secrets / "operator.token").read_text().strip()}
        self.operator_file = secrets / "operator.token"

    def get(self, path: str, **params: Any) -> Any:
        return httpx.get(self.api + path, headers=self.viewer, params=params, timeout=10).json()

    def wait(self, what: str, predicate: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"demo: {what} did not happen within {timeout:g} s")


def run_lab(args: argparse.Namespace) -> int:
    lab_dir = Path(args.dir)
    if (lab_dir / "lab.json").exists():
        _section("A lab is already running here: stopping it first")
        _ccfo(args, ["lab", "down", "--dir", args.dir])
    _section("Start the lab site: two IPC hosts, their Asterisk (lab AMI), services, agents, DBs, PDU, controller")
    code = _ccfo(args, ["lab", "up", "--dir", args.dir, "--net", args.net,
                        "--controller-listen", args.controller_listen])
    if code:
        return code
    try:
        return _drill(args, lab_dir)
    finally:
        if args.down:
            _section("Stop the lab")
            _ccfo(args, ["lab", "down", "--dir", args.dir])


def _drill(args: argparse.Namespace, lab_dir: Path) -> int:
    demo = Demo(lab_dir)
    conn = ["--url", demo.api, "--token-file", str(demo.operator_file)]
    demo.wait("both agents reporting", lambda: all(h["reachable"] for h in demo.get("/api/v1/status")["hosts"]
                                                   .values()), 30)
    _section("The site in normal operation")
    _ccfo(args, ["status", *conn])
    _section(f"Disaster drill {args.drill}: what it will do (computed offline from the site's rules)")
    _ccfo(args, ["drill", "run", args.drill, "--config", str(lab_dir / "config"), "--dry-run"])
    _section("Run the drill: steady state with SIPp calls, fault, decision, approval, failover, calls, way back")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(asctime)s %(message)s", "%H:%M:%S"))
    drills_log = logging.getLogger("ccfo.drills")
    drills_log.addHandler(handler)
    drills_log.setLevel(logging.INFO)
    try:
        code = _ccfo(args, ["drill", "run", args.drill, "--config", str(lab_dir / "config"),
                      "--reports", str(lab_dir / "reports")])
    finally:
        drills_log.removeHandler(handler)
    _section("The site after the drill and its way back")
    _ccfo(args, ["status", *conn])
    _section("The journal of the drill's failover")
    plans = [p for p in demo.get("/api/v1/plans")["plans"] if p.get("action") == "failover"]
    if plans:
        _ccfo(args, ["journal", *conn, "--plan", plans[0]["id"], "--limit", "60"])
    _section("Drill history")
    _ccfo(args, ["drill", "history", *conn])
    print(f"\nDashboard: {demo.dashboard}  (log in with the token in {demo.operator_file})")
    print(f"Drill reports: {lab_dir / 'reports'}")
    if not args.down:
        print(f"The lab keeps running. Try: .venv/bin/ccfo lab inject --dir {args.dir} ipc-a span 1 red")
        print(f"Stop it with: .venv/bin/ccfo lab down --dir {args.dir}")
    return code


def run_offline(args: argparse.Namespace) -> int:
    steps: list[tuple[str, list[str]]] = [
        ("Validate the site config", ["check-config"]),
        ("Capacity: 10 agent calls up, normal operation", ["capacity", "--agent-calls", "10"]),
        ("Capacity: 10 agent calls up, primary down",
         ["capacity", "--agent-calls", "10", "--scenario", "primary-down"]),
        ("Rule 1: primary span alarm", ["plan", "ipc-a:span:1=alarm"]),
        ("Rule 2: primary CTI crash (supervised: an operator approves)", ["plan", "ipc-a:service:cti=down"]),
        ("Rule 3: standby fault", ["plan", "ipc-b:service:kcxp=down"]),
        ("Rule 4: database site down", ["plan", "db:shenzhen=down"]),
        ("Both hosts faulty: no safe target", ["plan", "ipc-a:service:ivr=down", "ipc-b:board=down"]),
        ("Blocking: 30 channels, 12 E IVR + 6 E agent", ["capacity", "blocking", "--channels", "30",
                                                         "--ivr-erlangs", "12", "--agent-erlangs", "6"]),
    ]
    worst = 0
    for title, argv in steps:
        _section(title)
        extra = ["--config", args.config] if argv[:2] != ["capacity", "blocking"] else []
        code = _ccfo(args, [*argv[:1], *extra, *argv[1:]])
        worst = max(worst, code if code != offline.EXIT_REFUSED else 0)
    return worst
