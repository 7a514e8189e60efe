"""Load config/ into validated models and domain values; the same code at start-up, reload and check-config.

All problems of all files are collected and raised together as one ConfigError, each with file, line
and field. A file that fails its schema is not cross-checked (its errors would only repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ccfo.config import secretfiles
from ccfo.config.checks import check_rules, check_site, check_switches, production_warnings
from ccfo.config.models import DbFileModel, RulesFileModel, SiteFileModel, SwitchesFileModel
from ccfo.config.yamlpos import ConfigError, Located, Problem, load_yaml
from ccfo.domain.faults import FlapPolicy
from ccfo.domain.plan import Action
from ccfo.domain.rules import Policy, RoleMatch, Rule
from ccfo.domain.site import (
    Board,
    CapacityPolicy,
    DbConfigFile,
    DbSite,
    DbSiteId,
    DirectionLimits,
    Host,
    HostId,
    ManagedServer,
    ScheduledJob,
    Service,
    ServiceName,
    SipTrunk,
    Site,
    Span,
    SwitchFile,
)
from ccfo.domain.switches import Switch, SwitchStep, SwitchVerb

M = TypeVar("M", bound=BaseModel)

SITE_FILE = "site.yaml"
RULES_FILE = "rules.yaml"
SWITCHES_FILE = "switches.yaml"  # optional: the named switches of the managed servers


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    directory: Path
    site_model: SiteFileModel
    rules_model: RulesFileModel
    site: Site
    policy: Policy
    flap: FlapPolicy
    warnings: tuple[Problem, ...] = ()
    switches: tuple[Switch, ...] = ()  # switches.yaml: the named switches of the managed servers

    def switch(self, name: str) -> Switch | None:
        return next((s for s in self.switches if s.id == name), None)

    @property
    def repoint_order(self) -> tuple[str, ...] | None:
        """The database rule's repoint_order (a switch's repoint_db follows it), or None for the default."""
        rule = next((r for r in self.rules_model.rules if r.action is Action.REPOINT_DB), None)
        return tuple(rule.repoint_order) if rule is not None and rule.repoint_order is not None else None

    def resolve(self, relative: str) -> Path:
        """A path from the config (token files, journal) relative to the config directory."""
        p = Path(relative)
        return p if p.is_absolute() else self.directory / p


_FRIENDLY = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}


def validation_problems(exc: ValidationError, located: Located) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        msg = _FRIENDLY.get(err["type"], err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif err["type"] not in _FRIENDLY and "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg}, got {err['input']!r}"
        problems.append(located.problem(loc, msg))
    return problems


def parse_model(model: type[M], located: Located) -> M:
    if not isinstance(located.data, dict):
        raise ConfigError([Problem(located.file, 1, "", "expected a mapping at the top of the file")])
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, located)) from exc


def load_config(directory: str | Path, display_dir: str | None = None) -> LoadedConfig:
    """Validate site.yaml, rules.yaml and (when present) switches.yaml in `directory`; raise ConfigError with
    every problem found."""
    root = Path(directory)
    shown = display_dir if display_dir is not None else str(directory).rstrip("/")
    problems: list[Problem] = []
    models: dict[str, Any] = {}
    located: dict[str, Located] = {}
    files: list[tuple[str, type[BaseModel]]] = [(SITE_FILE, SiteFileModel), (RULES_FILE, RulesFileModel)]
    if (root / SWITCHES_FILE).exists():
        files.append((SWITCHES_FILE, SwitchesFileModel))
    for fname, model in files:
        try:
            located[fname] = load_yaml(root / fname, f"{shown}/{fname}")
            models[fname] = parse_model(model, located[fname])
        except ConfigError as exc:
            problems += exc.problems
    if SITE_FILE in models:
        problems += check_site(models[SITE_FILE], located[SITE_FILE], root)
        if RULES_FILE in models:
            problems += check_rules(models[RULES_FILE], located[RULES_FILE], models[SITE_FILE])
        if SWITCHES_FILE in models:
            problems += check_switches(models[SWITCHES_FILE], located[SWITCHES_FILE], models[SITE_FILE])
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    site_model: SiteFileModel = models[SITE_FILE]
    rules_model: RulesFileModel = models[RULES_FILE]
    warnings = tuple(problems) + tuple(production_warnings(site_model, located[SITE_FILE]))
    warnings += tuple(secretfiles.warnings(site_model, located[SITE_FILE], root))  # others can read a secret
    return LoadedConfig(root, site_model, rules_model, to_site(site_model), to_policy(rules_model),
                        FlapPolicy(rules_model.policy.flap.window_s, rules_model.policy.flap.max_transitions),
                        warnings, to_switches(models.get(SWITCHES_FILE)))


def to_switch_steps(models: list[Any]) -> tuple[SwitchStep, ...]:
    """Validated switch steps (SwitchStepModel) as the core's values."""
    return tuple(SwitchStep(SwitchVerb(s.verb), s.server, None if s.verb == "repoint_db" else s.name,
                            s.repoint_db if s.verb == "repoint_db" else s.to, s.best_effort) for s in models)


