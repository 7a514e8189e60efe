"""Repoint whitelisted database config files at another database site: back up, write atomically, verify,
and put the original back on any failure.

Only files listed in the site config can be touched (by id, or by a path that resolves to a listed
file); anything else is refused. A change is: timestamped backup in backup_dir (written and fsynced under
a temporary name, then hard-linked to its final name, which never overwrites an older backup, so a file
named `*.bak` is always whole) -> temp file in the same directory -> fsync -> rename over -> fsync the
directory -> re-read and check the value. If any of that fails, the temp file is removed and, if the
file changed, the backup is written back the same atomic way. A process killed at any point leaves the
file old or new, never torn (tests/safety/test_crash_config_files.py kills it at every system call); the
temporary files such a kill leaves behind are removed by the next change of the same file. A file that
already names the target is left alone (no write, no backup), so a retried step is harmless. File I/O is
blocking: callers on the event loop use `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agents.files.formats import FileSpec, FormatError, read_value, replace_value

log = logging.getLogger(__name__)
ENCODING = ("utf-8", "surrogateescape")  # any byte survives a decode/encode round trip
TMP_SUFFIX = ".ccfo-tmp"
_NO_LINK = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK)  # file systems without hard links


class NotWhitelisted(PermissionError):
    """The file is not one of the host's whitelisted database config files."""


class UnknownSite(ValueError):
    """Not one of the site config's database sites."""


class RepointError(Exception):
    """The repoint failed; `restored` says whether the original content is back in place."""

    def __init__(self, message: str, *, restored: bool) -> None:
        super().__init__(message)
        self.restored = restored


@dataclass(frozen=True, slots=True)
class DbTarget:
    site: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class FileValue:
    """What a file points at now: its value, the database site it names (None: none), or why unknown."""

    id: str
    path: str
    value: str | None
    site: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"site": self.site, "value": self.value, "error": self.error}


@dataclass(frozen=True, slots=True)
class RepointResult:
    id: str
    path: str
    changed: bool
    old_value: str
    new_value: str
    backup: str | None

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "changed": self.changed, "old_value": self.old_value,
                "new_value": self.new_value, "backup": self.backup}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(directory: Path, prefix: str) -> None:
    """Remove what a writer killed mid-change left behind (`<prefix>XXXXXXXX.ccfo-tmp`); callers hold the lock."""
    stale = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))  # mkstemp's names
    try:
        names = [n for n in os.listdir(directory) if stale.fullmatch(n)]
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(directory / name)
            log.info("removed %s, left by an interrupted write", directory / name)


