"""docs/agent-api.md documents every action of the agent's POST /v1/actions, and every request example in it
is one the agent accepts (so the page cannot drift from agents/actions.py)."""

from __future__ import annotations

import json
import re

from agents.actions import ActionKind, ActionRequest, ActionResult
from tests.deploy.kit import REPO

DOC = (REPO / "docs" / "agent-api.md").read_text()
BLOCKS = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC, re.S)]


def test_every_action_has_a_section() -> None:
    documented = set(re.findall(r"^### (\w+)$", DOC, re.M))
    assert documented == {a.value for a in ActionKind}


def test_every_example_is_valid() -> None:
    requests = [b for b in BLOCKS if "status" not in b]
    results = [b for b in BLOCKS if "status" in b]
    assert {r["action"] for r in requests} == {a.value for a in ActionKind}, "one request example per action"
    for body in requests:
        ActionRequest.model_validate(body)
    assert results
    for body in results:
        ActionResult.model_validate(body)
