"""The pure modules stay pure; status views and reports say what management needs to read."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.domain.site import Duty
from ccfo.domain.state import SiteState
from controller.checklists.checks import build_start_services, build_stop_services, evaluate
from controller.checklists.model import Rollback
from controller.checklists.model import StepKind as K
from controller.checklists.report import deviations, render
from controller.checklists.specs import ActionKind, ActionSpec, CheckKind, CheckSpec
from controller.checklists.views import fmt_delta, fmt_duration, run_status
from tests.checklists.factories import Sim, begin, checklist, phase, step

REPO = Path(__file__).resolve().parents[2]
PURE = ["model", "machine", "schedule", "specs", "checks", "views", "report"]
IMPURE = {"asyncio", "sqlite3", "httpx", "fastapi", "yaml", "subprocess", "socket", "os", "pathlib", "uvicorn",
          "controller.journal", "controller.engine", "controller.store", "ccfo.config", "drills", "lab",
          "agents", "controller.checklists.runner", "controller.checklists.store", "controller.checklists.loader",
          "controller.checklists.ports"}


@pytest.mark.parametrize("name", PURE)
def test_the_pure_modules_import_no_io(name):
    tree = ast.parse((REPO / "controller" / "checklists" / f"{name}.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    bad = {m for m in imported if any(m == b or m.startswith(b + ".") for b in IMPURE)}
    assert not bad, f"{name}.py imports {bad}"


STATUS = {"state": "normal", "faults": [], "capacity": {"channels": 90},
          "hosts": {"ipc-a": {"reachable": True, "db_site": "shenzhen",
                              "services": {"cti": "active", "ivr": "active", "kcxp": "active", "kcbp": "active",
                                           "kcxp-replica": "inactive", "kcbp-replica": "inactive"}},
                    "ipc-b": {"reachable": True, "db_site": "shenzhen",
                              "services": {"cti": "inactive", "ivr": "inactive", "kcxp": "active", "kcbp": "active",
                                           "kcxp-replica": "inactive", "kcbp-replica": "failed"}}}}
LAYOUT = {"ipc-a": ("kcbp", "kcxp", "cti", "ivr"), "ipc-b": ("kcbp", "kcxp")}


@pytest.mark.parametrize(("spec", "ok", "seen"), [
    (CheckSpec(CheckKind.SITE_STATE, value="normal"), True, "site state normal"),
    (CheckSpec(CheckKind.SITE_STATE, value="failed over"), False, "site state normal"),
    (CheckSpec(CheckKind.HOSTS_REACHABLE, hosts=("ipc-a", "ipc-b")), True, "ipc-a, ipc-b reachable"),
    (CheckSpec(CheckKind.CAPACITY_AT_LEAST, channels=90), True, "90 channels in service (need 90)"),
    (CheckSpec(CheckKind.CAPACITY_AT_LEAST, channels=91), False, "90 channels"),
    (CheckSpec(CheckKind.SERVICE_ACTIVE, hosts=("ipc-b",), service="kcxp"), True, "kcxp active on ipc-b"),
    (CheckSpec(CheckKind.SERVICE_ACTIVE, hosts=("ipc-b",), service="cti"), False, "cti inactive on ipc-b"),
    (CheckSpec(CheckKind.SERVICE_INACTIVE, hosts=("ipc-b",), service="kcbp-replica"), True, "failed"),
    (CheckSpec(CheckKind.SERVICES_AS_PLANNED), True, "every host runs the services its duty says"),
    (CheckSpec(CheckKind.DB_SITE, value="shanghai"), False, "ipc-a points at shenzhen"),
])
def test_checks_judge_the_status_the_api_serves(spec, ok, seen):
    passed, what = evaluate(spec, STATUS, LAYOUT)
    assert passed is ok and seen in what


def test_services_as_planned_names_what_is_wrong():
    status = json.loads(json.dumps(STATUS))
    status["hosts"]["ipc-b"]["services"]["cti"] = "active"
    status["hosts"]["ipc-a"]["services"]["ivr"] = "failed"
    ok, seen = evaluate(CheckSpec(CheckKind.SERVICES_AS_PLANNED), status, LAYOUT)
    assert not ok and "ivr failed on ipc-a (should run)" in seen and "cti active on ipc-b (should not run)" in seen


def test_stop_and_start_plans_keep_the_documented_order():
    site = load_config(REPO / "config").site
    state = SiteState.normal(site)
    stop = [s.describe() for s in build_stop_services(site, state, (), "weekend").steps]
    assert stop[:4] == ["stop ivr on ipc-a", "stop cti on ipc-a", "stop kcxp on ipc-a", "stop kcbp on ipc-a"]
    assert stop.index("stop kcbp on ipc-a") < stop.index("stop kcxp on ipc-b")
    start = [s.describe() for s in build_start_services(site, state, (), "weekend").steps]
    assert start.index("start kcxp on ipc-b") < start.index("start kcbp on ipc-a") < start.index("start cti on ipc-a")
    assert start.index("start cti on ipc-a") < start.index("start ivr on ipc-a")
    assert not any("cti on ipc-b" in s for s in start), "CTI/IVR only where the duty says"
    taken_over = state.with_host("ipc-a", duty=Duty.OUT).with_host("ipc-b", duty=Duty.TAKEOVER)
    start = [s.describe() for s in build_start_services(site, taken_over, (), "x").steps]
    assert "start cti on ipc-b" in start and not any("on ipc-a" in s for s in start if s.startswith("start"))


def finished_run():
    c = checklist(phase("p", step("a", planned=60), step("chk", K.CHECK, planned=30),
                        step("b", planned=600, rollback=Rollback(K.MANUAL, "undo <b>"))))
    sim = Sim(begin(c, at=1000.0), now=1000.0)
    sim.settle()
    sim.tick(300)
    sim.op("done", "a", who="ann", text="it <worked> | really")
    sim.finish("chk", ok=False, note="site degraded")
    sim.tick(10)
    sim.op("skip", "chk", who="bo", text="checked by eye")
    sim.tick(100)
    sim.op("done", "b", who="cy")
    return sim.state


def test_status_view_carries_planned_real_and_deviation():
    s = run_status(finished_run(), 2000.0, timeline=True)
    a = s["phases"][0]["steps"][0]
    assert (a["planned_s"], a["real_s"], a["deviation_s"], a["ended_by"], a["note"]) == (
        60.0, 300.0, 240.0, "ann", "it <worked> | really")
    assert s["outcome"] == "finished" and s["skipped"] == ["chk"] and s["failed"] == []
    assert s["timeline"][0]["event"] == "run_started" and s["timeline"][-1]["event"] == "run_finished"


def test_reports_list_deviations_failures_and_skips():
    view = run_status(finished_run(), 2000.0, timeline=True)
    devs = deviations(view)
    assert "step a took 5m, planned 1m (+4m)" in devs
    assert any(d.startswith("step chk needed 1 attempt(s); 1 failed") for d in devs)
    md = render(view, "md")
    assert "| a | step a | manual | operator | done |" in md and "it &lt;worked&gt; \\| really" in md
    assert "- **chk** (skipped): checked by eye" in md and "step failed" in md and "site degraded" in md
    html = render(view, "html")
    assert "it &lt;worked&gt; | really" in html and "<worked>" not in html
    doc = json.loads(render(view, "json"))
    assert doc["deviations"] == devs
    with pytest.raises(ValueError):
        render(view, "pdf")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59, "59s"), (60, "1m"), (61, "1m01s"), (3600, "1h00m"),
                                               (5400, "1h30m"), (90061, "1d1h01m"), (None, "-"), (-90, "-1m30s")])
def test_durations_read_like_a_runbook(seconds, text):
    assert fmt_duration(seconds) == text


def test_deltas():
    assert fmt_delta(0.2) == "on time" and fmt_delta(90) == "+1m30s" and fmt_delta(-3600) == "-1h00m"


def test_action_specs_describe_themselves():
    assert ActionSpec(ActionKind.SWITCHOVER, "ipc-b").describe() == "planned switchover to ipc-b"
    assert ActionSpec(ActionKind.STOP_SERVICES, hosts=("ipc-b",)).describe() == "stop every managed service on ipc-b"
