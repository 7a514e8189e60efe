"""Finding a running lab from the command line, so lab-facing commands need no `--config`, `--url` or token.

`ccfo lab up --dir DIR` (default `.lab`) leaves DIR/lab.json while its supervisor runs. A command run in
the directory that holds DIR finds it there: the lab's config tree (DIR/config), its controller API and its
operator token. `describe_default` says in one line which lab was picked, or what to pass when none runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(".lab")


@dataclass(frozen=True, slots=True)
class RunningLab:
    dir: Path
    pid: int
    api: str  # the controller's base URL (without /api/v1); with several controllers, all of them, comma-separated

    @property
    def config(self) -> Path:
        return self.dir / "config"

    @property
    def operator_token(self) -> Path:
        return self.config / "secrets" / "operator.token"


def running_lab(directory: Path = DEFAULT_DIR) -> RunningLab | None:
    """The lab whose supervisor runs in `directory`, or None (no lab.json, or its process is gone)."""
    try:
        state = json.loads((directory / "lab.json").read_text())
        pid = int(state["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (directory / "config" / "site.yaml").is_file():
        return None
    urls = state.get("api_urls")
    if isinstance(urls, list) and len(urls) > 1:  # a controller cluster: the CLI finds the leader among them
        return RunningLab(directory, pid, ",".join(str(u) for u in urls))
    return RunningLab(directory, pid, str(state.get("api", "")).removesuffix("/api/v1"))


NO_LAB_HINT = ("no --config given, no $CCFO_CONFIG, no lab running in .lab and no ./config/site.yaml: pass "
               "--config DIR (your site's config tree) or start the lab with `ccfo lab up`")


def default_config(explicit: str | None) -> tuple[str, str | None]:
    """The config directory to use and a one-line note for stderr (None: nothing to say).

    An explicit --config or $CCFO_CONFIG wins; else a running lab's config; else ./config."""
    if explicit:
        return explicit, None
    if os.environ.get("CCFO_CONFIG"):
        return os.environ["CCFO_CONFIG"], None
    lab = running_lab()
    if lab is not None:
        return str(lab.config), f"using the running lab's config {lab.config} (pass --config to choose another)"
    if not Path("config", "site.yaml").is_file():
        return "config", NO_LAB_HINT
    return "config", None
