"""One small JSON state file written atomically: temp file in the same directory, fsync, rename over.

A reader sees the old file or the new one, never half of either; a failed write leaves no temp file.
Callers decide what a failure means (both agent state files log it and keep the value in memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, **dump: Any) -> None:
    """Write `data` as JSON to `path` atomically; raises OSError when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, **dump)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
