"""The CLI commands that talk to a running controller's API (status, failover, approve, mode, ...).

Connection options come from flags or the environment: CCFO_URL (default: a lab running in ./.lab, else
http://127.0.0.1:8080; a controller cluster's members as a comma-separated list: reads go to the first that
answers, changes to the one whose `GET /leader` answers 200), CCFO_TOKEN or CCFO_TOKEN_FILE (a running
lab's operator token only when the URL is the lab's too, so a lab token never goes to another controller).
Exit codes: 0 ok; 1 refused or failed (HTTP 409, a plan that failed, unreachable controller, a
confirmation answered no); 2 usage, auth or validation error (HTTP 401/403/422, an operator action without a
terminal to confirm on and without --yes).

Operator actions (failover, switchover, failback) first ask the controller for the plan it would run now
(`?dry_run=true`, built from the live state), show its numbered steps and ask "Run these N steps on site
X? [y/N]"; `--yes` skips the question and is required without a terminal; `--dry-run` shows the plan
and stops. With `--json` the steps and the question go to stderr, so stdout stays JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from ccfo.clients.api import ApiError
from ccfo.platform.auth import TokenFileError, add_token, read_secret
from lab.running import RunningLab, running_lab

EXIT_USAGE = 2


class ConfirmationUnavailable(ApiError):
    """An operator action without --yes where no terminal can answer the question (exit 2)."""

    def __init__(self, command: str) -> None:
        super().__init__(EXIT_USAGE, f"no terminal to confirm on: review the plan with `ccfo {command} --dry-run`, "
                                     f"then run it with --yes")


def _lab(args: argparse.Namespace) -> RunningLab | None:
    """A lab running in ./.lab, when neither --url nor $CCFO_URL names a controller."""
    if getattr(args, "url", None) or os.environ.get("CCFO_URL"):
        return None
    return running_lab()


def _token(args: argparse.Namespace, lab: RunningLab | None = None) -> str:
    if getattr(args, "token_file", None):
        return read_secret(__import__("pathlib").Path(args.token_file))
    if os.environ.get("CCFO_TOKEN"):
        return os.environ["CCFO_TOKEN"]
    if os.environ.get("CCFO_TOKEN_FILE"):
        return read_secret(__import__("pathlib").Path(os.environ["CCFO_TOKEN_FILE"]))
    if lab is not None and lab.operator_token.is_file():
        return read_secret(lab.operator_token)
    raise TokenFileError("no token: pass --token-file, or set CCFO_TOKEN or CCFO_TOKEN_FILE")


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
         params: dict[str, Any] | None = None) -> Any:
    lab = _lab(args)
    given = args.url or os.environ.get("CCFO_URL") or (lab.api if lab else "") or "http://127.0.0.1:8080"
    urls = [u.strip().rstrip("/") for u in given.split(",") if u.strip()]
    headers = {"Authorization": f"Bearer {_token(args, lab)}"}
    if method != "GET":  # a retry of this very request gets the first answer, never a second plan
        headers["Idempotency-Key"] = uuid.uuid4().hex
    if len(urls) > 1 and method != "GET":
        urls = [_leader(urls)]
    errors = []
    for url in urls:  # reads: any member answers
        try:
            r = _send(method, url + path, body, params, headers)
            break
        except httpx.HTTPError as exc:
            errors.append(f"{url}: {exc}")
    else:
        raise ApiError(1, f"cannot reach the controller at {'; '.join(errors)}")
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # pydantic validation errors
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
        code = 2 if r.status_code in (401, 403, 404, 413, 422) else 1
        raise ApiError(code, f"HTTP {r.status_code}: {detail}")
    return r.json() if r.content else None


def _leader(urls: list[str]) -> str:
    """The member of a controller cluster that leads now (its unauthenticated `GET /leader` answers 200);
    a list of controllers that are no cluster (no /leader route) gives its first that answers."""
    seen = []
    for url in urls:
        try:
            r = httpx.get(url + "/leader", timeout=5)
        except httpx.HTTPError as exc:
            seen.append(f"{url}: unreachable ({type(exc).__name__})")
            continue
        if r.status_code == 200:
            return url
        if r.status_code == 404:
            return url  # a controller alone
        seen.append(f"{url}: not the leader")
    raise ApiError(1, f"no controller member leads now ({'; '.join(seen)}); try again in a few seconds")


def _send(method: str, url: str, body: dict[str, Any] | None, params: dict[str, Any] | None,
          headers: dict[str, str]) -> httpx.Response:
    """One request; a mutating one whose answer was lost on the wire is sent once more with the same
    Idempotency-Key (the controller answers it as it answered the first)."""
    try:
        return httpx.request(method, url, json=body, params=params, timeout=30, headers=headers)
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
        if "Idempotency-Key" not in headers:
            raise
        return httpx.request(method, url, json=body, params=params, timeout=30, headers=headers)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _status_text(s: dict[str, Any]) -> str:
    lines = [f"site {s['site']}: {s['state'].upper()}  mode {s['mode']}  active host {s['active_host']}  "
             f"database {s['active_db']}"]
    for name, h in s["hosts"].items():
        spans = " ".join(f"span{p['span']}={p['alarm']}{'' if p['dchannel_up'] else '/D-down'}" for p in h["spans"])
        spans += "".join(f" trunk {t['name']}={t['state']}/{t['channels']}ch" for t in h.get("trunks", ()))
        svcs = " ".join(f"{k}={v}" for k, v in sorted(h["services"].items()))
        c = h["capacity"]
        lines.append(f"  {name} ({h['role']}, {h['duty']}{', board isolated' if h['board_isolated'] else ''}) "
                     f"{'reachable' if h['reachable'] else 'UNREACHABLE'} driver={h['driver']} {spans}")
        lines.append(f"     services: {svcs or '-'}")
        lines.append(f"     capacity: C={c['channels']} X={c['ivr_calls']} Y={c['agent_calls']} free={c['free']} "
                     f"fax={c['fax_calls']}/{c['fax_channels']}")
    lines.append(f"  capacity: {s['capacity']['line']}")
    for f in s["faults"]:
        lines.append(f"  fault: {f['fault']}{' (active)' if f['active'] else ' (debouncing)'}")
    if s.get("decision"):
        lines.append(f"  decision: {s['decision']['reason']}")
    if s.get("running_plan"):
        p = s["running_plan"]
        lines.append(f"  running plan {p['id']}: {p['title']} (step {p['next_step'] + 1}/{len(p['steps'])})")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    s = call(args, "GET", "/api/v1/status")
    _out(args, s, _status_text(s))
    return 0


def follow(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    """Show a plan's steps as they finish; exit 0 when it finishes, 1 when it fails."""
    shown = plan.get("next_step", 0)
    if not args.json:
        print(f"plan {plan['id']}: {plan['title']}")
    deadline = time.monotonic() + args.wait_timeout
    while True:
        plan = call(args, "GET", f"/api/v1/plans/{plan['id']}")
        while shown < plan["next_step"] and not args.json:
            print(f"  {shown + 1:>2}. {_step_text(plan['steps'][shown])}")
            shown += 1
        if plan["status"] in ("finished", "failed", "aborted", "rejected"):
            if args.json:
                print(json.dumps(plan, indent=2))
            else:
                print(f"plan {plan['id']} {plan['status']}" + (f": {plan['error']}" if plan.get("error") else ""))
            return 0 if plan["status"] == "finished" else 1
        if time.monotonic() > deadline:
            print(f"still {plan['status']} after {args.wait_timeout:g} s; follow with: ccfo plans", file=sys.stderr)
            return 1
        time.sleep(0.2)


