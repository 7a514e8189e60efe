"""The run report an operator hands to management: Markdown, HTML or JSON, from the run's status view.

Sections: the run (who, when, planned from what), phases planned vs. real, every step with who, start,
end, planned and real duration and note, deviations from plan, failed and skipped steps with their
notes (earlier failed attempts included), drill and call-test results with the drill reports embedded,
and the full timeline. The report is a view: everything in it comes from the journal.
Pure apart from formatting local times; HTML is escaped throughout.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from typing import Any

from controller.checklists.views import fmt_delta, fmt_duration

FORMATS = ("md", "html", "json")
MEDIA = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8", "json": "application/json"}


def fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%a %Y-%m-%d %H:%M:%S", time.localtime(ts))


def deviations(view: Mapping[str, Any]) -> list[str]:
    """Steps whose real duration differs from the plan by at least a minute and 10 %, late phase starts."""
    out = []
    for p in view["phases"]:
        late = p["start_at"] - p["planned_start"]
        if p["state"] != "waiting" and abs(late) >= 60:
            out.append(f"phase {p['id']} started {fmt_delta(late)} against its planned start")
        for s in p["steps"]:
            if s["real_s"] is not None and abs(s["deviation_s"]) >= max(60.0, 0.1 * s["planned_s"]):
                out.append(f"step {s['id']} took {fmt_duration(s['real_s'])}, planned {fmt_duration(s['planned_s'])} "
                           f"({fmt_delta(s['deviation_s'])})")
            failed = [a for a in s["history"] if a["outcome"] == "failed"]
            if failed:
                out.append(f"step {s['id']} needed {s['attempts']} attempt(s); {len(failed)} failed")
    if view["outcome"] != "aborted" and abs(view["slip_s"]) >= 60:
        what = "finished" if view["outcome"] == "finished" else "projected to finish"
        out.append(f"the run {what} {fmt_delta(view['slip_s'])} against the plan")
    return out


def _steps(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for p in view["phases"] for s in p["steps"]]


def problems(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Failed, skipped, blocked or rolled-back steps, and steps with earlier failed attempts."""
    return [s for s in _steps(view) if s["state"] in ("failed", "skipped", "blocked", "rolled_back")
            or any(a["outcome"] in ("failed", "skipped") for a in s["history"])]


def results(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _steps(view) if s["kind"] in ("drill", "call_test") and s["output"]]


def render(view: Mapping[str, Any], fmt: str, attachments: Mapping[str, str] | None = None) -> str:
    attachments = attachments or {}
    if fmt == "json":
        return json.dumps({**view, "deviations": deviations(view), "attachments": dict(attachments)}, indent=2)
    if fmt == "md":
        return _markdown(view, attachments)
    if fmt == "html":
        return _html(view, attachments)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _header(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    end = "finished" if v["outcome"] == "finished" else "aborted" if v["outcome"] == "aborted" else "still open"
    return [("Run", f"{v['id']} ({'rehearsal' if v['rehearsal'] else 'real run'}), {end}"),
            ("Started", f"{fmt_time(v['started'])} by {v['started_by']}: {v['reason']}"),
            ("Ended", fmt_time(v["ended"])),
            ("Planned durations", f"from rehearsal {v['planned_from']}" if v["planned_from"] else "from the checklist"),
            ("Planned finish", fmt_time(v["planned_finish"])),
            ("Finish" if v["outcome"] else "Projected finish",
             f"{fmt_time(v['ended'] or v['projected_finish'])} ({fmt_delta(v['slip_s'])})"),
            ("Steps", ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(v["counts"].items()))),
            ("Critical path", " → ".join(v["critical_path"]) or "-")]


def _step_row(s: Mapping[str, Any]) -> list[str]:
    who = " / ".join(x for x in (s["started_by"], s["ended_by"]) if x) or "-"
    return [s["id"], s["title"], s["kind"], s["owner"], s["state"].replace("_", " "), fmt_time(s["started"]),
            fmt_time(s["ended"]), who, fmt_duration(s["planned_s"]), fmt_duration(s["real_s"]),
            fmt_delta(s["deviation_s"]) if s["real_s"] is not None else "-", s["note"] or ""]


STEP_COLS = ["Step", "Title", "Kind", "Owner", "State", "Started", "Ended", "By", "Planned", "Real", "Deviation",
             "Note"]
PHASE_COLS = ["Phase", "Planned start", "Real start", "Planned", "Real", "Deviation", "State"]


def _phase_row(p: Mapping[str, Any]) -> list[str]:
    started = p["state"] != "waiting"
    return [f"{p['id']}: {p['title']}", fmt_time(p["planned_start"]), fmt_time(p["start_at"]) if started else "-",
            fmt_duration(p["planned_s"]), fmt_duration(p["real_s"]),
            fmt_delta(p["deviation_s"]) if p["real_s"] is not None else "-", p["state"].replace("_", " ")]


