"""The lab AMI server: an asyncio TCP server speaking AMI like Asterisk 20 for one simulated host.

`LabAmiServer` owns the listening socket, the sessions, the simulated host (`host.py`) and every
timer or task the simulation starts, so tests can wait for it to be idle instead of sleeping. Its
methods are the control surface (faults, calls, shutdown); `control.py` exposes the same over HTTP.
It must not be imported by production code: it exists for tests, the lab and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from . import wire
from .actions import CORE_ACTIONS, Handler
from .blast import blast_payloads
from .channels import ALARM_BITS
from .dahdi_actions import DAHDI_ACTIONS
from .host import TelephonyHost
from .session import AmiSession
from .sip_actions import DEVICE_ACTIONS, PJSIP_ACTIONS, SIP_ACTIONS

log = logging.getLogger(__name__)
DEFAULT_MODULES = frozenset({"chan_dahdi", "res_agi", "app_queue", "res_fax", "app_dial", "chan_local"})
_ALARM_NAMES = [(ALARM_BITS["los"], "los")] + [(ALARM_BITS[n], n) for n in
                                               ("red", "yellow", "blue", "recovering", "loopback", "notopen")]


class LabAmiServer:
    """One simulated Asterisk host. Bind addresses are parameters; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, spans: Iterable[tuple[int, int]] = ((1, 30), (2, 30)),
                 fax_channels: int = 4, username: str = "ccfo", secret: str = "ccfo-secret",
                 chan_dahdi_loaded: bool = True, driver_running: bool = True, reportalarms: str = "all",
                 modules: Iterable[str] = DEFAULT_MODULES, login_fail_delay_s: float = 1.0,
                 time_scale: float = 1.0, restart_delay_s: float = 1.0, control_port: int | None = None,
                 control_host: str = "127.0.0.1", trunks: Iterable[tuple[str, str, int]] = (),
                 write_classes: Iterable[str] | None = None) -> None:
        self.bind_host, self.port = host, port
        self.username, self.secret = username, secret
        self.login_fail_delay_s = login_fail_delay_s
        self.restart_delay_s = restart_delay_s
        self.host = TelephonyHost(list(spans), fax_channels, reportalarms=reportalarms,
                                  chan_dahdi_loaded=chan_dahdi_loaded, driver_running=driver_running,
                                  time_scale=time_scale, emit=self.broadcast, schedule=self.schedule,
                                  trunks=list(trunks))
        self._modules = set(modules) - {"chan_dahdi"}
        # a host with trunks runs their channel drivers (res_pjsip for pjsip endpoints, chan_sip for peers)
        self._modules |= {m for t in self.host.trunks.values()
                          for m in (("res_pjsip", "chan_pjsip") if t.driver == "pjsip" else ("chan_sip",))}
        # manager.conf `write` of the lab user: None lets every action through (the lab's default); a set
        # refuses an action none of whose classes it holds with "Permission denied", as manager.c does
        self.write_classes = None if write_classes is None else {c.strip().lower() for c in write_classes}
        self.sessions: set[AmiSession] = set()
        self.actions_received: Counter[str] = Counter()
        self.stalled_actions: set[str] = set()
        self.frozen = False
        self._thaw = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session_tasks: set[asyncio.Task[Any]] = set()
        self._sleepers = 0
        self._server: asyncio.Server | None = None
        self.accepting = False
        self.started_at = time.time()
        self._control_addr = (control_host, control_port)
        self.control: Any = None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen (again, after a shutdown: same port) and start the HTTP control endpoint if asked."""
        if self._server is None:
            self._server = await asyncio.start_server(self._on_client, self.bind_host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]
            self.started_at = time.time()
            self.accepting = True
        if self._control_addr[1] is not None and self.control is None:
            from .control import ControlServer
            self.control = ControlServer(self, *self._control_addr)
            await self.control.start()

    @property
    def control_port(self) -> int | None:
        return self.control.port if self.control else None

    async def close(self) -> None:
        """Stop everything without telling clients (for test teardown)."""
        await self._stop_listening()
        for session in list(self.sessions):
            session.abort()
        self._cancel_pending()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session_tasks:  # aborted transports end them; cancelling trips an asyncio 3.11 callback bug
            await asyncio.wait(list(self._session_tasks), timeout=1.0)
        if self.control is not None:
            await self.control.close()
            self.control = None

    async def _stop_listening(self) -> None:
        self.accepting = False
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.5)

    def _cancel_pending(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        session = AmiSession(self, reader, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._session_tasks.add(task)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            if task is not None:
                self._session_tasks.discard(task)

    # ----------------------------------------------------------------- services for sessions and the host
    def broadcast(self, name: str, event_class: str, fields: list[tuple[str, str]],
                  exclude: AmiSession | None = None) -> None:
        bit = wire.EVENT_CLASSES[event_class]
        data: bytes | None = None
        for session in list(self.sessions):
            if session is not exclude and session.authenticated and session.mask & bit:
                if data is None:
                    data = wire.render_event(name, event_class, fields)
                session.write(data)

    def schedule(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` after `delay` seconds; tracked so `idle` is False until it has run."""
        holder: list[asyncio.TimerHandle] = []

        def run() -> None:
            self._timers.discard(holder[0])
            try:
                fn()
            except Exception:
                log.exception("lab AMI: scheduled step failed")

        holder.append(asyncio.get_running_loop().call_later(delay, run))
        self._timers.add(holder[0])

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("lab AMI: task failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def sleep(self, delay: float) -> None:
        self._sleepers += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self._sleepers -= 1

    @property
    def idle(self) -> bool:
        """No simulated timer, delayed answer or originate in flight (what tests wait for)."""
        return not self._timers and self._sleepers == 0 and not self._tasks

    async def unfrozen(self) -> None:
        if self.frozen:
            await self._thaw.wait()

    def uptime_s(self) -> int:
        return int(time.time() - self.started_at)

    def loaded_modules(self) -> set[str]:
        return self._modules | ({"chan_dahdi"} if self.host.chan_dahdi_loaded else set())

    def set_module(self, name: str, loaded: bool) -> None:
        if name == "chan_dahdi":
            self.host.chan_dahdi_loaded = loaded
        elif loaded:
            self._modules.add(name)
        else:
            self._modules.discard(name)

    def _actions(self) -> dict[str, tuple[Handler, str, str]]:
        loaded = self._modules
        return {**CORE_ACTIONS, **DEVICE_ACTIONS, **(DAHDI_ACTIONS if self.host.chan_dahdi_loaded else {}),
                **(SIP_ACTIONS if "chan_sip" in loaded else {}), **(PJSIP_ACTIONS if "res_pjsip" in loaded else {})}

    def permitted(self, name: str) -> bool:
        """Whether the user's write classes allow action `name` (an action of no class is always allowed)."""
        if self.write_classes is None:
            return True
        priv = next((p for n, (_, _, p) in self._actions().items() if n.lower() == name), "<none>")
        needed = {c.strip().lower() for c in priv.split(",")} - {"all", "<none>"}
        return not needed or bool(needed & self.write_classes)

    def action_handler(self, name: str) -> Handler | None:
        return next((h for n, (h, _, _) in self._actions().items() if n.lower() == name), None)

    def action_descriptions(self) -> dict[str, tuple[str, str]]:
        return {n: (desc, priv) for n, (_, desc, priv) in self._actions().items()}

    # ----------------------------------------------------------------- faults (control surface)
    def set_span_alarm(self, span: int, alarm: str) -> None:
        self.host.set_span_alarm(span, alarm)

    def set_dchannel(self, span: int, up: bool) -> None:
        self.host.set_dchannel(span, up)

    def stop_driver(self) -> None:
        self.host.stop_driver()

    def set_trunk(self, name: str, up: bool) -> None:
        self.host.set_trunk(name, up)

    def start_driver(self) -> None:
        self.host.start_driver()

    async def shutdown(self, restart: bool = False, exclude: AmiSession | None = None) -> None:
        """`core stop now` / `core restart now`: calls hang up, observers get Shutdown, then EOF ~20 ms later."""
        if not self.accepting:
            return
        await self._stop_listening()
        self.host.hangup_all(shutdown=True)
        self.broadcast("Shutdown", "system", [("Shutdown", "Cleanly"), ("Restart", str(restart))], exclude=exclude)
        await asyncio.sleep(0.02)
        for session in list(self.sessions):
            session.close()
        self._cancel_pending()
        if restart:
            self.spawn(self._restart_later())

    async def _restart_later(self) -> None:
        await self.sleep(self.restart_delay_s)
        await self.start()

    async def kill(self) -> None:
        """Like SIGKILL: stop listening and drop every connection with no event; calls vanish silently."""
        await self._stop_listening()
        for session in list(self.sessions):
            session.abort()
        self._cancel_pending()
        for call in list(self.host.calls.values()):
            for chan in call.legs:
                self.host.release(chan)
        self.host.calls.clear()

    def drop_sessions(self) -> None:
        """Cut every AMI connection (a network blip); the server keeps listening and its state."""
        for session in list(self.sessions):
            session.abort()

    def set_frozen(self, frozen: bool) -> None:
        """Like SIGSTOP/SIGCONT: while frozen nothing is answered or sent; held output flows on thaw."""
        self.frozen = frozen
        if frozen:
            self._thaw.clear()
        else:
            self._thaw.set()
            for session in list(self.sessions):
                session.flush_held()

    def stall_actions(self, names: Iterable[str]) -> None:
        """Receive (and count) these actions but never answer them."""
        self.stalled_actions = {n.lower() for n in names}

    def inject_raw(self, data: bytes) -> None:
        """Write raw bytes (e.g. garbage) to every logged-in session."""
        for session in list(self.sessions):
            if session.authenticated:
                session.write(data)

    def set_dialplan(self, missing: Iterable[str] | None = None, noanswer: Iterable[str] | None = None) -> None:
        if missing is not None:
            self.host.missing_extensions = set(missing)
        if noanswer is not None:
            self.host.noanswer_numbers = set(noanswer)

    # ----------------------------------------------------------------- calls (control surface)
    def start_ivr_call(self, span: int | None = None, caller: str = "13800000000") -> str:
        return self.host.start_ivr_call(span=span, caller=caller)

    def transfer_to_agent(self, call_id: str, agent: str = "2001") -> None:
        self.host.transfer_to_agent(call_id, agent)

    def start_agent_call(self, caller: str = "13800000000", agent: str = "2001") -> str:
        return self.host.start_agent_call(caller, agent)

    def start_fax_call(self, caller: str = "13900000000") -> str:
        return self.host.start_fax_call(caller)

    def end_call(self, call_id: str) -> None:
        self.host.end_call(call_id)

    def set_calls(self, ivr: int, agent: int) -> None:
        self.host.set_calls(ivr, agent)

    async def blast(self, calls: int, chunk_calls: int = 500) -> int:
        """Send `calls` complete agent-call event sequences to every call-class session, as fast as TCP allows."""
        bit = wire.EVENT_CLASSES["call"]
        targets = [s for s in self.sessions if s.authenticated and s.mask & bit]
        sent = 0
        for payload, events in blast_payloads(calls, chunk_calls):
            for session in targets:
                if not session.closed:
                    session.writer.write(payload)
            for session in targets:
                if not session.closed:
                    with contextlib.suppress(ConnectionError):
                        await session.writer.drain()
            sent += events
        return sent

    def snapshot(self) -> dict[str, Any]:
        h = self.host
        spans = [{
            "span": s.number, "bearer": s.bearer, "alarm": _alarm_name(s.alarm), "dchannel_up": s.dchannel_up,
            "healthy": h.span_healthy(s), "busy": sum(1 for c in s.bearer_channels if c in h.busy),
        } for s in h.spans.values()]
        return {
            "ami": {"host": self.bind_host, "port": self.port, "accepting": self.accepting,
                    "sessions": len(self.sessions), "frozen": self.frozen, "uptime_s": self.uptime_s()},
            "chan_dahdi_loaded": h.chan_dahdi_loaded, "driver_running": h.driver_running,
            "reportalarms": h.reportalarms, "spans": spans,
            "fax": {"channels": len(h.fax_channels), "busy": sum(1 for c in h.fax_channels if c in h.busy)},
            "calls": [{"id": c.call_id, "kind": c.kind, "channels": [ch.name for ch in c.legs]}
                      for c in h.calls.values()],
            "trunks": [{"name": t.name, "driver": t.driver, "channels": t.channels, "reachable": t.reachable,
                        "busy": h.trunk_busy(t)} for t in h.trunks.values()],
            "counts": h.counts(), "free_bearers": h.free_bearers(),
            "actions_received": dict(self.actions_received), "idle": self.idle,
        }


def _alarm_name(mask: int) -> str:
    if mask == 0:
        return "ok"
    return next((name for bits, name in _ALARM_NAMES if mask & bits == bits), "unknown")
