"""Where the recorded Asterisk transcripts live inside the repository (tests/fixtures/), and a guard.

The recordings are real Asterisk 20 wire traffic (see tests/fixtures/*/README.md). They ship with the
repository, so a missing file is a broken checkout: the lookup fails the test instead of skipping it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_ROOT = Path(__file__).resolve().parent / "fixtures"
AMI_FIXTURES = FIXTURES_ROOT / "asterisk-ami"
AGI_FIXTURES = FIXTURES_ROOT / "asterisk-agi"


def recording(path: Path) -> Path:
    """`path` if it exists; otherwise the calling test fails naming the missing file."""
    if not path.exists():
        pytest.fail(f"recorded fixture {path} is missing: it ships in the repository (tests/fixtures/)",
                    pytrace=False)
    return path