def _md(x: object) -> str:
    """Operator text inside Markdown: no raw HTML, no table breaks."""
    return str(x).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _md_table(cols: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join(_md(c).replace("|", "\\|") for c in r) + " |" for r in rows]


def _markdown(v: Mapping[str, Any], attachments: Mapping[str, str]) -> str:
    out = [f"# Checklist report: {v['title']}", ""]
    out += [f"- **{k}:** {_md(val)}" for k, val in _header(v)] + ["", "## Phases", ""]
    out += _md_table(PHASE_COLS, [_phase_row(p) for p in v["phases"]])
    out += ["", "## Steps", "", *_md_table(STEP_COLS, [_step_row(s) for s in _steps(v)])]
    out += ["", "## Deviations from plan", ""] + ([f"- {_md(d)}" for d in deviations(v)] or ["None."])
    out += ["", "## Failed and skipped steps", ""]
    for s in problems(v) or []:
        out.append(f"- **{s['id']}** ({s['state'].replace('_', ' ')}): {_md(s['note'] or 'no note')}"
                   + (f"; blocked by {', '.join(s['blocked_by'])}" if s["blocked_by"] else ""))
        out += [f"  - {a['what']} {a['outcome']} at {fmt_time(a['ended'])} by {_md(a['by'])}: {_md(a['note'] or '')}"
                for a in s["history"] if a["outcome"] not in ("done",)]
    if not problems(v):
        out.append("None.")
    out += ["", "## Drill and call-test results", ""]
    for s in results(v):
        o = s["output"]
        out.append(f"### {s['id']}: {'PASSED' if o.get('passed') else 'FAILED'}")
        out += ["", _md(s["note"] or ""), ""] + ([f"Report: `{o['report_path']}`", ""] if o.get("report_path") else [])
        if s["id"] in attachments:
            out += ["`````", attachments[s["id"]].rstrip(), "`````", ""]
    if not results(v):
        out.append("None run.")
    out += ["", "## Timeline", ""]
    out += _md_table(["Time", "Who", "Event", "Note"], [[fmt_time(e["at"]), e["actor"], e["text"], e["note"] or ""]
                                                         for e in v.get("timeline", [])])
    return "\n".join(out) + "\n"


def _html_table(cols: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(f"<tr class=\"{html.escape((classes or [''] * len(rows))[i])}\">"
                   + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top;font-size:90%}"
        "th{background:#eee}tr.failed td,tr.blocked td{background:#fdd}tr.skipped td{background:#ffd}"
        "tr.done td{background:#efe}pre{background:#f6f6f6;padding:1em;overflow:auto}")


def _html(v: Mapping[str, Any], attachments: Mapping[str, str]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{e(v['title'])} — {e(v['id'])}</title>"
             f"<style>{_CSS}</style></head><body><h1>Checklist report: {e(v['title'])}</h1><dl>"]
    parts += [f"<dt>{e(k)}</dt><dd>{e(val)}</dd>" for k, val in _header(v)] + ["</dl><h2>Phases</h2>"]
    parts.append(_html_table(PHASE_COLS, [_phase_row(p) for p in v["phases"]]))
    steps = _steps(v)
    parts += ["<h2>Steps</h2>", _html_table(STEP_COLS, [_step_row(s) for s in steps], [s["state"] for s in steps])]
    devs = deviations(v)
    parts += ["<h2>Deviations from plan</h2>",
              "<ul>" + "".join(f"<li>{e(d)}</li>" for d in devs) + "</ul>" if devs else "<p>None.</p>"]
    parts.append("<h2>Failed and skipped steps</h2>")
    items = [f"<li><b>{e(s['id'])}</b> ({e(s['state'])}): {e(s['note'] or 'no note')}<ul>"
             + "".join(f"<li>{e(a['what'])} {e(a['outcome'])} at {e(fmt_time(a['ended']))} by {e(a['by'])}: "
                       f"{e(a['note'] or '')}</li>" for a in s["history"] if a["outcome"] != "done") + "</ul></li>"
             for s in problems(v)]
    parts.append("<ul>" + "".join(items) + "</ul>" if items else "<p>None.</p>")
    parts.append("<h2>Drill and call-test results</h2>")
    for s in results(v):
        o = s["output"]
        parts.append(f"<h3>{e(s['id'])}: {'PASSED' if o.get('passed') else 'FAILED'}</h3><p>{e(s['note'] or '')}</p>")
        if o.get("report_path"):
            parts.append(f"<p>Report: <code>{e(o['report_path'])}</code></p>")
        if s["id"] in attachments:
            parts.append(f"<pre>{e(attachments[s['id']])}</pre>")
    if not results(v):
        parts.append("<p>None run.</p>")
    parts += ["<h2>Timeline</h2>", _html_table(["Time", "Who", "Event", "Note"],
                                               [[fmt_time(x["at"]), x["actor"], x["text"], x["note"] or ""]
                                                for x in v.get("timeline", [])]), "</body></html>"]
    return "\n".join(parts) + "\n"
