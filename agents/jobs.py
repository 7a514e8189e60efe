"""A managed server's scheduled jobs (site.yaml servers.NAME.jobs): list them with their next run, enable, disable.

Two backends. `cron`: the agent owns the job's cron file (cron.d format: SCHEDULE USER COMMAND) and
rewrites it atomically (temp file in the same directory, fsync, rename, fsync the directory), mode 0644
as cron requires; disabling comments the line out with a marker, enabling writes it back, and a file
that held something else is kept in backup_dir first. The next run is computed purely from the schedule
(ccfo.domain.schedule) in the machine's local time, as cron reads it. `systemd`: the timer unit is
enabled or disabled with `systemctl enable --now` / `disable --now`, its state read with `is-enabled`,
its next run with `show -p NextElapseUSecRealtime --timestamp=unix`. Blocking file I/O and commands run
in threads; a change is verified by reading the state back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccfo.domain.schedule import ScheduleError, parse_cron

log = logging.getLogger("ccfo.agent.jobs")
DISABLED_MARK = "#ccfo-disabled# "
COMMAND_TIMEOUT_S = 15.0


class JobError(Exception):
    """A job could not be read, enabled or disabled; the message names the job and the cause."""


class UnknownJob(KeyError):
    """Not a job of this server."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    backend: str  # "cron" | "systemd"
    schedule: str | None = None
    command: str | None = None
    user: str = "root"
    cron_file: Path | None = None
    timer: str | None = None

    @property
    def cron_line(self) -> str:
        return f"{self.schedule} {self.user} {self.command}"

    @property
    def timer_unit(self) -> str:
        return self.timer or f"{self.name}.timer"