class ConfigFiles:
    """The host's whitelisted database config files. `replace` is the rename step (tests inject a failing
    one: a rename that fails, or one that lands the wrong bytes)."""

    def __init__(self, files: Sequence[FileSpec], sites: Mapping[str, DbTarget], backup_dir: Path, *,
                 clock: Callable[[], float] = time.time,
                 replace: Callable[[str, str], None] = os.replace) -> None:
        self.files = {f.id: f for f in files}
        self.sites = dict(sites)
        self.backup_dir = Path(backup_dir)
        self._clock = clock
        self._replace = replace
        self._lock = threading.Lock()

    # --- lookup and reading ------------------------------------------------------------------------
    def spec(self, file: str) -> FileSpec:
        """The whitelisted file by id or by path (compared after resolving symlinks and '..')."""
        if file in self.files:
            return self.files[file]
        wanted = os.path.realpath(file)
        for spec in self.files.values():
            if os.path.realpath(spec.path) == wanted:
                return spec
        raise NotWhitelisted(f"{file} is not a whitelisted database config file "
                             f"(whitelist: {', '.join(self.files) or 'empty'})")

    def render(self, spec: FileSpec, site: str) -> str:
        if site not in self.sites:
            raise UnknownSite(f"unknown database site {site!r} (sites: {', '.join(self.sites)})")
        t = self.sites[site]
        return spec.value.format(host=t.host, port=t.port, site=t.site)

    def current(self, file: str) -> FileValue:
        """Which database site the file points at now (for verification and the report)."""
        spec = self.spec(file)
        try:
            value = read_value(Path(spec.path).read_bytes().decode(*ENCODING), spec)
        except (OSError, FormatError) as exc:
            return FileValue(spec.id, str(spec.path), None, None, str(exc))
        site = next((s for s in self.sites if self.render(spec, s) == value), None)
        return FileValue(spec.id, str(spec.path), value, site)

    def current_all(self) -> dict[str, FileValue]:
        return {fid: self.current(fid) for fid in self.files}

    def site(self) -> str | None:
        """The database site every file points at, or None when they disagree or one is unreadable."""
        sites = {v.site for v in self.current_all().values()}
        return sites.pop() if len(sites) == 1 else None

    # --- changing ----------------------------------------------------------------------------------
    def repoint(self, file: str, to_site: str) -> RepointResult:
        spec = self.spec(file)
        target = self.render(spec, to_site)
        with self._lock:
            return self._repoint(spec, target)

    def repoint_all(self, to_site: str) -> list[RepointResult]:
        """Every whitelisted file, in config order. If one fails, the files changed before it in this run
        are put back from their backups too, so the host never points at two sites."""
        done: list[RepointResult] = []
        for fid in self.files:
            try:
                done.append(self.repoint(fid, to_site))
            except Exception as exc:
                undone = [r.id for r in done if r.changed and self._undo(r)]
                if undone:
                    raise RepointError(f"{exc}; also put back: {', '.join(undone)}",
                                       restored=getattr(exc, "restored", False)) from exc
                raise
        return done

    def _repoint(self, spec: FileSpec, target: str) -> RepointResult:
        path = Path(os.path.realpath(spec.path))
        try:
            original = path.read_bytes()
            info = path.stat()
            old = read_value(original.decode(*ENCODING), spec)
            if old == target:
                return RepointResult(spec.id, str(spec.path), False, old, target, None)
            new = replace_value(original.decode(*ENCODING), spec, target).encode(*ENCODING)
        except (OSError, FormatError) as exc:
            raise RepointError(f"{spec.id}: {exc}", restored=True) from exc
        try:
            backup = self._backup(spec.id, original)
        except OSError as exc:
            raise RepointError(f"{spec.id}: cannot write the backup: {exc}", restored=True) from exc
        try:
            self._atomic_write(path, new, info)
            now = read_value(path.read_bytes().decode(*ENCODING), spec)
            if now != target:
                raise FormatError(f"verification failed: the file reads {now!r}, expected {target!r}")
        except (OSError, FormatError) as exc:
            restored = self._restore(path, backup, original, info)
            raise RepointError(f"{spec.id}: {exc} (original {'restored' if restored else 'NOT restored'} "
                               f"from {backup})", restored=restored) from exc
        log.info("repointed %s (%s): %r -> %r, backup %s", spec.id, spec.path, old, target, backup)
        return RepointResult(spec.id, str(spec.path), True, old, target, str(backup))

    def _backup(self, file_id: str, data: bytes) -> Path:
        """Write the backup whole under a temporary name, then give it its final name without ever
        replacing an older backup (a hard link fails if the name exists). Created directly under its
        final name, a backup cut short by a kill would look usable and be empty or torn."""
        self.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_stale_temps(self.backup_dir, f".{file_id}.")
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        fd, tmp = tempfile.mkstemp(dir=self.backup_dir, prefix=f".{file_id}.", suffix=TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            for n in range(1000):
                candidate = self.backup_dir / (f"{file_id}.{stamp}.bak" if n == 0 else f"{file_id}.{stamp}.{n}.bak")
                try:
                    os.link(tmp, candidate)
                except FileExistsError:
                    continue
                except OSError as exc:
                    if exc.errno not in _NO_LINK or candidate.exists():
                        raise
                    os.rename(tmp, candidate)  # no hard links here; we hold the lock and the name is free
                break
            else:
                raise FileExistsError(f"no free backup name for {file_id} at {stamp}")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _fsync_dir(self.backup_dir)
        return candidate

    def _atomic_write(self, path: Path, data: bytes, like: os.stat_result) -> None:
        _remove_stale_temps(path.parent, f".{path.name}.")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), stat.S_IMODE(like.st_mode))
                if os.geteuid() == 0:
                    os.fchown(f.fileno(), like.st_uid, like.st_gid)
                os.fsync(f.fileno())
            self._replace(tmp, str(path))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    def _restore(self, path: Path, backup: Path, original: bytes, info: os.stat_result) -> bool:
        try:
            if path.read_bytes() == original:
                return True
        except OSError:
            pass
        try:
            data = backup.read_bytes()
        except OSError:
            data = original
        try:
            self._atomic_write(path, data, info)
            return path.read_bytes() == original
        except OSError:
            log.exception("could not restore %s from %s", path, backup)
            return False

    def _undo(self, result: RepointResult) -> bool:
        """Put back a file changed earlier in a failed repoint_all (best effort, logged)."""
        if result.backup is None:
            return False
        path = Path(os.path.realpath(result.path))
        try:
            with self._lock:
                self._atomic_write(path, Path(result.backup).read_bytes(), path.stat())
            return True
        except OSError:
            log.exception("could not put back %s from %s", result.path, result.backup)
            return False
