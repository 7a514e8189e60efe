"""docs/config-reference.md is generated from the config models (`ccfo config-reference`): it must be current,
every model field must carry a description, and every key the shipped example files use must be in it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from controller.cli import main
from controller.config_reference import FILES, Undocumented, render, rows
from tests.deploy.kit import REPO

DOC = REPO / "docs" / "config-reference.md"


def test_the_committed_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/config-reference.md is stale: run `ccfo config-reference > docs/config-reference.md`")


def test_the_command_prints_the_reference() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["config-reference"]) == 0
    assert out.getvalue() == render()


def test_a_field_without_a_description_is_refused() -> None:
    class Bare(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        documented: int = 1
        """Says what it is."""
        bare: int = 2

    with pytest.raises(Undocumented, match=r"Bare\.bare has no description"):
        list(rows(Bare))


def paths(node: Any, prefix: str = "") -> list[str]:
    """Every key path of a YAML document, list items as `[]`."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out += [path, *paths(value, path)]
    elif isinstance(node, list):
        for item in node:
            out += paths(item, prefix + "[]")
    return out


def patterns(model: type[BaseModel]) -> list[re.Pattern[str]]:
    """A regex per reference key; a map's own entries (`hosts.ipc-a`) match `KEY.NAME`."""
    keys = [r.key for r in rows(model)] + [f"{r.key}.NAME" for r in rows(model) if r.type.startswith("map ")]
    return [re.compile("^" + re.escape(k).replace("NAME", "[^.]+") + "$") for k in keys]


EXAMPLES = [("site.yaml", [REPO / "config" / "site.yaml"]), ("rules.yaml", [REPO / "config" / "rules.yaml"]),
            ("drills/*.yaml (scenarios)", sorted((REPO / "drills" / "scenarios").glob("*.yaml"))),
            ("checklists/*.yaml", sorted((REPO / "config" / "checklists").glob("*.yaml")))]


@pytest.mark.parametrize(("title", "files"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_every_key_of_the_shipped_examples_is_in_the_reference(title: str, files: list[Path]) -> None:
    model = next(m for t, m, _ in FILES if t == title)
    known = patterns(model)
    assert files
    for f in files:
        missing = [p for p in paths(yaml.safe_load(f.read_text())) if not any(k.match(p) for k in known)]
        assert not missing, f"{f.name}: keys not in the reference: {missing[:5]}"
