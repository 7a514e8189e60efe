"""The agent's AmiMonitor (real panoramisk over TCP) against the lab AMI server: spans, driver, calls, AMI loss."""

from __future__ import annotations

import logging
import time

import pytest

from agents.ami import AmiSnapshot, CallCounts, DriverState
from tests.lab.harness import monitored_lab
from tests.support import async_wait_until


def span(snap: AmiSnapshot, number: int):
    return next(s for s in snap.spans if s.span == number)


@pytest.mark.asyncio
async def test_startup_reconcile_builds_the_full_picture() -> None:
    async with monitored_lab() as (lab, mon):
        lab.set_calls(ivr=2, agent=1)
        lab.start_fax_call()
        await mon.refresh()
        snap = mon.snapshot()
        assert snap.connected and snap.driver is DriverState.UP and snap.error is None
        assert [(s.span, s.alarm, s.dchannel, s.channels, s.healthy) for s in snap.spans] == [
            (1, "ok", True, 30, True), (2, "ok", True, 30, True)]
        assert snap.calls == CallCounts(ivr=2, agent=1, fax=1)
        assert (snap.channels_available, snap.channels_free) == (60, 56)


@pytest.mark.asyncio
async def test_span_alarm_and_clear_are_seen_within_100_ms() -> None:
    seen: list[tuple[float, AmiSnapshot]] = []  # (when the agent published it, what it published)
    async with monitored_lab(monitor={"on_change": lambda snap: seen.append((time.monotonic(), snap))}) as (lab, mon):
        for alarm, expected, available in (("red", "red", 30), ("clear", "ok", 60), ("yellow", "yellow", 30)):
            mon.changed.clear()
            started = time.monotonic()
            lab.set_span_alarm(1, alarm)
            await async_wait_until(lambda e=expected, t0=started: any(
                span(s, 1).alarm == e for t, s in seen if t >= t0), timeout=2, describe=mon.snapshot)
            detected = next(t for t, s in seen if t >= started and span(s, 1).alarm == expected)
            assert detected - started < 0.1, f"{alarm} took {(detected - started) * 1000:.1f} ms"
            assert mon.changed.is_set()
            await async_wait_until(lambda a=available: mon.snapshot().channels_available == a, timeout=2)


@pytest.mark.asyncio
async def test_dchannel_down_is_found_by_polling() -> None:
    async with monitored_lab(monitor={"reconcile_interval_s": 0.05}) as (lab, mon):
        polls = mon.reconciles
        lab.set_dchannel(2, False)
        await async_wait_until(lambda: not span(mon.snapshot(), 2).dchannel and mon.reconciles > polls, timeout=2,
                               describe=mon.snapshot)
        snap = mon.snapshot()
        assert span(snap, 2).alarm == "ok" and not span(snap, 2).healthy
        assert snap.channels_available == 30
        lab.set_dchannel(2, True)
        await async_wait_until(lambda: mon.snapshot().channels_available == 60, timeout=2, describe=mon.snapshot)


@pytest.mark.asyncio
@pytest.mark.parametrize("report", ["all", "channels", "none"])
async def test_board_driver_stop_and_start(report: str) -> None:
    interval = 0.05 if report == "none" else 3600.0  # with no alarm events only polling can tell
    async with monitored_lab(monitor={"reconcile_interval_s": interval}, reportalarms=report) as (lab, mon):
        lab.set_calls(ivr=1, agent=1)
        await async_wait_until(lambda: mon.snapshot().calls.agent == 1, timeout=2)
        lab.stop_driver()
        await async_wait_until(lambda: mon.snapshot().driver is DriverState.DOWN, timeout=2, describe=mon.snapshot)
        snap = mon.snapshot()
        assert snap.channels_available == 0 and snap.calls == CallCounts(0, 0, 0) and snap.connected
        assert "Not Open" in snap.driver_detail and {s.alarm for s in snap.spans} == {"notopen"}
        lab.start_driver()
        await async_wait_until(lambda: mon.snapshot().channels_available == 60, timeout=2, describe=mon.snapshot)
        assert mon.snapshot().driver is DriverState.UP


@pytest.mark.asyncio
async def test_chan_dahdi_not_loaded_means_no_board() -> None:
    async with monitored_lab(chan_dahdi_loaded=False) as (_lab, mon):
        snap = mon.snapshot()
        assert snap.connected and snap.driver is DriverState.DOWN and snap.driver_detail == "chan_dahdi not loaded"
        assert snap.channels_available == 0 and snap.error is None


