"""`ccfo drill list|run|history|schedules`: disaster drills from the command line.

`run` drives the drill from this process: it talks to the controller's API (CCFO_URL, or the config's
controller URL; an operator token from --token-file, CCFO_TOKEN, CCFO_TOKEN_FILE, or in a lab
CONFIG/secrets/operator.token), injects faults through the lab's control API (the lab directory: --lab,
else the config directory's parent) or a real site's agents, and runs SIPp for the calls. Without --config
(and $CCFO_CONFIG) a lab running in ./.lab is used, else ./config; with neither, one line says what to
pass (lab.running). Exit codes:
0 every check passed; 1 the drill failed, was skipped, or could not start; 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ccfo.config.loader import LoadedConfig, load_config
from drills import dryrun, report
from drills.model import find, library, load_scenario
from lab.running import NO_LAB_HINT, default_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class NoConfig(Exception):
    """No config directory given and none to be found (the message says what to pass)."""


def _resolve(args: argparse.Namespace, need: bool = True) -> None:
    """Fill in args.config: --config, $CCFO_CONFIG, a running lab's, or ./config (noted on stderr)."""
    args.config, note = default_config(args.config)
    if note == NO_LAB_HINT:
        if need:
            raise NoConfig(note)
    elif note:
        print(f"ccfo drill: {note}", file=sys.stderr)


def _config(args: argparse.Namespace) -> LoadedConfig:
    return load_config(args.config)


def _extra(args: argparse.Namespace) -> list[Path]:
    return [Path(args.config) / "drills", *(Path(d) for d in args.scenarios or [])]


def _url(args: argparse.Namespace, cfg: LoadedConfig | None) -> str:
    if args.url or os.environ.get("CCFO_URL"):
        return str(args.url or os.environ["CCFO_URL"])
    if cfg is not None:
        ctl = cfg.site_model.controller
        return ctl.url or f"http://{ctl.listen}"
    return "http://127.0.0.1:8080"


def _token(args: argparse.Namespace) -> str:
    from ccfo.platform.auth import TokenFileError, read_secret
    if args.token_file:
        return read_secret(Path(args.token_file))
    if os.environ.get("CCFO_TOKEN"):
        return os.environ["CCFO_TOKEN"]
    if os.environ.get("CCFO_TOKEN_FILE"):
        return read_secret(Path(os.environ["CCFO_TOKEN_FILE"]))
    lab = Path(args.config) / "secrets" / "operator.token"
    if lab.exists():
        return read_secret(lab)
    raise TokenFileError("no token: pass --token-file, or set CCFO_TOKEN or CCFO_TOKEN_FILE")


