"""Find and replace the one database setting in a config file's text, per declared format. Pure: text in,
text out; no file I/O.

Formats: `ini` (KEY in [SECTION], `=` or `:`, keys case-insensitive as configparser reads them),
`keyvalue` (a `key=value` line), `regex` (the single group of a pattern). The setting must occur exactly
once: a missing or repeated setting is refused rather than guessed at. Only the value's characters
change; every other byte (comments, order, spacing, line endings) is kept, so a rewritten file diffs
as one changed value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Format = Literal["ini", "keyvalue", "regex"]
_COMMENT = ("#", ";", "!")
_SECTION = re.compile(r"^\s*\[([^\]]*)\]\s*$")


class FormatError(ValueError):
    """The file does not hold the declared setting exactly once, or the new value cannot be written."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A whitelisted database config file (from the site config's db_config_files)."""

    id: str
    path: Path
    format: Format
    section: str | None = None
    key: str | None = None
    pattern: str | None = None
    value: str = "{host}"  # template: {host} {port} {site}
    readers: tuple[str, ...] = ()


def _lines(text: str) -> list[tuple[int, str]]:
    out, offset = [], 0
    for line in text.splitlines(keepends=True):
        out.append((offset, line))
        offset += len(line)
    return out


def _value_span(offset: int, line: str, sep_at: int) -> tuple[int, int]:
    body = line.rstrip("\r\n")
    start = sep_at + 1
    while start < len(body) and body[start] in " \t":
        start += 1
    end = len(body.rstrip(" \t"))
    return offset + start, offset + max(start, end)


def _ini_span(text: str, section: str, key: str) -> list[tuple[int, int]]:
    found, current = [], None
    for offset, line in _lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT[:2]):
            continue
        header = _SECTION.match(line.rstrip("\r\n"))
        if header:
            current = header.group(1).strip()
            continue
        if current != section:
            continue
        seps = [i for i in (line.find("="), line.find(":")) if i >= 0]
        if seps and line[:min(seps)].strip().lower() == key.lower():
            found.append(_value_span(offset, line, min(seps)))
    return found


def _keyvalue_span(text: str, key: str) -> list[tuple[int, int]]:
    found = []
    for offset, line in _lines(text):
        stripped = line.lstrip()
        if not stripped or stripped.startswith(_COMMENT):
            continue
        sep = line.find("=")
        if sep >= 0 and line[:sep].strip() == key:
            found.append(_value_span(offset, line, sep))
    return found


def _regex_span(text: str, pattern: str) -> list[tuple[int, int]]:
    compiled = re.compile(pattern, re.MULTILINE)
    if compiled.groups != 1:
        raise FormatError(f"pattern needs exactly one group, has {compiled.groups}")
    return [m.span(1) for m in compiled.finditer(text) if m.start(1) >= 0]


def locate(text: str, spec: FileSpec) -> tuple[int, int]:
    """The (start, end) of the setting's value in `text`; FormatError unless it occurs exactly once."""
    if spec.format == "ini":
        if spec.section is None or spec.key is None:
            raise FormatError("ini needs section and key")
        spans, what = _ini_span(text, spec.section, spec.key), f"key {spec.key!r} in section [{spec.section}]"
    elif spec.format == "keyvalue":
        if spec.key is None:
            raise FormatError("keyvalue needs key")
        spans, what = _keyvalue_span(text, spec.key), f"a {spec.key}= line"
    elif spec.format == "regex":
        if spec.pattern is None:
            raise FormatError("regex needs pattern")
        spans, what = _regex_span(text, spec.pattern), f"a match of {spec.pattern!r}"
    else:
        raise FormatError(f"unknown format {spec.format!r}")
    if len(spans) != 1:
        raise FormatError(f"expected exactly one {what}, found {len(spans)}")
    return spans[0]


def read_value(text: str, spec: FileSpec) -> str:
    start, end = locate(text, spec)
    return text[start:end]


def replace_value(text: str, spec: FileSpec, value: str) -> str:
    """`text` with the setting's value replaced; checked by reading it back."""
    if any(c in value for c in "\r\n\0"):
        raise FormatError("the new value must be a single line")
    start, end = locate(text, spec)
    new = text[:start] + value + text[end:]
    if read_value(new, spec) != value:
        raise FormatError(f"the value {value!r} does not read back as itself in format {spec.format}")
    return new
