"""Helpers for the tests that break a copy of the shipped config on purpose and read the problems back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError

REPO = Path(__file__).resolve().parents[1]


def copy_config(tmp_path: Path) -> Path:
    """A private copy of config/ to edit."""
    d = tmp_path / "config"
    shutil.copytree(REPO / "config", d)
    return d


def edit(path: Path, old: str, new: str, count: int = 1) -> int:
    """Replace text in a file; return the 1-based line of the first replacement."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, count))
    return line


def problems(cfg_dir: Path) -> list[str]:
    """The problems `load_config` reports for the copy (it must refuse it)."""
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_dir, display_dir="config")
    return [str(p) for p in exc.value.problems]