def to_switches(m: SwitchesFileModel | None) -> tuple[Switch, ...]:
    """switches.yaml's switches as the core's values (names checked against the site by check_switches)."""
    if m is None:
        return ()
    return tuple(Switch(w.id, w.description, to_switch_steps(w.steps), to_switch_steps(w.inverse),
                        w.inverse_description, w.source) for w in m.switches)


def to_site(m: SiteFileModel) -> Site:
    """Convert the validated file model into the core's frozen values (once, here)."""
    hosts = []
    for name, h in m.hosts.items():
        spans = tuple(Span(s.span, s.kind, s.channels, s.trunk) for s in h.board.spans)
        board = Board(ServiceName(h.board.driver_service), spans,
                      DirectionLimits(h.board.limits.inbound_max, h.board.limits.outbound_max))
        services = tuple(Service(ServiceName(sn), frozenset(s.runs_as), s.critical) for sn, s in h.services.items())
        trunks = tuple(SipTrunk(t.name, t.channels, t.driver) for t in h.trunks)
        hosts.append(Host(HostId(name), h.role, board, h.fax_channels, services, _db_files(h.db_config_files),
                          trunks))
    db_sites = tuple(DbSite(DbSiteId(n), s.host, s.port) for n, s in m.databases.sites.items())
    servers = tuple(
        ManagedServer(HostId(name), s.datacenter, s.kind, tuple(ServiceName(n) for n in s.services),
                      _db_files(s.db_config_files),
                      tuple(ScheduledJob(j, job.backend, job.schedule) for j, job in s.jobs.items()), s.role,
                      tuple(SwitchFile(f.id, tuple(f.values)) for f in s.switch_files))
        for name, s in m.servers.items())
    cap = CapacityPolicy(m.capacity.channels_per_ivr_call, m.capacity.channels_per_agent_call,
                         m.capacity.reserve_for_transfers)
    return Site(m.site.name, tuple(hosts), db_sites, DbSiteId(m.databases.active), cap, tuple(m.datacenters),
                servers)


def _db_files(files: list[DbFileModel]) -> tuple[DbConfigFile, ...]:
    return tuple(DbConfigFile(f.id, f.path, tuple(ServiceName(r) for r in f.readers)) for f in files)


def to_policy(m: RulesFileModel) -> Policy:
    rules = tuple(
        Rule(r.id, r.description, RoleMatch(r.match.role), frozenset(r.match.faults), r.action, r.debounce_s,
             frozenset(r.match.services) if r.match.services is not None else None, r.approval, r.source,
             dict(r.debounce_by_fault_s), tuple(r.repoint_order) if r.repoint_order is not None else None)
        for r in m.rules
    )
    return Policy(rules, m.policy.hold_down_s, m.policy.default_debounce_s)