@pytest.mark.asyncio
async def test_calls_counted_through_their_life() -> None:
    async with monitored_lab() as (lab, mon):
        def counts() -> CallCounts:
            return mon.snapshot().calls

        first = lab.start_ivr_call()
        second = lab.start_ivr_call(span=2)
        await async_wait_until(lambda: counts() == CallCounts(2, 0, 0), timeout=2, describe=counts)
        lab.transfer_to_agent(first)
        await async_wait_until(lambda: counts() == CallCounts(1, 1, 0), timeout=2, describe=counts)
        fax = lab.start_fax_call()
        await async_wait_until(lambda: counts() == CallCounts(1, 1, 1), timeout=2, describe=counts)
        assert mon.snapshot().channels_free == 60 - 1 - 2
        lab.end_call(first)
        lab.end_call(fax)
        await async_wait_until(lambda: counts() == CallCounts(1, 0, 0), timeout=2, describe=counts)
        lab.end_call(second)
        await async_wait_until(lambda: counts() == CallCounts(0, 0, 0), timeout=2, describe=counts)
        lab.set_calls(ivr=7, agent=4)
        await async_wait_until(lambda: counts() == CallCounts(7, 4, 0), timeout=2, describe=counts)
        await mon.refresh()  # the list view agrees with the event-driven one
        assert counts() == CallCounts(7, 4, 0) and mon.snapshot().channels_free == 60 - 7 - 8


@pytest.mark.asyncio
async def test_ami_loss_is_its_own_state_and_reconnect_resyncs() -> None:
    async with monitored_lab() as (lab, mon):
        lab.set_calls(ivr=3, agent=0)
        await async_wait_until(lambda: mon.snapshot().calls.ivr == 3, timeout=2)
        await lab.shutdown()
        await async_wait_until(lambda: not mon.snapshot().connected, timeout=2)
        snap = mon.snapshot()
        assert "shut down" in (snap.error or "")
        assert snap.channels_available == 60 and snap.driver is DriverState.UP  # last known, not "lines down"
        assert mon.link.connects == 1
        lab.set_calls(ivr=1, agent=2)  # changes while nobody watches
        await lab.start()
        await async_wait_until(lambda: mon.link.connects == 2 and mon.snapshot().calls == CallCounts(1, 2, 0),
                               timeout=5, describe=mon.snapshot)
        assert mon.snapshot().connected and mon.snapshot().error is None


@pytest.mark.asyncio
async def test_hung_asterisk_is_detected_by_our_ping() -> None:
    async with monitored_lab(monitor={"ping_interval_s": 0.05, "ping_timeout_s": 0.2}) as (lab, mon):
        lab.set_frozen(True)
        await async_wait_until(lambda: not mon.snapshot().connected, timeout=3, describe=mon.snapshot)
        assert "Ping not answered" in (mon.snapshot().error or "")
        lab.set_frozen(False)
        await async_wait_until(lambda: mon.snapshot().connected and mon.link.connects >= 2, timeout=5,
                               describe=mon.snapshot)


@pytest.mark.asyncio
async def test_garbage_on_the_wire_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agents.ami")
    async with monitored_lab() as (lab, mon):
        lab.inject_raw(b"%%%% this is not AMI %%%%\r\n\r\n")
        lab.inject_raw(b"Event: Newchannel\r\nEvent: Newchannel\r\nChannel: DAHDI/i1/x-1\r\n\r\n")
        lab.inject_raw(b"Event: Newchannel\r\nrandom junk line\r\nChannel: DAHDI/i1/777-99\r\n\r\n")
        lab.inject_raw(b"\xff\xfe\x00binary\r\n\r\n\r\n")
        lab.start_ivr_call()
        await async_wait_until(lambda: mon.snapshot().calls.ivr == 2, timeout=2, describe=mon.snapshot)
        assert mon.link.connected and mon.link.connects == 1  # no reconnect: nothing was fatal
        text = caplog.text
        assert "this is not AMI" in text and "random junk line" in text and "no single Event" in text


@pytest.mark.asyncio
async def test_login_refused_is_reported_and_retried() -> None:
    async with monitored_lab(monitor={"backoff_initial_s": 0.01}, wait_ready=False, agent_secret="wrong") as (lab, mon):
        await async_wait_until(lambda: lab.actions_received["login"] >= 2, timeout=5)
        snap = mon.snapshot()
        assert not snap.connected and snap.error == "Login refused: Authentication failed"
        assert mon.link.connects == 0 and "wrong" not in repr(mon.config)
