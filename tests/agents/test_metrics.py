"""The agent's metrics pieces that the live-lab test (tests/integration/test_lab_metrics.py) cannot steer:
the admission reason labels, the cap on AMI event classes, one registry per agent."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.ami import AmiMonitor
from agents.ami.monitor import MAX_EVENT_CLASSES
from agents.fastagi.server import ADMISSION_REASONS, reason_label
from agents.metrics import AgentMetrics


@pytest.mark.parametrize(("reason", "fallback", "label"), [
    ("agent: X + 2Y = 3 + 1 <= 30", False, "capacity"),
    ("agent: no room: X + 2Y = 28 + 2*1 = 30, +1 would exceed C = 30", False, "no_room"),
    ("fax: fax pool full (4/4)", False, "fax_full"),
    ("ivr: inbound limit 20 reached (20 in use)", False, "inbound_limit"),
    ("ivr: outbound limit 5 reached (5 in use)", False, "outbound_limit"),
    ("AMI down: live calls unknown; admitted by fail-open policy", True, "ami_down"),
    ("live capacity not available within 200 ms; admitted by fail-open policy", True, "capacity_timeout"),
    ("internal error (KeyError); refused by fail-closed policy", True, "internal_error"),
    ("bad request: no agi_network_script; admitted by fail-open policy", True, "bad_request"),
    ("request cut short; admitted by fail-open policy", True, "bad_request"),
    ("admission server overloaded; admitted by fail-open policy", True, "overloaded"),
    ("something new; admitted by fail-open policy", True, "other"),
])
def test_admission_reasons_map_to_a_closed_label_set(reason: str, fallback: bool, label: str) -> None:
    assert reason_label(reason, fallback) == label
    assert label in ADMISSION_REASONS


def test_ami_event_classes_are_capped() -> None:
    mon = AmiMonitor("127.0.0.1", 1, "u", "s")
    for i in range(MAX_EVENT_CLASSES + 50):
        mon._count_event(f"Invented{i}")
    mon._count_event("Invented0")
    assert len(mon.events_by_class) == MAX_EVENT_CLASSES + 1
    assert mon.events_by_class["other"] == 50 and mon.events_by_class["Invented0"] == 2


def test_each_agent_has_its_own_registry() -> None:
    a, b = AgentMetrics("ipc-a"), AgentMetrics("ipc-b")
    a.observe_push(0.02, True)
    counts = {}
    for m, name in ((a, "a"), (b, "b")):
        for family in text_string_to_metric_families(m.render().decode()):
            for s in family.samples:
                if s.name == "ccfo_agent_report_push_seconds_count":
                    counts[name] = s.value
    assert counts == {"a": 1.0}
