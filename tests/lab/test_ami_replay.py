"""Replay the client side of each recorded real-Asterisk session against the lab server and compare.

For every step the lab must answer with the same framing and the same messages, fields in the same
order (`replay.compare_step`), and close the socket exactly where Asterisk did. Between steps the test
waits for the lab to be idle and sends a barrier Ping, so everything the step caused is collected
without sleeping. The server is set up to match each recording (calls up, modules loaded, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab.ami import DEFAULT_MODULES, LabAmiServer
from tests.support import async_wait_until

from .amiclient import Msg, RawAmi
from .replay import check_framing, compare_step, load, solicited

WITH_SIP = set(DEFAULT_MODULES) | {"chan_sip"}


async def _other_session_sends(lab: LabAmiServer, command: str) -> None:
    other = await RawAmi.connect(lab.port)
    await other.login(events="off")
    other.send({"Action": "Command", "ActionID": "stop-other", "Command": command})


async def _call_then_stop(lab: LabAmiServer) -> None:
    lab.start_ivr_call()
    await _other_session_sends(lab, "core stop now")


@dataclass
class Case:
    name: str
    server: dict[str, Any] = field(default_factory=dict)
    setup: Callable[[LabAmiServer], None] | None = None
    after_login: Callable[[LabAmiServer], Awaitable[None]] | None = None
    skip: str | None = None


CASES = [
    Case("a1_banner_login_success_events_off"),
    Case("a2_login_wrong_secret"),
    Case("a3_login_unknown_user"),
    Case("a4_actions_before_login"),
    Case("a5_login_events_on"),
    Case("b1_coreshowchannels_idle"),
    Case("b2_coreshowchannels_3_ivr_calls", setup=lambda lab: lab.set_calls(ivr=3, agent=0)),
    Case("b3_coreshowchannels_2_agent_calls", setup=lambda lab: lab.set_calls(ivr=0, agent=2)),
    *(Case(n, skip=f"{n}: a chan_sip call flow full of dialplan/RTP events (VarSet, Newexten, RTCPSent, Dial*) "
                   "the lab does not model; the lab's own call events are checked in test_ami_calls.py")
      for n in ("c1_events_ivr_call", "c2_events_agent_call_agi_unreachable", "c3_events_direct_agent_call",
                "c4_events_agent_call_with_fastagi")),
    Case("d1_status_idle"),
    Case("d2_command", server={"modules": WITH_SIP}),
    Case("d3_ping"),
    Case("d4_listcommands", skip="d4_listcommands: the lab registers a different action set, so the one "
                                 "ListCommands message has other field names (shape checked in test_ami_session.py)"),
    Case("d5_corestatus_coresettings"),
    Case("d6_status_during_ivr_call", setup=lambda lab: lab.set_calls(ivr=1, agent=0)),
    Case("d7_chan_sip_peer_actions", skip="d7_chan_sip_peer_actions: chan_sip peers are out of the lab's scope"),
    Case("e1_originate_local100_events_on"),
    Case("e2_originate_nonexistent_exten_events_on"),
    Case("e3_originate_local100_events_off"),
    Case("e4_originate_sip_agent_events_on", skip="e4_originate_sip_agent_events_on: needs a SIP agent phone"),
    Case("e5_originate_sip_agent_unreachable_events_on",
         skip="e5_originate_sip_agent_unreachable_events_on: SIP agent originate (Reason 3 is covered by "
              "test_ami_calls.py with a DAHDI number that never answers)"),
    Case("e6_originate_sync_local999_events_off"),
    Case("f_astdb_put_get_del"),
    Case("g1_dahdi_pri_actions_chan_dahdi_not_loaded", server={"chan_dahdi_loaded": False}),
    Case("g2_dahdi_pri_actions_chan_dahdi_loaded_no_hardware",
         server={"chan_dahdi_loaded": False, "spans": [], "fax_channels": 0, "driver_running": False}),
    Case("h_modulecheck_logoff", server={"chan_dahdi_loaded": False, "modules": WITH_SIP}),
    Case("i1_shutdown_observer_events_on", after_login=lambda lab: _other_session_sends(lab, "core stop now")),
    Case("i2_shutdown_commanding_session"),
    Case("i3_shutdown_with_active_call_observer", after_login=_call_then_stop),
    Case("i4_restart_now_same_session"),
    Case("i5_restart_now_observer", after_login=lambda lab: _other_session_sends(lab, "core restart now")),
]


async def _collect(client: RawAmi, lab: LabAmiServer, step_no: int, step_action_id: str, expected: int,
                   eof: bool) -> list[Msg]:
    """The lab's messages for one step: through its answer, then everything up to a barrier Ping (or EOF)."""
    got: list[Msg] = []
    while sum(solicited(m, step_action_id) for m in got) < expected:
        try:
            got.append(await client.read())
        except asyncio.IncompleteReadError:
            return got
    if eof:
        while True:
            try:
                got.append(await client.read())
            except asyncio.IncompleteReadError:
                return got
    await async_wait_until(lambda: lab.idle, timeout=5, describe=lab.snapshot)
    barrier = f"replay-barrier-{step_no}"
    client.send({"Action": "Ping", "ActionID": barrier})
    got += await client.read_until(lambda m: m.get("ActionID") == barrier and m.keys[0] == "Response")
    return got[:-1]


@pytest.mark.asyncio
@pytest.mark.parametrize("case", CASES, ids=[c.name.split("_")[0] for c in CASES])
async def test_replay_matches_recording(case: Case) -> None:
    if case.skip:
        pytest.skip(case.skip)
    recording = load(case.name)
    kwargs: dict[str, Any] = {"login_fail_delay_s": 0.05, "time_scale": 0.01, "restart_delay_s": 0.01}
    lab = LabAmiServer("127.0.0.1", 0, **{**kwargs, **case.server})
    await lab.start()
    try:
        if case.setup:
            case.setup(lab)
        client = await RawAmi.connect(lab.port)
        assert client.received == recording.banner
        problems: list[str] = []
        for i, step in enumerate(recording.steps):
            client.send(step.request)
            expected = sum(solicited(m, step.action_id) for m in step.replies)
            early: list[Msg] = []
            if i == 0 and case.after_login:
                early = await client.read_until(lambda m, aid=step.action_id: solicited(m, aid))
                await async_wait_until(lambda: lab.sessions and all(s.authenticated for s in lab.sessions))
                await case.after_login(lab)
                expected = 0
            got = early + await _collect(client, lab, i, step.action_id, expected, step.eof)
            title = step.request.split(b"\r\n")[0].decode()
            problems += [f"step {i + 1} ({title}): {p}" for p in compare_step(step, got)]
            if step.eof:
                assert client.reader.at_eof(), f"step {i + 1}: the lab kept the socket open where Asterisk closed it"
                break
        problems += check_framing(client.received)
        assert not problems, "\n".join([case.name, *problems])
        await client.close()
    finally:
        await lab.close()
