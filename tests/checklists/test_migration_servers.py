"""The migration checklist's machine steps as `action` steps on the managed servers (plan: server), each with
its rollback action: loaded and checked against site.yaml (a wrong server or file is an error with file:line),
and, on the executor over the in-memory world, a batch run forward then rolled back step by step in reverse
leaves every server's services, jobs and switch files as before."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from ccfo.config.loader import load_config
from ccfo.config.yamlpos import ConfigError
from ccfo.domain.health import ServiceState
from ccfo.domain.state import SiteState
from controller.checklists.checks import build_plan
from controller.checklists.loader import load_checklist
from controller.checklists.model import StepKind
from controller.checklists.specs import ActionKind, ActionSpec
from controller.cli import main
from controller.executor import Executor
from controller.journal import Journal
from controller.store import PlanStatus, Store
from tests.configkit import copy_config, edit
from tests.controller.fakeworld import FakeWorld

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(REPO / "config")
MIGRATION = REPO / "config" / "checklists" / "datacenter-migration.yaml"
MACHINE_STEPS = {"batch-1-online-service": ["cs-switch-entry"],
                 "batch-2-ta-import": ["ta-stop-shanghai-tasks", "ta-create-shenzhen-tasks"],
                 "batch-3-app-db-test": ["app-to-test-env"],  # its repoints are rule 4's plan (repoint_db)
                 "batch-4-app-db-cutover": ["stop-shanghai-app", "start-shenzhen-app"],
                 "batch-5-sms-email": ["sms-switch-sender"]}


CLOSING = {"batch-3-app-db-test": ["app-back"]}


def test_every_machine_step_is_a_server_action_with_a_server_rollback() -> None:
    checklist = load_checklist(MIGRATION, CFG.site)
    for ids in MACHINE_STEPS.values():
        for step_id in ids:
            step = checklist.step(step_id)
            assert step.kind is StepKind.ACTION and isinstance(step.spec, ActionSpec), step_id
            assert step.spec.action is ActionKind.SERVER and step.spec.steps, step_id
            assert step.rollback is not None and isinstance(step.rollback.spec, ActionSpec), step_id
            assert step.rollback.spec.action is ActionKind.SERVER, step_id
    assert checklist.step("cold-backup").kind is StepKind.MANUAL, "what only a person can do stays manual"
    assert checklist.step("ta-stop-shanghai-tasks").spec.describe() == "job disable ta-import on ta-sh"  # type: ignore[union-attr]


BAD_STEPS = [
    ("{server: ta-sh, job_disable: ta-import}]}\n        rollback", "{server: ta-nowhere, job_disable: ta-import}]}\n"
     "        rollback", "steps[0].server: unknown server 'ta-nowhere'"),
    ("- {server: cs-sz, set_file: cs-entry, to: shenzhen}", "- {server: app-sz, set_file: cs-entry, to: shenzhen}",
     "steps[0].set_file: 'cs-entry' is not in app-sz's whitelist of switch files (switch_files: sms-gateway)"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_STEPS)
def test_a_wrong_server_or_file_is_an_error_with_file_and_line(tmp_path: Path, old: str, new: str,
                                                              message: str) -> None:
    path = tmp_path / "datacenter-migration.yaml"
    shutil.copy(MIGRATION, path)
    text = path.read_text()
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load_checklist(path, CFG.site, display="migration.yaml")
    found = [str(p) for p in exc.value.problems]
    assert any(p.startswith(f"migration.yaml:{line}: ") and message in p for p in found), found


@pytest.mark.parametrize(("old", "new", "message"), BAD_STEPS)
def test_check_config_refuses_a_batch_step_naming_an_unknown_server_or_file(tmp_path: Path, capsys, old: str,
                                                                            new: str, message: str) -> None:
    d = copy_config(tmp_path)
    line = edit(d / "checklists" / "datacenter-migration.yaml", old, new)
    assert main(["check-config", "--config", str(d)]) == 2
    out = capsys.readouterr()
    where = f"{d}/checklists/datacenter-migration.yaml:{line}: "
    assert any(x.startswith(where) and message in x for x in out.err.splitlines()), out.err
    assert "Traceback" not in out.err and "config OK" not in out.out


def test_check_config_passes_the_shipped_config_and_its_checklists(capsys) -> None:
    assert main(["check-config", "--config", str(REPO / "config")]) == 0
    out = capsys.readouterr().out
    assert "config OK: site fundco-callcenter" in out
    assert "checklists OK: datacenter-migration (39 steps), weekend-upgrade (" in out


def before_migration() -> FakeWorld:
    """The site before the migration: Shanghai serves, the Shenzhen machines are ready but idle."""
    w = FakeWorld(CFG.site, SiteState.normal(CFG.site))
    for name, server in CFG.site_model.servers.items():
        shanghai = CFG.site_model.servers[name].datacenter == "shanghai"
        m = w.servers[name]
        m.services = {s: ServiceState.ACTIVE if shanghai else ServiceState.INACTIVE for s in m.services}
        m.jobs = dict.fromkeys(m.jobs, shanghai)
        m.files = {f.id: "shanghai" for f in server.switch_files}
    return w


def snapshot(w: FakeWorld) -> dict[str, Any]:
    return {n: copy.deepcopy((m.services, m.jobs, m.files, m.db_site)) for n, m in w.servers.items()}


async def run(tmp: Path, w: FakeWorld, spec: ActionSpec, tag: str) -> None:
    plan = build_plan(spec, CFG.site, SiteState.normal(CFG.site), "migration test", repoint_order=CFG.repoint_order)
    journal, store = Journal(tmp / f"{tag}-j.sqlite"), Store(tmp / f"{tag}-s.sqlite")
    try:
        rec = store.add_plan(plan, status=PlanStatus.RUNNING, source="checklist", requested_by="t", reason="r",
                             now=1.0)

        async def on_state(s: SiteState) -> None:
            pass
        out = await Executor(w, w, w, journal, store, host_ids=CFG.site.host_ids).run(rec, SiteState.normal(CFG.site),
                                                                                    on_state)
        assert out.status is PlanStatus.FINISHED, out.error
        assert len(journal.query(plan_id=rec.id, kinds="step_finished", limit=None)) == len(plan.steps)
    finally:
        journal.close()
        store.close()


@pytest.mark.asyncio
async def test_each_batch_forward_then_rolled_back_in_reverse_leaves_every_server_as_before(tmp_path):
    """The batches in their order from the site before the migration: each one run, rolled back (the servers
    as before it), then run again to go on to the next."""
    checklist = load_checklist(MIGRATION, CFG.site)
    w = before_migration()
    for phase, ids in MACHINE_STEPS.items():
        before = snapshot(w)
        steps = [checklist.step(i) for i in ids]
        for i, step in enumerate(steps):
            await run(tmp_path, w, step.spec, f"{phase}-fwd{i}")  # type: ignore[arg-type]
        moved = snapshot(w)
        assert moved != before, f"{phase} changed the servers"
        for i, step in enumerate(reversed(steps)):
            await run(tmp_path, w, step.rollback.spec, f"{phase}-back{i}")  # type: ignore[union-attr,arg-type]
        assert snapshot(w) == before, f"{phase}: the rollback put every service, job and file back"
        for i, step in enumerate(steps):
            await run(tmp_path, w, step.spec, f"{phase}-again{i}")  # type: ignore[arg-type]
        assert snapshot(w) == moved
        for step_id in CLOSING.get(phase, ()):  # a test batch ends by putting its test environment away
            await run(tmp_path, w, checklist.step(step_id).spec, f"{phase}-close")  # type: ignore[arg-type]
        if phase in CLOSING:
            assert snapshot(w) == before, f"{phase} is a test: it leaves the servers as it found them"
    after = snapshot(w)
    assert after["app-sz"][0]["appserver"] is ServiceState.ACTIVE
    assert after["app-sh"][0]["appserver"] is ServiceState.INACTIVE
    assert after["ta-sz"][1] == {"ta-import": True} and after["ta-sh"][1] == {"ta-import": False}
    assert after["cs-sh"][2] == after["cs-sz"][2] == {"cs-entry": "shenzhen"}
    assert after["sms-sz"][1] == {"sms-send": True, "mail-send": True} and after["app-sz"][2] == {
        "sms-gateway": "shenzhen"}
