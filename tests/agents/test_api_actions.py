"""Agent actions with real lab daemons and a real config file: verified stop/start, idempotency by
action_id (repeat, concurrent, conflicting, after a restart), refusals, routing and the line test through
the AMI side (a fake of its protocol), and the caller in every log line without the secret."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import ValidationError

from agents.actions import ActionConflict, ActionKind, ActionRefused, ActionRequest, ActionStatus
from agents.idempotency import ResultStore
from agents.services import ServiceSpec, ServiceState
from tests.agents.test_api_helpers import TOKEN, Host, executions, make_host


@pytest_asyncio.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    h = make_host(tmp_path)
    try:
        yield h
    finally:
        await h.executor.aclose()
        h.stop_daemons()


def req(action_id: str, action: str, **kw: object) -> ActionRequest:
    return ActionRequest.model_validate({"action_id": action_id, "action": action, **kw})


@pytest.mark.asyncio
async def test_start_then_stop_is_verified(host: Host) -> None:
    started = await host.executor.run(req("a1", "start", service="cti"), "ctl")
    assert (started.status, started.ok, started.data["state"]) == (ActionStatus.DONE, True, "active")
    stopped = await host.executor.run(req("a2", "stop", service="cti", reason="drill"), "ctl")
    assert stopped.ok and stopped.data == {"service": "cti", "state": "inactive", "since": stopped.data["since"],
                                           "escalated": False}
    assert host.services.services()["cti"].state is ServiceState.INACTIVE
    assert stopped.caller == "ctl" and stopped.reason == "drill" and stopped.duration_s >= 0


@pytest.mark.asyncio
async def test_a_repeated_id_returns_the_first_result_and_runs_nothing(host: Host) -> None:
    first = await host.executor.run(req("plan-1-0", "start", service="ivr"), "ctl")
    again = await host.executor.run(req("plan-1-0", "start", service="ivr", reason="retry"), "ctl")
    assert executions(host.root / "run", "ivr") == ["start"]
    assert again.replayed and not first.replayed
    assert again.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})


@pytest.mark.asyncio
async def test_concurrent_requests_with_one_id_run_once(host: Host) -> None:
    results = await asyncio.gather(*(host.executor.run(req("same", "start", service="cti"), "ctl")
                                     for _ in range(3)))
    assert executions(host.root / "run", "cti") == ["start"]
    assert [r.replayed for r in results].count(False) == 1
    assert {r.started for r in results} == {results[0].started}


@pytest.mark.asyncio
async def test_an_id_reused_for_another_request_is_refused(host: Host) -> None:
    await host.executor.run(req("x", "start", service="cti"), "ctl")
    with pytest.raises(ActionConflict, match="already used for a different request"):
        await host.executor.run(req("x", "stop", service="cti"), "ctl")
    assert executions(host.root / "run", "cti") == ["start"]


@pytest.mark.asyncio
async def test_refusals_run_nothing_and_are_not_stored(host: Host) -> None:
    with pytest.raises(ActionRefused, match=r"unknown service 'kcxp' on ipc-a \(services: cti, ivr\)"):
        await host.executor.run(req("r1", "start", service="kcxp"), "ctl")
    with pytest.raises(ActionRefused, match="unknown database site 'beijing'"):
        await host.executor.run(req("r2", "repoint_db", to_site="beijing"), "ctl")
    with pytest.raises(ActionRefused, match="unknown host"):
        await host.executor.run(req("r3", "route_inbound", hosts=["ipc-z"]), "ctl")
    assert len(host.executor.store) == 0
    assert (await host.executor.run(req("r1", "start", service="cti"), "ctl")).ok  # the id is still free


@pytest.mark.asyncio
async def test_a_stop_that_leaves_the_service_running_fails(tmp_path: Path) -> None:
    h = make_host(tmp_path, verify_timeout_s=0.3)
    real = h.services._specs["cti"]
    h.services._specs["cti"] = ServiceSpec("cti", start=real.start, stop=("true",), status=real.status)
    try:
        await h.executor.run(req("s1", "start", service="cti"), "ctl")
        result = await h.executor.run(req("s2", "stop", service="cti"), "ctl")
        assert result.status is ActionStatus.FAILED and not result.ok
        assert "service is active, not inactive" in result.detail
    finally:
        h.stop_daemons()


@pytest.mark.asyncio
async def test_isolate_and_restore_board(host: Host) -> None:
    assert (await host.executor.run(req("b1", "restore_board"), "ctl")).data["state"] == "active"
    isolated = await host.executor.run(req("b2", "isolate_board"), "ctl")
    assert isolated.ok and isolated.data["driver_service"] == "dahdi" and isolated.data["state"] == "inactive"
    assert executions(host.root / "run", "dahdi") == ["start", "stop"]


@pytest.mark.asyncio
async def test_repoint_db(host: Host) -> None:
    first = await host.executor.run(req("d1", "repoint_db", to_site="shanghai"), "ctl")
    assert first.ok and first.data["changed"] == ["cti-db"] and first.data["files"][0]["backup"]
    assert host.db_file.read_text() == "# CTI database\ndb.host=10.40.0.10\n"
    second = await host.executor.run(req("d2", "repoint_db", to_site="shanghai"), "ctl")
    assert second.ok and second.data["changed"] == [] and "nothing changed" in second.detail


@pytest.mark.asyncio
async def test_route_inbound_writes_astdb_through_ami(host: Host) -> None:
    result = await host.executor.run(req("r1", "route_inbound", hosts=["ipc-b", "ipc-a"]), "ctl")
    assert result.ok and host.ami.db == {("ccfo", "inbound_hosts"): "ipc-b,ipc-a"}
    host.ami.disconnect()
    lost = await host.executor.run(req("r2", "route_inbound", hosts=["ipc-a"]), "ctl")
    assert lost.status is ActionStatus.FAILED and "AMI not connected" in lost.detail
    assert host.ami.db == {("ccfo", "inbound_hosts"): "ipc-b,ipc-a"}


@pytest.mark.asyncio
async def test_line_test_through_ami(host: Host) -> None:
    ok = await host.executor.run(req("l1", "line_test"), "ctl")
    assert ok.ok and host.ami.line_tests == [{"number": "s", "context": "ccfo-linetest", "timeout_s": 20.0}]
    assert ok.detail == "line test s@ccfo-linetest passed: answered (reason 4)"
    host.ami.line_test_result = {"ok": False, "reason": "no answer before the timeout (reason 3)",
                                 "target": "Local/s@ccfo-linetest", "asterisk_response": "Failure",
                                 "asterisk_reason": 3, "duration_s": 20.0}
    bad = await host.executor.run(req("l2", "line_test"), "ctl")
    assert bad.status is ActionStatus.FAILED
    assert bad.detail == ("line test Local/s@ccfo-linetest failed: no answer before the timeout (reason 3); "
                          "Asterisk: Response Failure, Reason 3"), bad.detail
    assert bad.data == host.ami.line_test_result, "the failed result keeps Asterisk's reason and the target"


@pytest.mark.asyncio
async def test_results_survive_a_restart_when_persisted(tmp_path: Path) -> None:
    state = tmp_path / "state" / "actions.json"
    h1 = make_host(tmp_path, store=ResultStore(path=state))
    try:
        first = await h1.executor.run(req("p1", "start", service="cti"), "ctl")
        h2 = make_host(tmp_path, store=ResultStore(path=state))  # a restarted agent
        again = await h2.executor.run(req("p1", "start", service="cti"), "ctl")
        assert again.replayed and again.started == first.started
        assert executions(tmp_path / "run", "cti") == ["start"]
    finally:
        h1.stop_daemons()


def test_the_store_is_bounded(tmp_path: Path) -> None:
    store = ResultStore(max_entries=2, path=tmp_path / "a.json")
    for i in range(3):
        store.put(f"id{i}", "fp", {"n": i})
    store.save()
    assert store.get("id0") is None and store.get("id2") is not None
    reloaded = ResultStore(max_entries=2, path=tmp_path / "a.json")
    assert len(reloaded) == 2 and reloaded.get("id1") is not None
    (tmp_path / "a.json").write_text("{not json")
    assert len(ResultStore(path=tmp_path / "a.json")) == 0  # unreadable: logged, ignored


@pytest.mark.asyncio
async def test_actions_are_logged_with_the_caller_never_the_secret(host: Host,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await host.executor.run(req("g1", "start", service="cti", reason="planned switchover"), TOKEN.name)
    lines = [r.getMessage() for r in caplog.records if r.name == "ccfo.agent.actions"]
    assert any("g1 start cti by controller-token (reason: planned switchover): start" in m for m in lines)
    assert any("g1 start cti by controller-token: done" in m for m in lines)
    assert TOKEN.secret not in caplog.text


@pytest.mark.parametrize("body", [
    {"action_id": "a", "action": "stop"},  # no service
    {"action_id": "a", "action": "isolate_board", "service": "cti"},  # service does not apply
    {"action_id": "a", "action": "repoint_db"},
    {"action_id": "a", "action": "route_inbound", "hosts": []},
    {"action_id": "a", "action": "start", "service": "cti", "force": True},  # extra field
    {"action_id": "", "action": "line_test"},
    {"action_id": "has space", "action": "line_test"},
    {"action": "line_test"},
    {"action_id": "a", "action": "reboot"},
])
def test_malformed_requests_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ActionRequest.model_validate(body)


def test_every_action_kind_has_a_handler(tmp_path: Path) -> None:
    h = make_host(tmp_path)
    assert set(h.executor._handlers) == set(ActionKind)