def _step_text(step: dict[str, Any]) -> str:
    if step.get("text"):
        return str(step["text"])
    parts = [step["kind"]] + [f"{k}={step[k]}" for k in ("host", "service", "target") if step.get(k)]
    return " ".join(parts)


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """A plan's title and its numbered steps, as the confirmation shows them."""
    return [f"{plan['title']}:"] + [f"  {i:>2}. {_step_text(step)}" for i, step in enumerate(plan["steps"], 1)]


def confirm(args: argparse.Namespace, preview: dict[str, Any]) -> bool:
    """Show the plan the dry run answered and ask; True to run it."""
    plan = preview["plan"]
    out = sys.stderr if args.json else sys.stdout
    print("\n".join(plan_lines(plan)), file=out, flush=True)
    question = f"Run these {len(plan['steps'])} steps on site {preview['site']}? [y/N] "
    print(question, end="", file=out, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):
        print(file=out)  # end of input (Ctrl-D): the question's line ends here
    return answer.strip().lower() in ("y", "yes")


def _submit(args: argparse.Namespace, path: str, body: dict[str, Any]) -> int:
    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise ConfirmationUnavailable(args.command)
    if args.dry_run or not args.yes:
        preview = call(args, "POST", path, body, params={"dry_run": "true"})
        if args.dry_run:
            _out(args, preview, "\n".join(plan_lines(preview["plan"])) + "\n(dry run: nothing was run)")
            return 0
        if not confirm(args, preview):
            print("not run", file=sys.stderr)
            return 1
    plan = call(args, "POST", path, body)
    return follow(args, plan) if not args.no_wait else (_out(args, plan, f"plan {plan['id']} started") or 0)


