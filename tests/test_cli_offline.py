"""The offline CLI as a user runs it: a real `python -m controller` process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ccfo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def ok_json(*args: str) -> dict:
    r = ccfo(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_check_config_ok():
    r = ccfo("check-config")
    assert r.returncode == 0, r.stderr
    assert "config OK" in r.stdout and "ipc-a primary 60 channels" in r.stdout


def test_check_config_bad_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "cfg"
    bad.mkdir()
    (bad / "site.yaml").write_text("site: {name: x}\nhosts: 5\n")
    (bad / "rules.yaml").write_text("rules: []\n")
    r = ccfo("check-config", "--config", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}/site.yaml:2: hosts:" in r.stderr
    assert f"{bad}/rules.yaml:1: rules:" in r.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--agent-calls", "10"], 70),
    (["--agent-calls", "45"], 0),
    (["--scenario", "primary-down", "--agent-calls", "10"], 10),
    (["--scenario", "standby-down"], 60),
    (["--span-down", "ipc-a:1", "--span-down", "ipc-b:1"], 30),
])
def test_capacity_figures(args, expected):
    out = ok_json("capacity", *args)
    assert out["max_ivr_calls"] == expected
    assert {"scenario", "agent_calls", "max_ivr_calls", "max_agent_calls", "hosts"} <= set(out)
    assert set(out["hosts"]["ipc-a"]) >= {"channels", "max_ivr_calls", "max_agent_calls"}


def test_capacity_46_agent_calls_is_refused_with_the_maximum():
    r = ccfo("capacity", "--agent-calls", "46")
    assert r.returncode == 1
    assert "at most 45" in r.stderr


def test_capacity_text_says_how_many_ivr_calls_fit():
    r = ccfo("capacity", "--agent-calls", "10")
    assert r.returncode == 0 and "With 10 agent call(s), 70 more IVR call(s) fit." in r.stdout


def test_capacity_unknown_span_is_a_usage_error():
    r = ccfo("capacity", "--span-down", "ipc-b:2")
    assert r.returncode == 2 and "ipc-b has no span 2" in r.stderr


def test_blocking_kaufman_roberts_and_reservation():
    kr = ok_json("capacity", "blocking", "--channels", "30", "--ivr-erlangs", "12", "--agent-erlangs", "6")
    assert kr["method"] == "kaufman-roberts" and 0 < kr["ivr_blocking"] < kr["agent_blocking"] < 1
    res = ok_json("capacity", "blocking", "--channels", "30", "--ivr-erlangs", "12", "--agent-erlangs", "6",
                  "--reserve", "4")
    assert res["agent_blocking"] < kr["agent_blocking"] and res["ivr_blocking"] > kr["ivr_blocking"]


def test_blocking_transfer_model():
    out = ok_json("capacity", "blocking", "--model", "transfer", "--channels", "30", "--arrivals-per-min", "10",
                  "--ivr-minutes", "2", "--transfer-ratio", "0.3", "--agent-minutes", "4")
    assert {"new_call_blocking", "transfer_blocking", "mean_ivr_calls", "mean_agent_calls"} <= set(out)
    assert 0 <= out["new_call_blocking"] < 1 and out["mean_agent_calls"] > 0


def test_blocking_bad_input_is_a_usage_error():
    r = ccfo("capacity", "blocking", "--channels", "0", "--ivr-erlangs", "1", "--agent-erlangs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_plan_json_for_the_primary_cti_crash():
    out = ok_json("plan", "ipc-a:service:cti=down")
    assert out["rule"] == "primary-cti-ivr-fault" and out["action"] == "failover"
    assert out["approval_required"] is True
    steps = [(s["kind"], s.get("host"), s.get("service")) for s in out["steps"]]
    fence = steps.index(("fence", "ipc-a", None))
    assert fence < steps.index(("start", "ipc-b", "cti"))


def test_plan_mode_flag():
    assert ok_json("plan", "--mode", "automatic", "ipc-a:service:ivr=down")["approval_required"] is False
    out = ok_json("plan", "--mode", "maintenance", "ipc-a:service:ivr=down")
    assert out["disposition"] == "report"


@pytest.mark.parametrize(("fault", "rule"), [
    ("ipc-a:span:1=alarm", "primary-board-fault"),
    ("ipc-a:board=down", "primary-board-fault"),
    ("ipc-b:service:kcxp=down", "standby-fault"),
    ("ipc-a:host=unreachable", "primary-unreachable"),
    ("db:shenzhen=down", "database-site-fault"),
    ("ipc-a:service:cti=hung", "primary-cti-ivr-fault"),
    ("ipc-a:service:ivr=hung", "primary-cti-ivr-fault"),
    ("ipc-a:ami=hung", "primary-cti-ivr-fault"),
    ("ipc-a:ami=lost", "primary-board-fault"),
    ("ipc-b:service:kcbp=hung", "standby-fault"),
])
def test_plan_each_fault_form(fault, rule):
    assert ok_json("plan", fault)["rule"] == rule


def test_a_database_fault_plan_repoints_the_ipcs_and_the_servers_each_then_its_readers():
    steps = [(s["kind"], s.get("host"), s.get("service")) for s in ok_json("plan", "db:shenzhen=down")["steps"]]
    machine = [s for s in steps if s[0] in ("repoint_db", "restart")]
    assert machine == [
        ("repoint_db", "ipc-a", None), ("restart", "ipc-a", "kcbp"), ("restart", "ipc-a", "cti"),
        ("repoint_db", "ipc-b", None), ("restart", "ipc-b", "kcbp"),
        ("repoint_db", "dbconn-sz", None), ("restart", "dbconn-sz", "dbconn"),
        ("repoint_db", "app-sz", None), ("restart", "app-sz", "appserver"),
        ("repoint_db", "app-sh", None),  # the Shanghai backup: its files follow, it stays stopped
    ]


def test_plan_text_is_a_numbered_list():
    r = ccfo("plan", "ipc-a:service:cti=down")
    assert r.returncode == 0
    assert "\n   1. stop ivr on ipc-a" in r.stdout and "Plan:    fail over from ipc-a to ipc-b" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["ipc-a:service:cti"], "cannot read fault"),
    (["ipc-z:board=down"], "unknown host 'ipc-z'"),
    (["ipc-a:service:nope=down"], "has no service 'nope'"),
    (["ipc-b:span:3=alarm"], "ipc-b has no span 3"),
    ([], "give at least one FAULT"),
])
def test_plan_usage_errors(args, message):
    r = ccfo("plan", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_plan_operator_actions():
    out = ok_json("plan", "--switchover-to", "ipc-b", "--drain-timeout", "90")
    assert out["action"] == "switchover" and any(s["kind"] == "wait_drained" for s in out["steps"])
    out = ok_json("plan", "--duty", "ipc-a=out", "--duty", "ipc-b=takeover", "--failback")
    assert out["action"] == "failback"
    r = ccfo("plan", "--failback")
    assert r.returncode == 1 and "already in its normal state" in r.stderr