def _resolving(need: bool = True) -> Any:
    """Wrap a command: resolve its config first; a missing config is one line on stderr and exit 2."""
    def wrap(func: Any) -> Any:
        def run(args: argparse.Namespace) -> int:
            try:
                _resolve(args, need)
            except NoConfig as exc:
                print(f"ccfo drill {args.drill_cmd}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            return int(func(args))
        run.__name__ = func.__name__
        return run
    return wrap


@_resolving(need=False)
def cmd_list(args: argparse.Namespace) -> int:
    from ccfo.config.yamlpos import ConfigError
    cfg = _config(args) if Path(args.config, "site.yaml").exists() else None
    rows = []
    for name, path in library(_extra(args)).items():
        try:
            s = load_scenario(path, cfg)
            rows.append({"name": name, "target": s.target, "fault": s.fault.describe(), "valid": True,
                         "description": s.description.strip().splitlines()[0] if s.description.strip() else ""})
        except ConfigError as exc:
            rows.append({"name": name, "valid": False, "problems": [str(p) for p in exc.problems]})
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        if r["valid"]:
            print(f"{r['name']:<28} {r['target']:<6} {r['fault']}")
        else:
            print(f"{r['name']:<28} INVALID: {'; '.join(r['problems'])}")
    return EXIT_OK if all(r["valid"] for r in rows) else EXIT_USAGE


@_resolving()
def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scenario = load_scenario(find(args.name, _extra(args)), cfg)
    if args.dry_run:
        print(dryrun.text(scenario, cfg))
        return EXIT_OK
    try:
        doc = asyncio.run(_run(args, cfg, scenario))
    except Exception as exc:
        from drills.target import ControllerError, TargetError
        if not isinstance(exc, TargetError | ControllerError | OSError):
            raise
        print(f"ccfo drill run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(report.summary_line(doc))
        for e in doc["expectations"]:
            if e["status"] != "met":
                print(f"  {e['status']}: {e['name']}: {e.get('detail', '')}")
        for kind, path in (doc.get("files") or {}).items():
            print(f"  report ({kind}): {path}")
    return EXIT_OK if doc["status"] == "passed" else EXIT_FAILED


async def _run(args: argparse.Namespace, cfg: LoadedConfig, scenario: Any) -> dict[str, Any]:
    from ccfo.clients.agent_http import MultiTokenClient, agent_tokens
    from drills.runner import make_runner
    from drills.target import ApiController, pdu_for

    controller = ApiController(_url(args, cfg), _token(args))
    agents = MultiTokenClient(cfg, agent_tokens(cfg))
    who = f"ccfo drill run ({os.environ.get('USER') or 'operator'})"
    pdu = pdu_for(cfg)
    try:
        runner = make_runner(scenario, cfg, controller, agents, pdu, who=who,
                             lab_dir=Path(args.lab) if args.lab else None,
                             reports_dir=Path(args.reports))
        try:
            return await runner.run()
        finally:
            await runner.target.aclose()
    finally:
        await controller.aclose()
        await agents.aclose()
        if pdu is not None:
            await pdu.aclose()  # its SNMP engine's UDP socket


def _get(args: argparse.Namespace, path: str, params: dict[str, Any] | None = None) -> Any:
    import httpx

    from ccfo.clients.api import ApiError
    cfg = _config(args) if Path(args.config, "site.yaml").exists() else None
    url = _url(args, cfg).rstrip("/")
    try:
        r = httpx.get(url + path, params=params, timeout=30, headers={"Authorization": f"Bearer {_token(args)}"})
    except httpx.HTTPError as exc:
        raise ApiError(1, f"cannot reach the controller at {url}: {exc}") from exc
    if r.status_code >= 400:
        raise ApiError(2 if r.status_code in (401, 403, 404, 422) else 1, f"HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


@_resolving(need=False)
def cmd_history(args: argparse.Namespace) -> int:
    data = _get(args, "/api/v1/drills/history", {"limit": args.limit})
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for e in reversed(data["entries"]):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        fig = (e.get("data") or {}).get("figures") or {}
        extra = (f" detect {fig.get('time_to_detect_s')} s, recover {fig.get('time_to_recover_s')} s, calls failed "
                 f"{fig.get('calls_failed')}/{fig.get('calls_attempted')}") if fig else ""
        print(f"{e['id']:>6} {when} {e['kind']:<15} {e.get('status') or '':<9} {e.get('reason') or ''}{extra}")
    return EXIT_OK


@_resolving(need=False)
def cmd_schedules(args: argparse.Namespace) -> int:
    data = _get(args, "/api/v1/drills/schedules")
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for s in data["schedules"]:
        print(f"{s['id']:<20} {s['drill']:<28} {s['cron'] or s['at']:<22} {s['source']:<7} "
              f"next {s['next_run'] or '-'}{'' if s['enabled'] else ' (disabled)'}")
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("drill", help="disaster drills: list, run (or --dry-run), history, schedules")
    dsub = p.add_subparsers(dest="drill_cmd", required=True)

    def common(q: argparse.ArgumentParser, conn: bool = True) -> None:
        q.add_argument("--config", default=None,
                       help="config directory (default: $CCFO_CONFIG, a lab running in ./.lab, else ./config)")
        q.add_argument("--json", action="store_true")
        if conn:
            q.add_argument("--url", help="controller API (default $CCFO_URL, else the config's controller URL)")
            q.add_argument("--token-file", help="an operator's API token (default $CCFO_TOKEN(_FILE), or the lab's)")

    q = dsub.add_parser("list", help="the drill library (and CONFIG/drills/*.yaml)")
    common(q, conn=False)
    q.add_argument("--scenarios", action="append", metavar="DIR", help="more scenario files")
    q.set_defaults(func=cmd_list)
    q = dsub.add_parser("run", help="run a drill (exit 0 only if every check passed)")
    common(q)
    q.add_argument("name", help="a drill's name, or a path to a scenario file")
    q.add_argument("--dry-run", action="store_true", help="print the drill's plan and the expected decision")
    q.add_argument("--lab", help="the lab directory (default: the config directory's parent)")
    q.add_argument("--reports", default="reports/drills", help="where reports go (default reports/drills)")
    q.add_argument("--scenarios", action="append", metavar="DIR", help="more scenario files")
    q.set_defaults(func=cmd_run)
    q = dsub.add_parser("history", help="drill runs and skips from the journal")
    common(q)
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_history)
    q = dsub.add_parser("schedules", help="drill schedules with their next run")
    common(q)
    q.set_defaults(func=cmd_schedules)
