"""The agent's actions (start, stop, restart, isolate_board, restore_board, repoint_db, route_inbound,
line_test, and on a managed server job_enable, job_disable, set_file): request validation, execution, and
idempotency by the client-chosen action_id. set_file points a whitelisted switch file at one of its named
values (backup, atomic rewrite, verify: the repoint mechanism), then runs the file's reload command; a reload
that fails puts the old content back and fails the action.

A repeated action_id returns the stored result of the first execution and runs nothing; a request with
the same id that is still running waits for it; the same id with a different action or arguments is
refused (409 at the API). An action runs to the end even if its HTTP caller goes away, so the caller's
retry finds the result. A request that cannot apply to this host (unknown service, site, host) is
refused before anything runs and is not stored. "done" means verified: a stop is done when the service
reports inactive, a start when it reports active. Every action is logged with its caller's token name,
never with a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum, StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.files import ConfigFiles, RepointError
from agents.files.switch import SwitchFileError, SwitchFiles
from agents.idempotency import ResultStore
from agents.jobs import JobError, JobManager
from agents.ports import AmiPort
from agents.services import ServiceError, ServiceManager
from agents.terms import TermStore

log = logging.getLogger("ccfo.agent.actions")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]


class ActionKind(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    ISOLATE_BOARD = "isolate_board"
    RESTORE_BOARD = "restore_board"
    REPOINT_DB = "repoint_db"
    ROUTE_INBOUND = "route_inbound"
    LINE_TEST = "line_test"
    JOB_ENABLE = "job_enable"
    JOB_DISABLE = "job_disable"
    SET_FILE = "set_file"


# The request fields each action needs (and no others).
NEEDS: dict[ActionKind, tuple[str, ...]] = {
    ActionKind.START: ("service",), ActionKind.STOP: ("service",), ActionKind.RESTART: ("service",),
    ActionKind.REPOINT_DB: ("to_site",), ActionKind.ROUTE_INBOUND: ("hosts",), ActionKind.JOB_ENABLE: ("job",),
    ActionKind.JOB_DISABLE: ("job",), ActionKind.SET_FILE: ("file", "value")}
FIELDS = ("service", "to_site", "hosts", "job", "file", "value")
# What a managed server (no AMI, no board) cannot do.
BOARD_ACTIONS = frozenset({ActionKind.ISOLATE_BOARD, ActionKind.RESTORE_BOARD, ActionKind.ROUTE_INBOUND,
                           ActionKind.LINE_TEST})


class ActionRequest(BaseModel):
    """POST /v1/actions body. `action_id` is the idempotency key, chosen by the caller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")]
    action: ActionKind
    service: Name | None = None
    to_site: Name | None = None
    hosts: Annotated[list[Name], Field(min_length=1, max_length=16)] | None = None
    job: Name | None = None  # job_enable / job_disable: a scheduled job of this server
    file: Name | None = None  # set_file: a whitelisted switch file of this server
    value: Name | None = None  # set_file: the name of one of the file's values
    reason: Annotated[str, Field(max_length=500)] | None = None
    term: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None  # the leader's term (agents/terms.py)
    # the end of the leader's acting window (Unix time): an action arriving later is refused (agents/terms.py)
    valid_until: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _fields_match_action(self) -> ActionRequest:
        needed = NEEDS.get(self.action, ())
        for field in FIELDS:
            given = getattr(self, field) is not None
            if field in needed and not given:
                raise ValueError(f"{self.action.value} needs {field}")
            if field not in needed and given:
                raise ValueError(f"{field} does not apply to {self.action.value}")
        return self

    def fingerprint(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"action_id", "reason", "term", "valid_until"}),
                          sort_keys=True)


class ActionStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"


class ActionResult(BaseModel):
    """The outcome of one action. `replayed`: this is the stored result of an earlier request."""

    action_id: str
    action: ActionKind
    status: ActionStatus
    ok: bool
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)
    caller: str
    reason: str | None = None
    term: int | None = None
    started: float
    ended: float
    duration_s: float
    replayed: bool = False


class ActionRefused(ValueError):
    """The request cannot apply to this host (unknown service, database site, host); nothing ran."""


