"""docs/*.md: the commands an operator types, run for real where they can be, and links that lead somewhere.

A fenced ```sh block right after a `<!-- test -->` line is runnable. A page's runnable blocks run in
order in one bash (`set -euo pipefail`), in a fresh scratch directory with HOME there too, with the dev
venv's `ccfo` first on PATH. Blocks without the marker need root, a real systemd, Asterisk or a PDU and
are only shown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.kit import REPO

DOCS = REPO / "docs"
RUNNABLE = re.compile(r"^[ \t]*<!-- test -->[ \t]*\n[ \t]*```sh\n(.*?)^[ \t]*```", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def runnable(page: Path) -> str:
    blocks = []
    for m in RUNNABLE.finditer(page.read_text()):
        indent = re.match(r"[ \t]*", page.read_text()[m.start():]).group(0)  # type: ignore[union-attr]
        blocks.append("\n".join(line.removeprefix(indent) for line in m.group(1).splitlines()))
    return "\n".join(blocks)


PAGES = [p for p in sorted(DOCS.glob("*.md")) if runnable(p)]


def test_the_operator_pages_have_runnable_commands() -> None:
    assert {p.name for p in PAGES} >= {"installation.md", "asterisk.md", "snmp.md", "fencing.md", "operations.md",
                                       "upgrading.md", "troubleshooting.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_runnable_blocks_run(page: Path, tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + runnable(page)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for var in ("CCFO_CONFIG", "CCFO_URL", "CCFO_TOKEN", "CCFO_TOKEN_FILE"):
        env.pop(var, None)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{page.name}:\n{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n" \
                                 f"{done.stderr[-3000:]}"


def test_a_failing_block_fails(tmp_path: Path) -> None:
    page = tmp_path / "x.md"
    page.write_text("text\n\n<!-- test -->\n```sh\nccfo check-config --config nowhere\n```\n")
    assert runnable(page).strip() == "ccfo check-config --config nowhere"
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + runnable(page)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert done.returncode == 2


def test_links_between_pages_resolve() -> None:
    for page in [*DOCS.glob("*.md"), REPO / "README.md"]:
        for target in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).is_file(), f"{page.name} links to {target}"
