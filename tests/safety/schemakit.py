"""Schemathesis with every check (`--checks all`), over real HTTP, for any of our APIs: the controller's
(over the fake world or the live lab) and the agent's.

Per operation, schemathesis's own phases as its runner builds them (examples, coverage, fuzzing; its pytest
plugin does not run on this pytest), positive and negative data, bounded examples, derandomized. Every
check: a status code the document does not list, a body that does not match its model, a content type, a
schema-valid request refused or a schema-invalid one accepted, a token not enforced, a method not refused
with 405 and the right `Allow`. The schema is the server's own document; the token rides as schemathesis's
own header, so its negative cases that drop the token really go without one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from schemathesis import GenerationMode
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test


def settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                               suppress_health_check=list(hypothesis.HealthCheck))


def schema_for(doc: dict[str, Any], base_url: str, headers: Mapping[str, str]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(copy.deepcopy(doc))  # one document, several schemas
    schema.config.update(base_url=base_url, headers=dict(headers))
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    return schema


@dataclass
class Findings:
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def operations(self) -> set[tuple[str, str]]:
        return {(k.split(" ", 1)[0], k.split(" ", 1)[1]) for k in self.calls}

    def report(self) -> str:
        return "\n\n".join(f"{k}:\n{v}" for k, v in self.failures.items())


def run_all(schemas: Mapping[str, schemathesis.BaseSchema], *, examples: int,
            schema_of: Callable[[str, str], str], skip: Callable[[str, str], bool] = lambda m, p: False,
            found: Findings | None = None) -> Findings:
    """Every operation of the first schema, each through the schema `schema_of(method, path)` names (the
    one with the right role's token)."""
    found = found or Findings()
    first = next(iter(schemas.values()))
    for result in first.get_all_operations():
        method, path = result.ok().method.upper(), result.ok().path
        if skip(method, path):
            continue
        schema = schemas[schema_of(method, path)]
        op = schema[path][method]
        s = settings(examples)
        config = HypothesisTestConfig(project=schema.config, modes=list(HypothesisTestMode), settings=s)
        s(create_test(operation=op, test_func=_checker(f"{method} {path}", found), config=config))()
    return found


def _checker(label: str, found: Findings) -> Callable[[schemathesis.Case], None]:
    """The test body schemathesis runs for each case of one operation (one argument: hypothesis's `given`
    takes the function's signature as the strategy's)."""

    def check(case: schemathesis.Case) -> None:
        found.calls[label] = found.calls.get(label, 0) + 1
        try:
            case.call_and_validate()
        except BaseException as exc:  # schemathesis reports its findings as an exception group
            found.failures.setdefault(label, str(exc)[:1500])

    return check
