"""`ccfo lab up|down|status|inject|calls`: start the simulated site in the background and poke it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


class LabCliError(Exception):
    pass


def _state(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.dir) / "lab.json"
    if not path.exists():
        raise LabCliError(f"no lab running in {args.dir} (start one with: ccfo lab up --dir {args.dir})")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def _admin(args: argparse.Namespace) -> dict[str, str]:
    token = (Path(args.dir) / "config" / "secrets" / "admin.token").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def _post(args: argparse.Namespace, path: str, body: dict[str, Any]) -> Any:
    st = _state(args)
    try:
        r = httpx.post(st["control"] + path, json=body, headers=_admin(args), timeout=30)
    except httpx.HTTPError as exc:
        raise LabCliError(f"lab control API not answering: {exc}") from exc
    if r.status_code != 200:
        raise LabCliError(r.json().get("detail", r.text) if r.headers.get("content-type", "").startswith(
            "application/json") else r.text)
    return r.json()


def cmd_up(args: argparse.Namespace) -> int:
    if getattr(args, "before_migration", False) and not args.servers:
        raise LabCliError("--before-migration needs --servers: it is the managed servers' state before the migration")
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    if (root / "lab.json").exists():
        st = json.loads((root / "lab.json").read_text())
        try:
            os.kill(int(st["pid"]), 0)
            raise LabCliError(f"a lab is already running in {args.dir} (pid {st['pid']}); ccfo lab down first")
        except ProcessLookupError:
            (root / "lab.json").unlink()
    (root / "lab.error").unlink(missing_ok=True)
    log = open(root / "supervisor.log", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([sys.executable, "-m", "lab.supervisor", "--dir", str(root.resolve()), "--net", args.net,
                             "--controller-listen", args.controller_listen, "--control-port", str(args.control_port),
                             "--telephony", getattr(args, "telephony", "dahdi"),
                             "--controllers", str(getattr(args, "controllers", 1)),
                             *(["--servers"] if args.servers else []),
                             *(["--before-migration"] if getattr(args, "before_migration", False) else [])],
                            cwd=REPO, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if (root / "lab.json").exists():
            st = json.loads((root / "lab.json").read_text())
            _print_summary(st)
            return 0
        if proc.poll() is not None:
            err = (root / "lab.error").read_text() if (root / "lab.error").exists() else "see supervisor.log"
            raise LabCliError(f"the lab did not start: {err} ({root / 'supervisor.log'})")
        time.sleep(0.1)
    proc.terminate()
    raise LabCliError(f"the lab did not start within {args.timeout:g} s; see {root / 'supervisor.log'}")


def _print_summary(st: dict[str, Any]) -> None:
    print(f"lab up (supervisor pid {st['pid']})")
    print(f"  dashboard   {st['dashboard']}")
    print(f"  API         {st['api']}")
    controllers = st.get("controllers", [])
    if len(controllers) > 1:
        for c in controllers:
            print(f"  {c['name']:<11} {c['url']}  pid {c['pid']}  (controller member)")
        for e in st.get("etcd", []):
            print(f"  {e['name']:<11} {e['client_url']}  pid {e['pid']}  (etcd member)")
        print(f"  CCFO_URL    {','.join(c['url'] for c in controllers)}  (the CLI sends a change to the leader)")
    print(f"  tokens      {', '.join(f'{r}: {p}' for r, p in st['tokens'].items())}")
    for host, h in st["hosts"].items():
        print(f"  {host:<11} {h['address']}  agent {h['agent']}  AMI {h['ami']}  AMI control {h['ami_control']}")
    print(f"  databases   {', '.join(f'{n} {a}' for n, a in st['databases'].items())}")
    print(f"  PDU         {st['pdu']} (SNMP v2c)")
    if "front" in st:
        print(f"  SIP front   {st['front']['sip']} (Kamailio; every lab call enters here)  RPC "
              f"{st['front']['rpc_socket']}")
    print(f"  config      {st['config']}   logs in {Path(st['config']).parent / 'logs'}")


def cmd_down(args: argparse.Namespace) -> int:
    st = _state(args)
    pid = int(st["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        (Path(args.dir) / "lab.json").unlink(missing_ok=True)
        print("lab was not running")
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # `ccfo demo` started the supervisor itself: reap it, or its zombie would look alive to kill(pid, 0)
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                print("lab down")
                return 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("lab down")
            return 0
        time.sleep(0.1)
    raise LabCliError(f"the lab supervisor (pid {pid}) did not stop within 60 s")


def cmd_status(args: argparse.Namespace) -> int:
    st = _state(args)
    with contextlib.suppress(httpx.HTTPError, ValueError, OSError):  # live (pids change); else the state file
        r = httpx.get(st["control"] + "/lab", headers=_admin(args), timeout=5)
        if r.status_code == 200:
            st = {"pid": st["pid"], "control": st["control"], **r.json()}
    if getattr(args, "json", False):
        print(json.dumps(st, indent=2))
    else:
        _print_summary(st)
    return 0


def cmd_inject(args: argparse.Namespace) -> int:
    print(_post(args, "/inject", {"target": args.target, "what": args.what, "args": args.args})["done"])
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    out = _post(args, "/calls", {"host": args.host, "ivr": args.ivr, "agent": args.agent})
    print(f"{out['host']}: {out['ivr']} IVR call(s), {out['agent']} agent call(s)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="the simulated site: up, down, status, inject faults, set up calls")
    lsub = p.add_subparsers(dest="lab_cmd", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", default=".lab")

    q = lsub.add_parser("up", help="start the lab site in the background")
    common(q)
    q.add_argument("--net", default="127.0.1", help="loopback network for the hosts (NET.1, NET.2, ...)")
    q.add_argument("--controller-listen", default="127.0.0.1:8080")
    q.add_argument("--control-port", type=int, default=8090)
    q.add_argument("--timeout", type=float, default=120.0)
    q.add_argument("--telephony", choices=["dahdi", "sip"], default="dahdi",
                   help="the hosts' lines: DAHDI E1 spans, or SIP trunks of the same channels")
    q.add_argument("--servers", action="store_true",
                   help="also start the managed servers (site.yaml servers) as agents per data center")
    q.add_argument("--before-migration", action="store_true",
                   help="with --servers: the site as it was before the data-center migration (the migration "
                        "checklist's starting point)")
    q.add_argument("--controllers", type=int, choices=[1, 3], default=1,
                   help="1: one controller with its SQLite journal (the default); 3: a controller cluster "
                        "(ctl-a, ctl-b, ctl-c on the controller's port and the next two) on a 3-member etcd "
                        "(docs/ha.md)")
    q.set_defaults(func=cmd_up)
    q = lsub.add_parser("down", help="stop every process of the lab")
    common(q)
    q.set_defaults(func=cmd_down)
    q = lsub.add_parser("status", help="where everything is")
    common(q)
    q.add_argument("--json", action="store_true", help="print it as JSON (controllers, etcd members, pids, ...)")
    q.set_defaults(func=cmd_status)
    q = lsub.add_parser("inject", help="HOST span N red|yellow|blue|clear, HOST board down|up, "
                                       "HOST trunk NAME down|up (a SIP trunk's reachability), "
                                       "HOST service NAME crash|hang|resume, HOST asterisk hang|resume, "
                                       "HOST unreachable|reachable, db SITE down|up, "
                                       "front down|up (the SIP front, Kamailio), "
                                       "controller NAME kill|start|pause|resume, etcd NAME kill|start "
                                       "(a lab with --controllers 3)")
    common(q)
    q.add_argument("target", help="a host, db, or front")
    q.add_argument("what")
    q.add_argument("args", nargs="*")
    q.set_defaults(func=cmd_inject)
    q = lsub.add_parser("calls", help="set the calls up on a host: --ivr N --agent M")
    common(q)
    q.add_argument("host")
    q.add_argument("--ivr", type=int, default=0)
    q.add_argument("--agent", type=int, default=0)
    q.set_defaults(func=cmd_calls)
    add_campaign_parser(lsub)


def cmd_campaign(args: argparse.Namespace) -> int:
    from lab.campaign import Settings, main

    if args.run is not None and args.run < 0:
        raise LabCliError("--run must be >= 0")
    from lab.campaign_plan import HA_WEIGHTS, PARTITION_WEIGHT, WEIGHTS
    known = {**WEIGHTS, **HA_WEIGHTS, "partition": PARTITION_WEIGHT}
    if args.controllers not in (1, 3):
        raise LabCliError("--controllers must be 1 or 3")
    if args.partitions and args.controllers != 3:
        raise LabCliError("--partitions needs --controllers 3")
    weights: dict[str, float] = {}
    for item in args.weight:
        kind, sep, value = item.partition("=")
        try:
            weights[kind] = float(value)
        except ValueError:
            weights[kind] = -1.0
        if not sep or kind not in known or weights[kind] < 0:
            raise LabCliError(f"--weight {item}: expected KIND=W with W >= 0, KIND one of {', '.join(known)}")
    net = args.net or ("10.79.7" if args.partitions else "127.0.7")  # namespaces need a net outside 127/8
    s = Settings(runs=args.runs, seed=args.seed, only_run=args.run, root=Path(args.dir), net=net,
                 controller_listen=args.controller_listen or f"{net}.100:8080", load_cps=args.load_cps,
                 sip_load=args.load_cps > 0, weights=weights, controllers=args.controllers,
                 partitions=args.partitions)
    return main(s, Path(args.report) if args.report else None, as_json=args.json)


def add_campaign_parser(lsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    q = lsub.add_parser("campaign", help="the randomized fault campaign: N runs of random faults and operator "
                                         "actions on a lab of its own, judged by an independent checker")
    q.add_argument("--runs", type=int, default=200)
    q.add_argument("--seed", default="1", help="the campaign's seed; run I draws from random.Random('SEED:I')")
    q.add_argument("--run", type=int, default=None, help="replay only run I of this seed")
    q.add_argument("--dir", default=".lab-campaign", help="where the campaign's lab lives")
    q.add_argument("--report", default=None, metavar="PATH",
                   help="write the full report (figures, runs, violations) here, as JSON")
    q.add_argument("--json", action="store_true", help="print the full report as JSON instead of the summary")
    q.add_argument("--net", default=None, help="network of the campaign's lab (NET.1, NET.2, ...): loopback "
                                                "127.0.7 by default, 10.79.7 with --partitions (namespaces)")
    q.add_argument("--controller-listen", default=None, help="default NET.100:8080")
    q.add_argument("--load-cps", type=float, default=2.0, help="steady SIPp load, calls/s (0: none)")
    q.add_argument("--weight", action="append", default=[], metavar="KIND=W",
                   help="override one event kind's weight (e.g. service_hang=6: a campaign heavy on hangs); "
                        "repeatable; another mix draws other runs from the same seed")
    q.add_argument("--controllers", type=int, default=1,
                   help="1 (default): one controller; 3: a controller cluster on a 3-member etcd, with the cluster's "
                        "events (leader kill -9 and SIGSTOP, member and etcd member kills) and invariants")
    q.add_argument("--partitions", action="store_true",
                   help="with --controllers 3: the lab in network namespaces (root), and link cuts of a controller, "
                        "an etcd member or an IPC host among the events")
    q.set_defaults(func=cmd_campaign)
