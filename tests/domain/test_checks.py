"""Typed verify/fence checks: their text form, and that an unknown kind fails instead of passing."""

from __future__ import annotations

from typing import cast

import pytest

from ccfo.domain.checks import Check, CheckKind, CheckSyntaxError, check_holds, checks_hold, parse_check
from ccfo.domain.health import DriverState, HostHealth, ServiceState


def report(**services: ServiceState) -> HostHealth:
    return HostHealth("ipc-a", 0.0, True, DriverState.UP, (), dict(services), db_site="shenzhen")


def test_the_text_form_round_trips():
    for text in ("active:cti", "inactive:ivr", "board:down", "db:shanghai"):
        assert str(parse_check(text)) == text


@pytest.mark.parametrize("text", ["bogus:x", "active", "active:", ":cti", ""])
def test_a_malformed_or_unknown_check_is_refused_when_read(text):
    with pytest.raises(CheckSyntaxError, match="KIND:ARG"):
        parse_check(text)


def test_each_kind_is_checked():
    r = report(cti=ServiceState.ACTIVE, ivr=ServiceState.FAILED)
    assert check_holds(r, Check(CheckKind.ACTIVE, "cti"))
    assert not check_holds(r, Check(CheckKind.ACTIVE, "ivr"))
    assert check_holds(r, Check(CheckKind.INACTIVE, "ivr")), "a failed unit is not running"
    assert check_holds(r, Check(CheckKind.BOARD, "up")) and not check_holds(r, Check(CheckKind.BOARD, "down"))
    assert check_holds(r, Check(CheckKind.DB, "shenzhen")) and not check_holds(r, Check(CheckKind.DB, "shanghai"))


def test_an_unknown_check_kind_fails_never_passes():
    """Regression: the executor's `_checks_hold` skipped a kind it did not know, so the check passed."""
    unknown = Check(cast(CheckKind, "bogus"), "x")
    assert not check_holds(report(), unknown)
    assert not checks_hold(report(cti=ServiceState.ACTIVE), (Check(CheckKind.ACTIVE, "cti"), unknown))
