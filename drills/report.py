"""A drill's report: the run as a JSON document, rendered as Markdown and JUnit XML.

The report is a view over what the runner journaled: `drill_finished` carries the same document, so
`ccfo drill history` and the API show exactly what the files say. Files go under
`reports/drills/<run id>/` (report.json, report.md, junit.xml), next to the SIPp files of the run.

What it must not do: compute figures (the runner does) or read anything but the document it is given.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

FIGURES = (("time_to_detect_s", "time to detect", "s"), ("time_to_decide_s", "time to decide", "s"),
           ("time_to_recover_s", "time to recover (fault to first answered call)", "s"),
           ("plan_duration_s", "plan duration", "s"),
           ("calls_attempted", "calls attempted during the drill (steady load)", ""),
           ("calls_failed", "calls failed during the drill (steady load)", ""),
           ("calls_refused", "calls refused during the drill (never answered)", ""),
           ("calls_cut", "calls cut during the drill (answered, ended abnormally)", ""),
           ("calls_held", "calls held during the drill (answered after the front held them)", ""),
           ("way_back_calls_attempted", "calls attempted during the way back", ""),
           ("way_back_calls_failed", "calls failed during the way back", ""),
           ("way_back_calls_refused", "calls refused during the way back", ""),
           ("way_back_calls_cut", "calls cut during the way back", ""),
           ("way_back_calls_held", "calls held during the way back", ""),
           ("duration_s", "drill duration", "s"))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{(' ' + unit) if unit else ''}"
    return f"{value}{(' ' + unit) if unit else ''}"


def markdown(doc: dict[str, Any]) -> str:
    fig = doc.get("figures", {})
    lines = [f"# Drill {doc['drill']}: {doc['status'].upper()}", "",
             f"{doc.get('description', '').strip()}", "",
             f"* run `{doc['run_id']}`, target `{doc['target']}`, from {_when(doc.get('started'))} "
             f"to {_when(doc.get('ended'))}",
             f"* fault: {doc.get('fault', {}).get('describe', '-')}"]
    if doc.get("reason"):
        lines.append(f"* **why it {doc['status']}**: {doc['reason']}")
    lines += ["", "## Figures", "", "| figure | value |", "|---|---|"]
    for key, label, unit in FIGURES:
        lines.append(f"| {label} | {_num(fig.get(key), unit)} |")
    lines += ["", "## Expectations", "", "| expectation | limit | measured | result | detail |",
              "|---|---|---|---|---|"]
    for e in doc.get("expectations", []):
        lines.append(f"| {e['name']} | {_num(e.get('limit_s'), 's')} | {_num(e.get('measured_s'), 's')} | "
                     f"{e['status']} | {e.get('detail', '')} |")
    lines += ["", "## Steps", "", "| step | duration | result | detail |", "|---|---|---|---|"]
    for s in doc.get("steps", []):
        lines.append(f"| {s['name']} | {_num(s.get('duration_s'), 's')} | {s['status']} | {s.get('detail', '')} |")
    lines += ["", "## Verification calls", "", "| phase | call | host | result | detail |", "|---|---|---|---|---|"]
    for c in doc.get("checks", []):
        lines.append(f"| {c['phase']} | {c['kind']} | {c.get('host') or '-'} | {'pass' if c['passed'] else 'FAIL'} | "
                     f"{c['detail']} |")
    rec = doc.get("recovery") or {}
    if rec.get("attempts"):
        ok = [a for a in rec["attempts"] if a["passed"]]
        lines += ["", f"Recovery: {len(rec['attempts'])} inbound call(s) to {rec.get('host')} after the fault, "
                      f"{len(ok)} answered; first answered {_num(fig.get('time_to_recover_s'), 's')} after the fault."]
    plans = doc.get("plans", [])
    for p in plans:
        lines += ["", f"## Plan {p['id']} ({p.get('role', 'plan')}): {p.get('title', '')}, {p.get('status')}", "",
                  "| # | step | duration | result |", "|---|---|---|---|"]
        for i, st in enumerate(p.get("steps", []), 1):
            lines.append(f"| {i} | {st.get('text')} | {_num(st.get('duration_s'), 's')} | {st.get('status')} |")
    for phase, load in (doc.get("load") or {}).items():
        lines += ["", f"## Steady load: {phase}", "",
                  f"{load.get('rate_cps')} calls/s through the SIP front; {load.get('attempted')} attempted, "
                  f"{load.get('succeeded')} succeeded, {load.get('failed')} failed ({load.get('calls_refused')} "
                  f"refused, {load.get('calls_cut')} cut); {load.get('calls_held')} held; answered by "
                  f"{load.get('answered_by')}; mean call setup {_num(load.get('setup_ms'), 'ms')}; "
                  f"responses {load.get('responses')}", ""]
        for seg in load.get("segments", []):
            lines.append(f"* to {seg['host']}: {seg.get('attempted')} attempted, {seg.get('failed')} failed "
                         f"(SIPp statistics `{seg['stat_file']}`)")
    return "\n".join(lines) + "\n"


def junit(doc: dict[str, Any]) -> str:
    """JUnit XML: one test case per step, expectation and verification call."""
    cases: list[tuple[str, str, float, str | None, bool]] = []  # (class, name, time, failure, skipped)
    for s in doc.get("steps", []):
        bad = s["status"] == "failed"
        cases.append(("steps", s["name"], s.get("duration_s") or 0.0, s.get("detail") if bad else None,
                      s["status"] == "skipped"))
    for e in doc.get("expectations", []):
        failure = f"expected within {e.get('limit_s')} s: {e.get('detail', '')}" if e["status"] == "unmet" else None
        cases.append(("expectations", e["name"], e.get("measured_s") or 0.0, failure, e["status"] == "not reached"))
    for c in doc.get("checks", []):
        cases.append((f"calls.{c['phase']}", f"{c['kind']} {c.get('host') or ''}".strip(), c.get("duration_s", 0.0),
                      None if c["passed"] else c["detail"], False))
    suite = ET.Element("testsuite", name=f"drill.{doc['drill']}", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if c[3])), skipped=str(sum(1 for c in cases if c[4])),
                       time=f"{doc.get('figures', {}).get('duration_s') or 0.0:.3f}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(doc.get("started") or 0)))
    props = ET.SubElement(suite, "properties")
    for key, value in (("run_id", doc["run_id"]), ("target", doc["target"]), ("status", doc["status"])):
        ET.SubElement(props, "property", name=key, value=str(value))
    for cls, name, secs, failure, skipped in cases:
        case = ET.SubElement(suite, "testcase", classname=f"drill.{doc['drill']}.{cls}", name=name,
                             time=f"{secs:.3f}")
        if failure:
            ET.SubElement(case, "failure", message=failure[:500]).text = failure
        elif skipped:
            ET.SubElement(case, "skipped", message="not reached")
    if doc.get("reason") and doc["status"] in ("error", "skipped", "cancelled"):
        ET.SubElement(suite, "system-err").text = doc["reason"]
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write(doc: dict[str, Any], directory: Path) -> dict[str, str]:
    """Write report.json, report.md and junit.xml into `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"json": directory / "report.json", "markdown": directory / "report.md", "junit": directory / "junit.xml"}
    paths = {k: str(v) for k, v in files.items()}
    doc = {**doc, "files": {**doc.get("files", {}), **paths}}
    files["json"].write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    files["markdown"].write_text(markdown(doc))
    files["junit"].write_text(junit(doc))
    return paths


def summary_line(doc: dict[str, Any]) -> str:
    fig = doc.get("figures", {})
    return (f"drill {doc['drill']} {doc['status'].upper()}: detect {_num(fig.get('time_to_detect_s'), 's')}, "
            f"decide {_num(fig.get('time_to_decide_s'), 's')}, recover {_num(fig.get('time_to_recover_s'), 's')}, "
            f"calls failed {fig.get('calls_failed', '-')}/{fig.get('calls_attempted', '-')} "
            f"(refused {fig.get('calls_refused', '-')}, cut {fig.get('calls_cut', '-')}, held "
            f"{fig.get('calls_held', '-')}; way back: refused {fig.get('way_back_calls_refused', '-')}, cut "
            f"{fig.get('way_back_calls_cut', '-')})"
            + (f" ({doc['reason']})" if doc.get("reason") else ""))
