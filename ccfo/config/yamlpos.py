"""YAML loading that remembers where every value came from, and the problem records that use it.

Operators fix config files by line number at 3 a.m., so every error ccfo reports about a file names
the file, the line and the dotted field path (`config/site.yaml:14: hosts.ipc-b.board.spans[0].channels:
must be 1..31, got 40`). This module composes the YAML node tree once, builds plain Python data from it,
and keeps a map from field path to line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}:{field} {prefix}{self.message}"


class ConfigError(Exception):
    """One or more problems in the configuration; all of them, not just the first."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True, slots=True)
class Located:
    """Parsed YAML data with the line of every mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[PathKey, int]

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The line of the deepest known prefix of `loc` (a missing field points at its parent)."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return 1

    def problem(self, loc: Sequence[str | int], message: str, severity: str = "error") -> Problem:
        return Problem(self.file, self.line_of(loc), format_path(loc), message, severity)


def load_yaml(path: Path, display: str | None = None) -> Located:
    """Read and parse one YAML file; a syntax error becomes a ConfigError with its line."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, 0, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, 0, "", f"cannot read: {exc}")]) from exc
    return parse_yaml(text, name)


def parse_yaml(text: str, name: str) -> Located:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([Problem(name, line, "", f"YAML syntax: {exc.problem or exc.context}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, 0, "", f"YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    lines: dict[PathKey, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, name, duplicates)
    if duplicates:  # YAML keeps the last of two equal keys: a second host or server would silently win
        raise ConfigError(duplicates)
    return Located(name, data, lines)


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], name: str, duplicates: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        own: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, path, lines, name, duplicates)
                continue
            key = (*path, str(key_node.value))
            line = key_node.start_mark.line + 1
            if str(key_node.value) in own:
                duplicates.append(Problem(name, line, format_path(key), f"duplicate key {key_node.value!r} "
                                          f"(first at line {own[str(key_node.value)]})"))
            own.setdefault(str(key_node.value), line)
            lines.setdefault(key, line)
            _walk(value_node, key, lines, name, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = (*path, i)
            lines.setdefault(key, item.start_mark.line + 1)
            _walk(item, key, lines, name, duplicates)
