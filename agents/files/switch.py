"""A managed server's switch files (site.yaml servers.NAME.switch_files): whitelisted files a named switch points
at one of their named values (an entry point's redirect, the SMS gateway setting), then reloads.

The change itself is the database files' mechanism (ConfigFiles: timestamped backup, atomic rewrite, read-back
verification, the original put back on failure); only the values differ: each file has its own named values
instead of the database sites. After a change the file's reload command runs (argv, no shell, with a timeout);
a reload that fails or times out puts the old content back, and the action fails saying so. The reload also runs
when the file already held the value, so a retried step whose reload was cut short completes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agents.files.formats import FileSpec, FormatError, read_value
from agents.files.repoint import ENCODING, ConfigFiles, FileValue, RepointResult, UnknownSite

if TYPE_CHECKING:
    from ccfo.config.loader import LoadedConfig

log = logging.getLogger(__name__)


class SwitchFileError(Exception):
    """The switch file could not be set or its reload failed; the message says whether the old content is back."""


@dataclass(frozen=True, slots=True)
class Reload:
    argv: tuple[str, ...]
    timeout_s: float


class SwitchFiles(ConfigFiles):
    """The server's switch files: `values[file][name]` is what `set(file, name)` writes."""

    def __init__(self, files: Sequence[FileSpec], values: Mapping[str, Mapping[str, str]],
                 reloads: Mapping[str, Reload], backup_dir: Path) -> None:
        super().__init__(files, {}, backup_dir)
        self.values = {f: dict(v) for f, v in values.items()}
        self.reloads = dict(reloads)

    def render(self, spec: FileSpec, site: str) -> str:
        values = self.values[spec.id]
        if site not in values:
            raise UnknownSite(f"{spec.id} has no value {site!r} (values: {', '.join(values)})")
        return values[site]

    def current(self, file: str) -> FileValue:
        """Which named value the file holds now (None: none of them)."""
        spec = self.spec(file)
        try:
            value = read_value(Path(spec.path).read_bytes().decode(*ENCODING), spec)
        except (OSError, FormatError) as exc:
            return FileValue(spec.id, str(spec.path), None, None, str(exc))
        name = next((n for n, v in self.values[spec.id].items() if v == value), None)
        return FileValue(spec.id, str(spec.path), value, name)

    async def set(self, file: str, name: str) -> tuple[RepointResult, str | None]:
        """Point `file` at its value `name`, then reload; (the change, the reload's output or None)."""
        try:
            result = await asyncio.to_thread(self.repoint, file, name)
        except Exception as exc:  # RepointError (restored or not), NotWhitelisted, UnknownSite
            raise SwitchFileError(str(exc)) from exc
        reload = self.reloads.get(result.id)
        if reload is None:
            return result, None
        ok, output = await _run(reload)
        if ok:
            return result, output or "ok"
        back = result.changed and await asyncio.to_thread(self._undo, result)
        state = ("the old content is back" if back else "the file was already so" if not result.changed
                 else "the old content could NOT be put back")
        raise SwitchFileError(f"{result.id}: reload {' '.join(reload.argv)} failed: {output}; {state}")


async def _run(reload: Reload) -> tuple[bool, str]:
    try:
        proc = await asyncio.create_subprocess_exec(*reload.argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return False, str(exc)
    try:
        async with asyncio.timeout(reload.timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"timed out after {reload.timeout_s:g} s"
    text = out.decode(errors="replace").strip()[:300]
    return proc.returncode == 0, text if proc.returncode == 0 else f"exit {proc.returncode}: {text}"


def switch_files_from_config(loaded: LoadedConfig, server: str) -> SwitchFiles | None:
    """The server's SwitchFiles (None without switch files), paths resolved against the config directory."""
    model = loaded.site_model.servers[server]
    if not model.switch_files:
        return None
    specs = [FileSpec(f.id, Path(loaded.resolve(f.path)), f.format, f.section, f.key, f.pattern)
             for f in model.switch_files]
    reloads = {f.id: Reload(tuple(f.reload), f.reload_timeout_s) for f in model.switch_files if f.reload}
    return SwitchFiles(specs, {f.id: f.values for f in model.switch_files}, reloads,
                       Path(loaded.resolve(model.backup_dir)))
