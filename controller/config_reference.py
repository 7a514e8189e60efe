"""`ccfo config-reference`: docs/config-reference.md, generated from the pydantic models of every config file.

The models are the truth (they validate the files), so the reference is derived from them: each key's
path, type, default and meaning. Meanings are the fields' descriptions (attribute docstrings in the
models); a field without one is an error here, so a new key cannot land undocumented. The types are
written for operators: `int 1..31`, `one of: trap, inform`, `map NAME -> ...`, and a sub-model's keys
follow as their own rows. tests/deploy/test_config_reference.py fails when the committed file is stale:

    ccfo config-reference > docs/config-reference.md
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ccfo.config.models import RulesFileModel, SiteFileModel, SwitchesFileModel
from controller.checklists.loader import ChecklistModel
from drills.model import DrillsConfigModel, ScenarioModel

FILES: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("site.yaml", SiteFileModel,
     "The site: hosts, their Asterisk, boards, services and database config files; the database sites, "
     "capacity rules, the controller, fencing and inbound routing. `ccfo check-config` validates it."),
    ("rules.yaml", RulesFileModel,
     "The failover rules: which faults on which role lead to which action, with debounce and approval."),
    ("switches.yaml", SwitchesFileModel,
     "Optional: the named switches of the managed servers (source plan III), each with its inverse; "
     "`ccfo switch NAME [--inverse]` runs one."),
    ("drills/*.yaml (scenarios)", ScenarioModel,
     "One drill scenario (the library ships in drills/scenarios/; a site adds its own under config/drills/)."),
    ("drills.yaml", DrillsConfigModel,
     "The site's drill settings: the SIP plan for verification calls, schedules, where reports go."),
    ("checklists/*.yaml", ChecklistModel,
     "A runbook the controller runs step by step (docs/checklists.md)."),
)
HEADER = """# Configuration reference

Generated from the config models by `ccfo config-reference > docs/config-reference.md`; do not edit by
hand (tests/deploy/test_config_reference.py fails when this file and the models disagree).

Every file refuses unknown keys. `NAME` stands for a name you choose (lower case letters, digits, `_ . -`,
starting with a letter); `[]` marks a list item. Secrets are always files (`*_file`, relative to the
config directory) or environment variables (`*_env`), never values in the YAML. Durations in checklists
accept `90s`, `5m`, `1h30m`; elsewhere times are seconds (`_s`).
"""


class Undocumented(Exception):
    """A model field without a description; the message names it."""


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    meaning: str


def _bounds(metadata: list[Any]) -> str:
    out, lo, hi = [], None, None
    for m in metadata:
        bounds = getattr(getattr(m, "func", None), "bounds", None)
        if bounds is not None:
            lo, hi = bounds
        for attr in ("ge", "gt"):
            lo = getattr(m, attr, None) if getattr(m, attr, None) is not None else lo
        for attr in ("le", "lt"):
            hi = getattr(m, attr, None) if getattr(m, attr, None) is not None else hi
        if getattr(m, "min_length", None) is not None:
            out.append(f"at least {m.min_length}")
        if getattr(m, "max_length", None) is not None:
            out.append(f"at most {m.max_length}")
    if lo is not None or hi is not None:
        out.insert(0, f"{'' if lo is None else _num(lo)}..{'' if hi is None else _num(hi)}")
    return ", ".join(out)


# Types a validator parses from text: what an operator writes.
PARSED = {"parse_duration": "duration (90s, 5m, 1h30m)", "parse_start": "day and time (`sat 08:00`)"}


def type_name(tp: Any, metadata: list[Any] | None = None) -> str:
    """An operator's name for a field type: `int 1..255`, `list of NAME`, `one of: a, b`."""
    extra = list(metadata or [])
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *more = typing.get_args(tp)
        return type_name(base, [*extra, *_flat(more)])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " or ".join(type_name(a) for a in args)
        text = f"{inner} or null" if len(args) < len(typing.get_args(tp)) else inner
        return _with(text, extra)
    parsed = next((PARSED[f.__name__] for m in extra if (f := getattr(m, "func", None)) is not None
                   and getattr(f, "__name__", "") in PARSED), None)
    if parsed:
        return parsed
    if origin is Literal:
        values = [str(v).lower() if isinstance(v, bool) else str(v) for v in typing.get_args(tp)]
        return _with("one of: " + ", ".join(values) if len(values) > 1 else values[0], extra)
    if origin in (list, tuple):
        (item, *_rest) = typing.get_args(tp)
        return _with(f"list of {type_name(item)}", extra)
    if origin is dict:
        key, value = typing.get_args(tp)
        return _with(f"map {type_name(key)} -> {type_name(value)}", extra)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _with("one of: " + ", ".join(str(m.value) for m in tp), extra)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping (keys below)"
    if tp is str and any(getattr(m, "pattern", None) == r"^[a-z][a-z0-9_.-]{0,62}$" for m in extra):
        return "NAME"
    name = {str: "string", int: "int", float: "number", bool: "true/false"}.get(tp, getattr(tp, "__name__", str(tp)))
    return _with(name, extra)


def _flat(metadata: list[Any]) -> list[Any]:
    """Constraints, with a nested `Field(...)` opened up (its own metadata holds the pattern or bounds)."""
    out = []
    for m in metadata:
        out.extend(_flat(list(m.metadata)) if isinstance(m, FieldInfo) else [m])
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _with(text: str, metadata: list[Any]) -> str:
    bounds = _bounds(metadata)
    if not bounds:
        return text
    return f"{text}; {bounds}" if (" " in text) else f"{text} {bounds}"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "(keys below)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list) and all(isinstance(v, enum.Enum) for v in value):
        value = [v.value for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ([], {}, ""):
        return "empty"
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`" if isinstance(value, str) else str(value)


def _models(tp: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """Sub-models inside a field type, with the path suffix that reaches them (`.`, `[].`, `.NAME.`)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _models(typing.get_args(tp)[0])
    elif origin in (Union, types.UnionType):
        for a in typing.get_args(tp):
            yield from _models(a)
    elif origin in (list, tuple):
        for suffix, model in _models(typing.get_args(tp)[0]):
            yield "[]" + suffix, model
    elif origin is dict:
        for suffix, model in _models(typing.get_args(tp)[1]):
            yield ".NAME" + suffix, model
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield ".", tp


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        if not info.description:
            raise Undocumented(f"{model.__module__}.{model.__qualname__}.{name} has no description")
        yield Row(key, type_name(info.annotation, _flat(list(info.metadata))), _default(info),
                  " ".join(info.description.split()))
        for suffix, sub in _models(info.annotation):
            yield from rows(sub, key + suffix)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [HEADER]
    for title, model, intro in FILES:
        out += ["", f"## {title}", "", intro, "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for row in rows(model):
            out.append(f"| `{row.key}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.meaning)} |")
    return "\n".join(out) + "\n"


def cmd_config_reference(args: argparse.Namespace) -> int:
    text = render()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config-reference", help="print the reference of every config key (docs/config-reference.md)")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_config_reference)