@dataclass(frozen=True, slots=True)
class JobStatus:
    name: str
    backend: str
    state: str  # enabled | disabled | absent (no cron file yet) | unknown (unreadable, foreign content)
    next_run: float | None  # Unix seconds; None when disabled or unknown
    schedule: str | None
    where: str  # the cron file or the timer unit
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "state": self.state, "next_run": self.next_run,
                "next_run_text": _iso(self.next_run), "schedule": self.schedule, "where": self.where,
                "detail": self.detail}


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Temp file beside `path`, fsync, rename over it, fsync the directory: old or new, never torn."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".ccfo-tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class CronJobs:
    """The cron backend: one cron file per job, owned by the agent."""

    def __init__(self, backup_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.backup_dir = backup_dir
        self._clock = clock

    def _content(self, spec: JobSpec, enabled: bool) -> str:
        head = f"# Managed by ccfo (server job {spec.name}): enable and disable it through ccfo, not by hand.\n"
        return head + ("" if enabled else DISABLED_MARK) + spec.cron_line + "\n"

    def status(self, spec: JobSpec) -> JobStatus:
        assert spec.cron_file is not None
        where = str(spec.cron_file)
        try:
            text = spec.cron_file.read_text()
        except FileNotFoundError:
            return JobStatus(spec.name, "cron", "absent", None, spec.schedule, where, "no cron file yet")
        except OSError as exc:
            return JobStatus(spec.name, "cron", "unknown", None, spec.schedule, where, f"cannot read: {exc}")
        lines = [ln.strip() for ln in text.splitlines()]
        if spec.cron_line in lines:
            return JobStatus(spec.name, "cron", "enabled", self.next_run(spec), spec.schedule, where)
        if DISABLED_MARK + spec.cron_line in lines:
            return JobStatus(spec.name, "cron", "disabled", None, spec.schedule, where)
        return JobStatus(spec.name, "cron", "unknown", None, spec.schedule, where,
                         "the file does not hold the configured line (edited by hand?)")

    def next_run(self, spec: JobSpec) -> float | None:
        """The next run after now, in the machine's local time as cron reads the schedule."""
        try:
            now = datetime.fromtimestamp(self._clock()).astimezone()
            return parse_cron(spec.schedule or "").next_run(now).timestamp()
        except ScheduleError:
            return None

    def set(self, spec: JobSpec, enabled: bool) -> JobStatus:
        assert spec.cron_file is not None
        path = spec.cron_file
        wanted = self._content(spec, enabled)
        try:
            old = path.read_text() if path.exists() else None
            if old == wanted:
                return self.status(spec)
            if old is not None and old.replace(DISABLED_MARK, "") != self._content(spec, True):
                self._keep(spec, path)  # someone else's content: keep it before replacing it
            write_text_atomic(path, wanted)
        except OSError as exc:
            raise JobError(f"{spec.name}: cannot write {path}: {exc}") from exc
        status = self.status(spec)
        if status.state != ("enabled" if enabled else "disabled"):
            raise JobError(f"{spec.name}: {path} reads back {status.state}: {status.detail}")
        log.info("job %s %s (%s)", spec.name, status.state, path)
        return status

    def _keep(self, spec: JobSpec, path: Path) -> None:
        self.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        shutil.copy2(path, self.backup_dir / f"job-{spec.name}.{stamp}.cron.bak")


class SystemdTimers:
    """The systemd backend: `systemctl` (argv prefix injectable) on the job's timer unit."""

    def __init__(self, systemctl: Sequence[str] = ("systemctl",)) -> None:
        self.systemctl = tuple(systemctl)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.systemctl, *args], capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise JobError(f"systemctl {' '.join(args)}: {exc}") from exc

    def status(self, spec: JobSpec) -> JobStatus:
        unit = spec.timer_unit
        try:
            word = self._run("is-enabled", unit).stdout.strip()
        except JobError as exc:
            return JobStatus(spec.name, "systemd", "unknown", None, None, unit, str(exc))
        if word not in ("enabled", "disabled"):
            return JobStatus(spec.name, "systemd", "unknown", None, None, unit, f"is-enabled said {word!r}")
        return JobStatus(spec.name, "systemd", word, self._next(unit) if word == "enabled" else None, None, unit)

    def _next(self, unit: str) -> float | None:
        try:
            out = self._run("show", "-p", "NextElapseUSecRealtime", "--value", "--timestamp=unix", unit).stdout.strip()
        except JobError:
            return None
        return float(out[1:]) if out.startswith("@") and out[1:].replace(".", "", 1).isdigit() else None

    def set(self, spec: JobSpec, enabled: bool) -> JobStatus:
        verb = "enable" if enabled else "disable"
        done = self._run(verb, "--now", spec.timer_unit)
        if done.returncode != 0:
            raise JobError(f"{spec.name}: systemctl {verb} --now {spec.timer_unit} failed: "
                           f"{(done.stderr or done.stdout).strip()[:200]}")
        status = self.status(spec)
        if status.state != ("enabled" if enabled else "disabled"):
            raise JobError(f"{spec.name}: {spec.timer_unit} reads back {status.state} {status.detail}".rstrip())
        log.info("job %s %sd (%s)", spec.name, verb, spec.timer_unit)
        return status


class JobManager:
    """The server's jobs by name, each on its backend; changes to one job are serialised."""

    def __init__(self, specs: Mapping[str, JobSpec], cron: CronJobs, systemd: SystemdTimers) -> None:
        self.specs = dict(specs)
        self._backends = {"cron": cron, "systemd": systemd}
        self._locks = {n: asyncio.Lock() for n in self.specs}

    def has(self, name: str) -> bool:
        return name in self.specs

    def _spec(self, name: str) -> JobSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownJob(name) from None

    async def list(self) -> list[JobStatus]:
        return [await asyncio.to_thread(self._backends[s.backend].status, s) for s in self.specs.values()]

    async def set(self, name: str, enabled: bool) -> JobStatus:
        spec = self._spec(name)
        async with self._locks[name]:
            return await asyncio.to_thread(self._backends[spec.backend].set, spec, enabled)


def jobs_from_model(jobs: Mapping[str, Any], backup_dir: Path, *, systemctl: Sequence[str] = ("systemctl",),
                    clock: Callable[[], float] = time.time) -> JobManager:
    """A JobManager from a server's validated `jobs` (ccfo.config.models.JobModel by name)."""
    specs = {name: JobSpec(name, job.backend.value, job.schedule, job.command, job.user,
                           Path(job.cron_file or f"/etc/cron.d/ccfo-{name}") if job.backend.value == "cron" else None,
                           job.timer)
             for name, job in jobs.items()}
    return JobManager(specs, CronJobs(backup_dir, clock), SystemdTimers(systemctl))
