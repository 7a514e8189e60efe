"""Whitelisted database config files: read which site they point at, repoint them safely (repoint.py),
in a declared format (formats.py). Build from the site config with `from_host_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agents.files.formats import FileSpec, FormatError, read_value, replace_value
from agents.files.repoint import (
    ConfigFiles,
    DbTarget,
    FileValue,
    NotWhitelisted,
    RepointError,
    RepointResult,
    UnknownSite,
)

if TYPE_CHECKING:
    from ccfo.config.loader import LoadedConfig

__all__ = [
    "ConfigFiles",
    "DbTarget",
    "FileSpec",
    "FileValue",
    "FormatError",
    "NotWhitelisted",
    "RepointError",
    "RepointResult",
    "UnknownSite",
    "from_host_config",
    "read_value",
    "replace_value",
]


def from_host_config(loaded: LoadedConfig, host: str) -> ConfigFiles:
    """ConfigFiles for `host` (an IPC host or a managed server) of a LoadedConfig: its db_config_files (paths
    resolved against the config directory), the database sites, and its backup_dir."""
    site = loaded.site_model
    model = site.hosts[host] if host in site.hosts else site.servers[host]
    files = [FileSpec(f.id, Path(loaded.resolve(f.path)), f.format, f.section, f.key, f.pattern, f.value,
                      tuple(f.readers)) for f in model.db_config_files]
    sites = {name: DbTarget(name, s.host, s.port) for name, s in site.databases.sites.items()}
    return ConfigFiles(files, sites, Path(loaded.resolve(model.backup_dir)))
