"""A runbook's repoint_db step repoints the machines in the rules' order (rules.yaml repoint_order), like rule 4."""

from __future__ import annotations

from controller.checklists.checks import build_plan
from controller.checklists.specs import ActionKind, ActionSpec
from tests.domain.factories import normal_state, site_with_servers


def test_a_runbooks_repoint_step_follows_the_rules_order() -> None:
    plan = build_plan(ActionSpec(ActionKind.REPOINT_DB, to="shanghai"), site_with_servers(), normal_state(), "weekend",
                      repoint_order=("db-connection", "ipc", "application"))
    assert [s.host for s in plan.steps if s.kind.value == "repoint_db"] == [
        "dbconn-sz", "ipc-a", "ipc-b", "app-sz", "app-sh"]