def cmd_failover(args: argparse.Namespace) -> int:
    return _submit(args, "/api/v1/failover", {"to": args.to, "reason": args.reason})


def cmd_switchover(args: argparse.Namespace) -> int:
    return _submit(args, "/api/v1/switchover", {"to": args.to, "reason": args.reason,
                                                 "drain_timeout_s": args.drain_timeout})


def cmd_failback(args: argparse.Namespace) -> int:
    return _submit(args, "/api/v1/failback", {"reason": args.reason, "drain_timeout_s": args.drain_timeout})


def cmd_switch(args: argparse.Namespace) -> int:
    """`ccfo switch NAME [--inverse]`: a named switch of the managed servers (switches.yaml) as a plan."""
    return _submit(args, f"/api/v1/switches/{quote(args.name, safe='')}",
                   {"reason": args.reason, "inverse": args.inverse})


def cmd_switches(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/api/v1/switches")
    lines = []
    for s in data["switches"]:
        lines.append(f"{s['id']}: {s['description']} ({len(s['steps'])} steps; --inverse: "
                     f"{s['inverse_description']}, {len(s['inverse'])} steps)")
    _out(args, data, "\n".join(lines) or "no switches (switches.yaml)")
    return 0


def cmd_plans(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/api/v1/plans", params={"status": args.status} if args.status else None)
    lines = [f"{p['id']}  {p['status']:<11} {p['title']}  ({p['source']}, by {p['requested_by']})"
             for p in data["plans"]]
    _out(args, data, "\n".join(lines) or "no plans")
    return 0


def cmd_plan_op(args: argparse.Namespace) -> int:
    plan = call(args, "POST", f"/api/v1/plans/{args.id}/{args.op}", {"reason": args.reason})
    if args.op in ("approve", "resume") and not args.no_wait:
        return follow(args, plan)
    _out(args, plan, f"plan {plan['id']} {plan['status']}")
    return 0


def cmd_mode(args: argparse.Namespace) -> int:
    data = call(args, "PUT", "/api/v1/mode", {"mode": args.mode, "reason": args.reason})
    _out(args, data, f"mode {data['mode']}")
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("kind", args.kind), ("host", args.host), ("plan_id", args.plan),
                                ("limit", args.limit)) if v}
    data = call(args, "GET", "/api/v1/journal", params=params)
    lines = []
    for e in reversed(data["entries"]):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        extra = " ".join(f"{k}={e[k]}" for k in ("host", "plan_id", "step", "actor", "status") if e.get(k) is not None)
        dur = f" {e['duration_s']:.2f}s" if e.get("duration_s") is not None else ""
        facts = e.get("data") or {}  # not `data`: that is the journal, printed whole with --json
        text = e.get("reason") or " ".join(str(x) for x in (facts.get("text"), facts.get("output")) if x)
        lines.append(f"{e['id']:>6} {when} {e['kind']:<16} {extra}{dur} {text}".rstrip())
    _out(args, data, "\n".join(lines) or "journal empty")
    return 0


def cmd_confirm_off(args: argparse.Namespace) -> int:
    data = call(args, "POST", f"/api/v1/plans/{args.id}/confirm-off", {"host": args.host, "reason": args.reason})
    _out(args, data, f"confirmed {args.host} is off")
    return 0


def cmd_token_add(args: argparse.Namespace) -> int:
    token = add_token(__import__("pathlib").Path(args.tokens_file), args.name, args.role, args.host, args.expires)
    print(token)
    return 0
