"""`AmiMonitor`: the agent's live view of one host over AMI, plus line tests and AstDB access.

Owns an `AmiLink`, one consumer task and one reconcile task:

* events are queued by the link and folded into `HostModel` by the consumer, in wire order;
* list answers (PRIShowSpans, DAHDIShowChannels, CoreShowChannels) are requested with `as_list=False`
  so their items travel through the *same* queue as events: a list is applied exactly at its
  `...Complete` position in the stream, so an event that happened before or after the snapshot can
  never be overwritten by a stale list (panoramisk would otherwise hand the list to us out of band);
* reconciliation runs at start-up, after every (re)connect, after alarm events and FullyBooted, and
  every `reconcile_interval_s` (PRIShowSpans polling is the only way to see D-channel changes);
* AMI loss is its own state (`connected=False`, last known lines kept), never "all lines down";
* SIP trunks (`trunks`) are re-listed with every reconcile (PJSIPShowEndpoints and/or SIPpeers, see
  `trunks.py`); their channels count as board channels (X, Y) and, while up, toward C. After a
  (re)connect their state is unknown until listed (`trunks_known`), so admission can say so.

`changed` (an asyncio.Event) is set and `on_change` called whenever the snapshot changes, ignoring
`last_ok`, which moves with every successful Ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from ccfo.domain.capacity import live_channels
from ccfo.domain.site import SipDriver, SipTrunk

from .errors import AmiError, AmiNotConnected, AmiTimeout
from .link import AmiLink, LinkConfig
from .message import AmiMessage
from .model import CallCounts, DriverState, HostModel, SpanStatus
from .trunks import DEVICE_LIST, LIST_ACTION, TrunkStatus, TrunkTable

log = logging.getLogger(__name__)
_SAFE = re.compile(r"^[0-9A-Za-z*#+_.-]{1,64}$")
# PeerStatus (chan_sip) and ContactStatus (res_pjsip) announce a trunk's reachability change: re-list.
_TRIGGERS = frozenset({"Alarm", "AlarmClear", "SpanAlarm", "SpanAlarmClear", "FullyBooted", "PeerStatus",
                       "ContactStatus"})
ORIGINATE_REASONS = {0: "failed (no free channel, span or driver down, or no such extension)", 1: "hung up",
                     3: "no answer before the timeout", 4: "answered", 5: "busy", 8: "congestion"}
BATCH = 2000
MAX_EVENT_CLASSES = 200


@dataclass(frozen=True, slots=True)
class AmiSnapshot:
    connected: bool
    last_ok: float | None
    error: str | None
    driver: DriverState
    driver_detail: str
    spans: tuple[SpanStatus, ...]
    calls: CallCounts
    channels_available: int
    channels_free: int
    hung: bool = False  # not connected because Asterisk stopped answering (ami=hung), not refused (ami=lost)
    trunks: tuple[TrunkStatus, ...] = ()  # the configured SIP trunks, with their state
    trunks_known: bool = True  # every trunk list has answered since the last (re)connect


@dataclass(frozen=True, slots=True)
class LineTestResult:
    """A line test's outcome. `target` is what Asterisk dialled (the OriginateResponse's Channel, else the
    channel we asked for); `asterisk_response`/`asterisk_reason` are its Response and Reason fields (None
    when no OriginateResponse came)."""

    ok: bool
    reason: str
    duration_s: float
    target: str = ""
    asterisk_response: str | None = None
    asterisk_reason: int | None = None


@dataclass
class _ListWait:
    kind: str
    future: asyncio.Future[None]
    items: list[AmiMessage]


_DRIVER_OF_LIST = {action: driver for driver, action in LIST_ACTION.items()}


class AmiMonitor:
    """Live spans/driver/calls of one host; `start()` it, read `snapshot()`, await `changed`."""

    def __init__(self, host: str, port: int, username: str, secret: str, *, events: str = "system,call",
                 board_channel_regex: str = r"^DAHDI/", fax_channel_regex: str | None = r"^DAHDI/\d+-",
                 span_channels: Mapping[int, int] | None = None, trunks: Iterable[SipTrunk] = (),
                 reconcile_interval_s: float = 10.0,
                 action_timeout_s: float = 5.0, connect_timeout_s: float = 5.0, ping_interval_s: float = 5.0,
                 ping_timeout_s: float = 2.0, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 on_change: Callable[[AmiSnapshot], None] | None = None) -> None:
        self.config = LinkConfig(host, port, username, secret, events, connect_timeout_s, action_timeout_s,
                                 ping_interval_s, ping_timeout_s, backoff_initial_s, backoff_max_s)
        self.trunk_table = TrunkTable(trunks)
        trunk_pattern = self.trunk_table.channel_pattern()
        if trunk_pattern is not None:  # a call on a trunk holds a channel of C like a call on a span
            board_channel_regex = f"(?:{board_channel_regex})|{trunk_pattern}"
        self.model = HostModel(board_channel_regex, fax_channel_regex, span_channels)
        self.link = AmiLink(self.config, on_event=self._on_event, on_state=self._on_link_state)
        self.reconcile_interval_s = reconcile_interval_s
        self.on_change = on_change
        self.changed = asyncio.Event()
        self.events_processed = 0
        self.events_by_class: dict[str, int] = {}  # for /metrics; at most MAX_EVENT_CLASSES names
        self.reconciles = 0
        self.reconcile_error: str | None = None
        self._queue: asyncio.Queue[AmiMessage] = asyncio.Queue()
        self._lists: dict[str, _ListWait] = {}
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_key: AmiSnapshot | None = None
        self._warned: set[str] = set()  # trunk list problems already logged (each once, not every reconcile)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(), name="ami-consume"),
                       loop.create_task(self._reconcile_loop(), name="ami-reconcile")]
        await self.link.start()

    async def stop(self) -> None:
        await self.link.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_lists("monitor stopped")

    # ----------------------------------------------------------------- snapshot
    def snapshot(self) -> AmiSnapshot:
        model = self.model
        spans = model.spans_status()
        calls = model.counts()
        trunks = self.trunk_table.status()
        available = live_channels((s.channels for s in spans if s.healthy and model.driver is DriverState.UP),
                                  (t.channels for t in trunks if t.up))
        return AmiSnapshot(
            connected=self.link.connected, last_ok=self.link.last_ok,
            error=self.link.error if not self.link.connected else self.reconcile_error,
            driver=model.driver, driver_detail=model.driver_detail, spans=spans, calls=calls,
            channels_available=available,
            # Calls can outlive a span fault for a moment; "free" never goes below zero.
            channels_free=max(0, available - calls.ivr - 2 * calls.agent),
            hung=self.link.hung and not self.link.connected, trunks=trunks, trunks_known=self.trunk_table.known)

    def _publish(self) -> None:
        snap = self.snapshot()
        key = replace(snap, last_ok=None)
        if key == self._last_key:
            return
        self._last_key = key
        self.changed.set()
        if self.on_change is not None:
            try:
                self.on_change(snap)
            except Exception:
                log.exception("AMI snapshot observer failed")

    # ----------------------------------------------------------------- events
    def _on_event(self, msg: AmiMessage) -> None:
        self._queue.put_nowait(msg)

    def _on_link_state(self, connected: bool) -> None:
        if connected:
            self.reconcile_error = None
            self.trunk_table.forget("not listed since the AMI connected")
            self._poke.set()
        else:
            self.trunk_table.forget("AMI not connected")
            self._fail_lists(self.link.error or "AMI connection lost")
        self._publish()

    async def _consume(self) -> None:
        queue = self._queue
        while True:
            msg = await queue.get()
            self._apply(msg)
            for _ in range(BATCH):
                try:
                    msg = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                self._apply(msg)
            self.link.backlog(queue.qsize())
            self._publish()

    def _apply(self, msg: AmiMessage) -> None:
        self.events_processed += 1
        try:
            waiter = self._lists.get(msg.action_id) if msg.action_id else None
            if waiter is not None:
                if msg.get("eventlist") == "Complete" or msg.name.endswith("Complete"):
                    del self._lists[msg.action_id]
                    self._apply_list(waiter)
                else:
                    waiter.items.append(msg)
                return
            self._count_event(msg.name)
            self.model.apply_event(msg)
            if msg.name == "DeviceStateChange":
                self.trunk_table.apply_device_event(msg)
            if msg.name in _TRIGGERS:
                self._poke.set()
        except Exception:
            log.exception("AMI event could not be applied; skipped: %r", dict(msg.headers))

    def _count_event(self, name: str) -> None:
        counts = self.events_by_class
        if name not in counts and len(counts) >= MAX_EVENT_CLASSES:
            name = "other"  # a peer inventing event names cannot grow the metric without bound
        counts[name] = counts.get(name, 0) + 1

    def _apply_list(self, waiter: _ListWait) -> None:
        if waiter.kind == "PRIShowSpans":
            self.model.reconcile_pri_spans(waiter.items)
        elif waiter.kind == "DAHDIShowChannels":
            self.model.reconcile_dahdi_channels(waiter.items)
        elif waiter.kind == "CoreShowChannels":
            self.model.reconcile_channels(waiter.items)
        elif waiter.kind in _DRIVER_OF_LIST:
            self.trunk_table.reconcile(_DRIVER_OF_LIST[waiter.kind], waiter.items)
        elif waiter.kind == DEVICE_LIST:
            self.trunk_table.reconcile_devices(waiter.items)
        if not waiter.future.done():
            waiter.future.set_result(None)

    def _fail_lists(self, reason: str) -> None:
        for waiter in self._lists.values():
            if not waiter.future.done():
                waiter.future.set_exception(AmiNotConnected(reason))
                waiter.future.exception()  # retrieved here: the reconcile may already have given up
        self._lists.clear()

    # ----------------------------------------------------------------- reconciliation
    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.reconcile_interval_s):
                    await self._poke.wait()
            self._poke.clear()
            if not self.link.connected:
                continue
            try:
                await self.refresh()
            except AmiError as exc:
                log.warning("AMI reconcile failed: %s", exc.message)
                self.reconcile_error = f"reconcile failed: {exc.message}"
                self._publish()

    async def refresh(self) -> None:
        """Re-read spans, DAHDI channels and active channels now (also what the periodic poll does)."""
        try:
            await self._list("PRIShowSpans")
        except AmiError as exc:
            if "Invalid/unknown command" not in exc.message:
                raise
            self.model.chan_dahdi_missing()
        else:
            await self._list("DAHDIShowChannels")
        for driver in self.trunk_table.drivers:
            await self._list_trunks(driver)
        await self._list("CoreShowChannels")
        self.reconciles += 1
        self.reconcile_error = None
        self._publish()

    async def _list_trunks(self, driver: SipDriver) -> None:
        """List one driver's trunks; a refused list never stops the reconcile (calls must still be read)."""
        action = LIST_ACTION[driver]
        try:
            await self._list(action)
        except AmiError as exc:
            if isinstance(exc, AmiTimeout | AmiNotConnected):
                raise
            if "Invalid/unknown command" in exc.message:
                self.trunk_table.module_missing(driver, exc.message)
            elif "No endpoints found" in exc.message:  # res_pjsip with no endpoint configured at all
                self.trunk_table.reconcile(driver, ())
            elif "Permission denied" in exc.message and driver is SipDriver.PJSIP:
                await self._list_devices(exc.message)
            else:
                self._warn_once(f"{action}: {exc.message}")
                self.trunk_table.refused(driver, action, exc.message)

    async def _list_devices(self, why: str) -> None:
        """PJSIPShowEndpoints needs write class system: read the res_pjsip trunks' device states instead."""
        self._warn_once(f"PJSIPShowEndpoints: {why} (the AMI user has no write class system); reading the trunks' "
                        "device states with DeviceStateList")
        try:
            await self._list(DEVICE_LIST)
        except AmiError as exc:
            if isinstance(exc, AmiTimeout | AmiNotConnected):
                raise
            self._warn_once(f"{DEVICE_LIST}: {exc.message}")
            self.trunk_table.refused(SipDriver.PJSIP, f"PJSIPShowEndpoints and {DEVICE_LIST}", exc.message,
                                     "system (PJSIPShowEndpoints) or call or reporting (DeviceStateList)")

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            log.warning("AMI trunk list: %s", text)

    async def _list(self, action: str) -> None:
        loop = asyncio.get_running_loop()
        action_id = f"ccfo-list-{id(self):x}-{self.reconciles}-{action}-{time.monotonic_ns()}"
        waiter = self._lists[action_id] = _ListWait(action, loop.create_future(), [])
        try:
            await self.link.send({"Action": action, "ActionID": action_id}, as_list=False)
            async with asyncio.timeout(self.config.action_timeout_s):
                await asyncio.shield(waiter.future)
        except TimeoutError as exc:
            raise AmiTimeout(f"{action} list not completed within {self.config.action_timeout_s}s") from exc
        finally:
            self._lists.pop(action_id, None)

    # ----------------------------------------------------------------- actions for the agent API
    async def line_test(self, number: str, context: str, timeout_s: float, hold_s: float = 1.0) -> LineTestResult:
        """Dial `number` through `context` (Async Originate) and wait for the OriginateResponse."""
        if not _SAFE.match(number) or not _SAFE.match(context):
            raise ValueError("number and context must be 1-64 characters of [0-9A-Za-z*#+_.-]")
        mask = {m.strip().lower() for m in self.config.events.split(",")}
        start = time.monotonic()
        channel = f"Local/{number}@{context}"
        if not mask & {"on", "all", "call", "yes", "true"}:
            return LineTestResult(False, "events mask has no 'call': the OriginateResponse would never arrive", 0.0,
                                  channel)
        action = {"Action": "Originate", "Channel": channel, "Application": "Wait",
                  "Data": f"{hold_s:g}", "Timeout": str(int(timeout_s * 1000)), "Async": "true",
                  "CallerID": '"ccfo line test" <0>', "Variable": "CCFO_LINETEST=1"}
        try:
            answer = await self.link.send(action, timeout=timeout_s + self.config.action_timeout_s)
        except AmiNotConnected as exc:
            return LineTestResult(False, f"AMI not connected: {exc.message}", time.monotonic() - start, channel)
        except AmiTimeout:
            return LineTestResult(False, f"no OriginateResponse within {timeout_s}s", time.monotonic() - start,
                                  channel)
        except AmiError as exc:  # Asterisk's own words (Response: Error, Message: ...)
            return LineTestResult(False, f"Originate refused: {exc.message}", time.monotonic() - start, channel,
                                  "Error")
        duration = time.monotonic() - start
        result = next((m for m in answer if m.name == "OriginateResponse"), None)
        if result is None:
            return LineTestResult(False, "Originate answered without an OriginateResponse", duration, channel)
        reason_text = result.get("reason")
        reason = int(reason_text) if reason_text.isdigit() else -1
        text = ORIGINATE_REASONS.get(reason, "unknown outcome")
        response = result.get("response") or None
        ok = response == "Success" and reason == 4
        return LineTestResult(ok, f"{text} (reason {reason})", duration, result.get("channel") or channel, response,
                              reason if reason >= 0 else None)

    async def db_put(self, family: str, key: str, value: str) -> None:
        await self.link.send({"Action": "DBPut", "Family": family, "Key": key, "Val": value})

    async def db_get(self, family: str, key: str) -> str | None:
        """The AstDB value, or None when the entry does not exist."""
        try:
            answer = await self.link.send({"Action": "DBGet", "Family": family, "Key": key})
        except AmiError as exc:
            if isinstance(exc, AmiTimeout | AmiNotConnected) or "not found" not in exc.message:
                raise
            return None
        item = next((m for m in answer if m.name == "DBGetResponse"), None)
        return item.get("val") if item is not None else None