class ActionFailed(Exception):
    """An action that ran and did not succeed (AMI not connected, AMI error, line test failed); `data` is
    kept in the failed result (a line test's target and Asterisk's reason)."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.data = data or {}


class ActionConflict(ValueError):
    """The action_id was already used for a different request."""


def plain(value: Any) -> Any:
    """JSON-friendly copy of what an adapter returned (dataclasses, enums, tuples)."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


Handler = Callable[[ActionRequest], Awaitable[tuple[str, dict[str, Any]]]]


class ActionExecutor:
    """Runs actions for one host. Owns the tasks it starts; `aclose()` cancels those still running."""

    def __init__(self, host: str, services: ServiceManager, files: ConfigFiles, ami: AmiPort | None, *,
                 hosts: Sequence[str], routing_method: str = "astdb", astdb_family: str = "ccfo",
                 astdb_key: str = "inbound_hosts", line_test: Mapping[str, Any] | None = None,
                 store: ResultStore | None = None, clock: Callable[[], float] = time.time,
                 terms: TermStore | None = None, jobs: JobManager | None = None, board: bool = True,
                 switch_files: SwitchFiles | None = None) -> None:
        self.host = host
        self.switch_files = switch_files  # a managed server's switch files (None: none)
        self.jobs = jobs  # a managed server's scheduled jobs (None: none)
        self.board = board  # False on a managed server: no board, no AMI
        self.fence: Any = None  # fencing.method self: agents.selffence.SelfFence, refusing CTI/IVR starts
        self.services = services
        self.files = files
        self.ami = ami
        self.hosts = tuple(hosts)
        self.routing = (routing_method, astdb_family, astdb_key)
        self.line_test_args = dict(line_test or {"number": "s", "context": "ccfo-linetest", "timeout_s": 20.0})
        self.store = store if store is not None else ResultStore()
        self.terms = terms if terms is not None else TermStore()
        self._clock = clock
        self._inflight: dict[str, tuple[str, asyncio.Task[ActionResult]]] = {}
        self._routing_lock = asyncio.Lock()
        self._handlers: dict[ActionKind, Handler] = {
            ActionKind.START: self._start, ActionKind.STOP: self._stop, ActionKind.RESTART: self._restart,
            ActionKind.ISOLATE_BOARD: self._isolate, ActionKind.RESTORE_BOARD: self._restore,
            ActionKind.REPOINT_DB: self._repoint, ActionKind.ROUTE_INBOUND: self._route,
            ActionKind.LINE_TEST: self._line_test, ActionKind.JOB_ENABLE: self._job,
            ActionKind.JOB_DISABLE: self._job, ActionKind.SET_FILE: self._set_file,
        }

    def kinds(self) -> list[ActionKind]:
        """The actions this host can run (a managed server: no board actions; jobs only with jobs)."""
        return [k for k in ActionKind if (self.board or k not in BOARD_ACTIONS)
                and (self.jobs is not None or k not in (ActionKind.JOB_ENABLE, ActionKind.JOB_DISABLE))
                and (bool(self.switch_files and self.switch_files.files) or k is not ActionKind.SET_FILE)]

    # --- entry point ---------------------------------------------------------------------------------
    def check(self, req: ActionRequest) -> None:
        """Refuse what cannot apply to this host, before anything runs."""
        why = self.fence.refusal(req.action.value, req.service) if self.fence is not None else None
        if why is not None:
            raise ActionRefused(why)
        if not self.board and req.action in BOARD_ACTIONS:
            raise ActionRefused(f"{req.action.value} does not apply to {self.host}: a managed server has no board "
                                "or AMI")
        if req.job is not None and (self.jobs is None or not self.jobs.has(req.job)):
            known = ", ".join(self.jobs.specs) if self.jobs is not None and self.jobs.specs else "none"
            raise ActionRefused(f"unknown job {req.job!r} on {self.host} (jobs: {known})")
        if req.file is not None:
            known = self.switch_files.values if self.switch_files is not None else {}
            if req.file not in known:
                raise ActionRefused(f"{req.file!r} is not a whitelisted switch file of {self.host} "
                                    f"(switch files: {', '.join(known) or 'none'})")
            if req.value not in known[req.file]:
                raise ActionRefused(f"{req.file} has no value {req.value!r} (values: {', '.join(known[req.file])})")
        if req.service is not None and not self.services.has(req.service):
            raise ActionRefused(f"unknown service {req.service!r} on {self.host} "
                                f"(services: {', '.join(self.services.names())})")
        if req.to_site is not None and req.to_site not in self.files.sites:
            raise ActionRefused(f"unknown database site {req.to_site!r} (sites: {', '.join(self.files.sites)})")
        unknown = [h for h in req.hosts or () if h not in self.hosts]
        if unknown:
            raise ActionRefused(f"unknown host(s) {', '.join(unknown)} (hosts: {', '.join(self.hosts)})")

    async def run(self, req: ActionRequest, caller: str) -> ActionResult:
        self.check(req)
        self.terms.in_time(req.term, req.valid_until, self._clock())  # raises LapsedLease (409)
        if self.terms.admit(req.term):  # raises StaleTerm (409) for a deposed leader's term
            log.info("leader term %d seen first in action %s by %s", req.term, req.action_id, caller)
            await asyncio.to_thread(self.terms.save)  # persisted before anything runs
        fingerprint = req.fingerprint()
        stored = self.store.get(req.action_id)
        if stored is not None:
            self._same(req, fingerprint, stored.fingerprint)
            log.info("action %s %s by %s: repeated id, returning the stored result", req.action_id,
                     req.action.value, caller)
            return ActionResult.model_validate(stored.result).model_copy(update={"replayed": True})
        running = self._inflight.get(req.action_id)
        if running is not None:
            self._same(req, fingerprint, running[0])
            log.info("action %s %s by %s: already running, waiting for it", req.action_id, req.action.value, caller)
            result = await asyncio.shield(running[1])
            return result.model_copy(update={"replayed": True})
        task = asyncio.create_task(self._execute(req, caller, fingerprint), name=f"action-{req.action_id}")
        self._inflight[req.action_id] = (fingerprint, task)
        task.add_done_callback(lambda _t, aid=req.action_id: self._inflight.pop(aid, None))
        return await asyncio.shield(task)

    @staticmethod
    def _same(req: ActionRequest, fingerprint: str, first: str) -> None:
        if fingerprint != first:
            raise ActionConflict(f"action_id {req.action_id!r} was already used for a different request: {first}")

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Let running actions finish for up to `grace_s`, then cancel the rest."""
        tasks = [t for _, t in self._inflight.values()]
        if tasks and grace_s > 0:
            log.info("waiting up to %g s for %d running action(s)", grace_s, len(tasks))
            await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _execute(self, req: ActionRequest, caller: str, fingerprint: str) -> ActionResult:
        what = req.action.value + (f" {req.service}" if req.service else "") + (
            f" to {req.to_site}" if req.to_site else "") + (f" to {','.join(req.hosts)}" if req.hosts else "") + (
            f" {req.job}" if req.job else "") + (f" {req.file} to {req.value}" if req.file else "")
        log.info("action %s %s by %s%s: start", req.action_id, what, caller,
                 f" (reason: {req.reason})" if req.reason else "")
        started = self._clock()
        t0 = time.monotonic()
        try:
            detail, data = await self._handlers[req.action](req)
            status = ActionStatus.DONE
        except (ServiceError, RepointError, ActionFailed, JobError, SwitchFileError) as exc:
            detail, data, status = str(exc), getattr(exc, "data", {}), ActionStatus.FAILED
        except Exception as exc:  # an adapter bug must become a failed action, not a dead agent
            log.exception("action %s %s by %s: unexpected error", req.action_id, what, caller)
            detail, data, status = f"internal error: {type(exc).__name__}: {exc}", {}, ActionStatus.FAILED
        duration = time.monotonic() - t0
        result = ActionResult(action_id=req.action_id, action=req.action, status=status,
                              ok=status is ActionStatus.DONE, detail=detail, data=plain(data), caller=caller,
                              reason=req.reason, term=req.term, started=started, ended=started + duration,
                              duration_s=duration)
        self.store.put(req.action_id, fingerprint, result.model_dump(mode="json"))
        await asyncio.to_thread(self.store.save)
        log.log(logging.INFO if result.ok else logging.WARNING, "action %s %s by %s: %s in %.2f s: %s",
                req.action_id, what, caller, status.value, duration, detail)
        return result

    # --- the actions ---------------------------------------------------------------------------------
    async def _start(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        st = await self.services.start(req.service or "")
        return f"{st.name} is {st.state.value}", {"service": st.name, **st.to_dict()}

    async def _stop(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        out = await self.services.stop_escalating(req.service or "")
        st = out.status
        return out.detail, {"service": st.name, **st.to_dict(), "escalated": out.escalated}

    async def _restart(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        st = await self.services.restart(req.service or "")
        return f"{st.name} restarted, {st.state.value}", {"service": st.name, **st.to_dict()}

    async def _isolate(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        st = await self.services.isolate_board()
        return f"board isolated: driver {st.name} is {st.state.value}", {"driver_service": st.name, **st.to_dict()}

    async def _restore(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        st = await self.services.restore_board()
        return f"board restored: driver {st.name} is {st.state.value}", {"driver_service": st.name, **st.to_dict()}

    async def _repoint(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        site = req.to_site or ""
        results = await asyncio.to_thread(self.files.repoint_all, site)
        changed = [r.id for r in results if r.changed]
        detail = (f"repointed {', '.join(changed)} to {site}" if changed
                  else f"already pointing at {site}: nothing changed") if results else "no database config files"
        return detail, {"to_site": site, "files": [r.to_dict() for r in results], "changed": changed}

    async def _job(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        assert self.jobs is not None  # check() refused a job on a server without jobs
        st = await self.jobs.set(req.job or "", req.action is ActionKind.JOB_ENABLE)
        when = f", next run {st.to_dict()['next_run_text']}" if st.next_run is not None else ""
        return f"job {st.name} {st.state} ({st.where}){when}", st.to_dict()

    async def _set_file(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        assert self.switch_files is not None  # check() refused a file on a server without switch files
        result, reload = await self.switch_files.set(req.file or "", req.value or "")
        detail = (f"{result.id} now {req.value} ({result.new_value})" if result.changed
                  else f"{result.id} already {req.value}: nothing changed")
        return detail + (f"; reloaded: {reload}" if reload is not None else ""), {
            "file": result.to_dict(), "value": req.value, "reload": reload}

    def _ami(self, what: str) -> AmiPort:
        if self.ami is None:
            raise ActionFailed(f"{what}: this agent has no AMI link")
        if not self.ami.snapshot().connected:
            raise ActionFailed(f"{what}: AMI not connected")
        return self.ami

    async def _route(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        method, family, key = self.routing
        value = ",".join(req.hosts or ())
        if method != "astdb":
            return f"routing method is {method}: nothing written", {"method": method, "written": False}
        async with self._routing_lock:
            ami = self._ami("route_inbound")
            try:
                await ami.db_put(family, key, value)
            except Exception as exc:
                raise ActionFailed(f"route_inbound: AstDB {family}/{key} not written: {exc}") from exc
        return f"inbound calls routed to {value} (AstDB {family}/{key})", {
            "method": method, "family": family, "key": key, "value": value, "written": True}

    async def _line_test(self, req: ActionRequest) -> tuple[str, dict[str, Any]]:
        target = f"{self.line_test_args['number']}@{self.line_test_args['context']}"
        ami = self._ami("line_test")
        try:
            outcome = await ami.line_test(**self.line_test_args)
        except Exception as exc:
            raise ActionFailed(f"line test {target}: {exc}") from exc
        data = plain(outcome)
        data = data if isinstance(data, dict) else {"result": data}
        target = data.get("target") or target  # what Asterisk dialled, when it says
        if data.get("ok") is False:
            said = ""
            if data.get("asterisk_response") is not None:
                said = f"; Asterisk: Response {data['asterisk_response']}" + (
                    f", Reason {data['asterisk_reason']}" if data.get("asterisk_reason") is not None else "")
            raise ActionFailed(f"line test {target} failed: {data.get('reason') or data.get('detail') or data}{said}",
                               data)
        return f"line test {target} passed" + (f": {data['reason']}" if data.get("reason") else ""), data
