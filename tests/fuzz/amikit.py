"""Fuzzing the agent's AMI reader over a real loopback socket: a fake Asterisk that writes whatever it is
given into a logged-in session, a fast input generator, and a harness that proves after each batch that
the agent still reads both events and responses.

Shared by tests/fuzz/test_ami_fuzz.py (hypothesis, small and fast) and bench/fuzz_ami.py (a million
inputs). The agent side is the real `AmiMonitor` (our `SafeAMIProtocol` parser on panoramisk 1.4, the
link, the consumer and the host model); nothing in it or in panoramisk is patched. What counts:

* crash: the connection dropped although no input asked for it (`Event: Shutdown` is Asterisk's way to
  say it is going away), an agent task died, asyncio reported an exception (e.g. "Fatal error:
  protocol.data_received() call failed"), or the agent logged an error (an exception its own guards
  caught: still a bug, since malformed input is meant to be logged as a warning and skipped);
* hang: after the batch, a probe event is not applied, or a Ping is not answered, within `probe_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.ami import AmiMonitor, AmiNotConnected

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
# The Ping watchdog is off: the peer holds its answers while a batch is written, and under load a big batch
# can outlast a Ping deadline (a correct drop, but not what is measured here); it has its own stall test.
FAST = {"reconcile_interval_s": 3600.0, "action_timeout_s": 2.0, "connect_timeout_s": 2.0, "ping_interval_s": 3600.0,
        "ping_timeout_s": 2.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}


def render(*pairs: tuple[str, str]) -> bytes:
    """One AMI message; an empty ActionID is left out, as Asterisk does when the request had none."""
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs if v or k != "ActionID") + "\r\n").encode()


class FakeAsterisk:
    """Speaks just enough AMI for the monitor (Login, Ping, its three list actions); `feed` writes raw bytes.

    `interleave(action_id)` may return junk to put between the pieces of each list answer (events and
    responses interleaved, possibly reusing the pending action's ActionID). `stall` makes it read and
    answer nothing. While `feed` writes a batch, answers wait until the batch has been closed with an
    empty line: like Asterisk, the peer never writes one message into the middle of another.
    """

    def __init__(self) -> None:
        self.sessions: list[asyncio.StreamWriter] = []
        self.logged_in: asyncio.StreamWriter | None = None
        self.logins = 0
        self.actions: list[str] = []
        self.stall = False
        self.strip_action_id = False  # answer without the ActionID line
        self.interleave: Callable[[str], bytes] | None = None
        self.channels: set[str] = set()  # what CoreShowChannels lists: the probe's live channel
        self._held: list[tuple[asyncio.StreamWriter, str]] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self.sessions:
            w.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.sessions.append(writer)
        writer.write(BANNER)
        buf = b""
        try:
            while data := await reader.read(65536):
                buf += data
                while b"\r\n\r\n" in buf:
                    block, buf = buf.split(b"\r\n\r\n", 1)
                    if self._held is not None:
                        self._held.append((writer, block.decode(errors="replace")))
                    elif not self.stall:
                        self._answer(writer, block.decode(errors="replace"))
        except ConnectionError:
            pass
        finally:
            if self.logged_in is writer:
                self.logged_in = None
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _answer(self, w: asyncio.StreamWriter, block: str) -> None:
        h = {k.lower(): v for k, _, v in (line.partition(": ") for line in block.split("\r\n"))}
        action, aid = h.get("action", "").lower(), h.get("actionid", "")
        self.actions.append(action)
        if self.strip_action_id and action != "login":
            aid = ""
        junk = self.interleave or (lambda _aid: b"")
        if action == "login":
            self.logins += 1
            self.logged_in = w
            w.write(render(("Response", "Success"), ("ActionID", aid), ("Message", "Authentication accepted")))
            w.write(render(("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", "1"),
                           ("LastReload", "1"), ("Status", "Fully Booted")))
        elif action == "ping":
            w.write(render(("Response", "Success"), ("ActionID", aid), ("Ping", "Pong"), ("Timestamp", "1.0")))
        elif action in ("prishowspans", "dahdishowchannels", "coreshowchannels"):
            name = {"prishowspans": "PRIShowSpans", "dahdishowchannels": "DAHDIShowChannels",
                    "coreshowchannels": "CoreShowChannel"}[action]
            items: list[tuple[tuple[str, str], ...]] = []
            if action == "prishowspans":
                items = [(("Span", str(n)), ("DChannel", str(16 + 31 * (n - 1))), ("Order", "Primary"),
                          ("Active", "Yes"), ("Alarm", "No"), ("Up", "Yes")) for n in (1, 2)]
            elif action == "dahdishowchannels":
                items = [(("DAHDIChannel", str(c)), ("Signalling", "ISDN PRI"), ("Alarm", "No Alarm")) for c in (1, 32)]
            else:
                items = [(("Channel", c), ("Application", "Wait"), ("BridgeId", "")) for c in sorted(self.channels)]
            parts = [render(("Response", "Success"), ("ActionID", aid), ("EventList", "start"),
                            ("Message", "will follow"))]
            parts += [render(("Event", name), *item, ("ActionID", aid)) for item in items]
            complete = "CoreShowChannelsComplete" if action == "coreshowchannels" else f"{name}Complete"
            parts.append(render(("Event", complete), ("ActionID", aid), ("EventList", "Complete"),
                                ("ListItems", str(len(items)))))
            for part in parts:
                w.write(junk(aid) + part)
        else:
            w.write(render(("Response", "Error"), ("ActionID", aid),
                           ("Message", f"Invalid/unknown command: {h.get('action', '')}")))

    async def feed(self, *chunks: bytes, close: bool = True) -> None:
        """Write each chunk into the logged-in session, letting the agent read between chunks; then, with
        `close`, end whatever message the chunks left open and send the answers held meanwhile."""
        w = self.logged_in
        if w is None:
            return
        self._held = held = []
        try:
            for chunk in chunks:
                if w.is_closing():
                    return
                w.write(chunk)
                await asyncio.sleep(0)
            if close and not w.is_closing():
                w.write(b"\r\n\r\n")
        finally:
            self._held = None
            for writer, block in held:
                if not writer.is_closing() and not self.stall:
                    self._answer(writer, block)
        with contextlib.suppress(ConnectionError):
            await w.drain()


# --------------------------------------------------------------------------- inputs

EVENTS = ["Newchannel", "Hangup", "BridgeEnter", "BridgeLeave", "Alarm", "AlarmClear", "SpanAlarm",
          "SpanAlarmClear", "FullyBooted", "DAHDIChannel", "PRIShowSpans", "PRIShowSpansComplete", "DAHDIShowChannels",
          "CoreShowChannel", "CoreShowChannelsComplete", "OriginateResponse", "DeviceStateChange", "VarSet",
          "UserEvent", "SuccessfulAuth", "RequestBadFormat", "Newstate", "DialBegin", "shutdown", "SHUTDOWN", ""]
KEYS = ["Event", "Response", "ActionID", "Channel", "Uniqueid", "Linkedid", "BridgeUniqueid", "DAHDIChannel",
        "Span", "Alarm", "Message", "EventList", "ListItems", "Items", "Order", "Up", "DChannel", "Application",
        "BridgeId", "Privilege", "Reason", "Output", "Value", "event", "ACTIONID", "Status", ""]
VALUES = ["", " ", "DAHDI/i1/1-1", "DAHDI/1-1", "Local/1@x-00000001;1", "Red Alarm", "No Alarm", "Not Open", "Yes",
          "No", "Complete", "start", "Success", "Error", "Follows", "Goodbye", "0", "1", "-1", "31",
          "99999999999999999999999", "1e309", "nan", "NaN", "0x10", "١٢", "²", "\u00e9", "\u202e", "\x00", "\ufffd",
          "a: b", ":", "ccfo-00000000-1", "ccfo-list-0-0-PRIShowSpans-0",
          "action/00000000-0000-0000-0000-000000000000/1/1", "Primary", "Backup", "ReceiveFAX", "SendFAX", "\t",
          "will follow", "successfully queued"]
EOLS = [b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"]
SEPS = [b": ", b":", b" : ", b": \t", b"", b" "]


class Generator:
    """Seeded, fast (tens of thousands per second) AMI-shaped and junk inputs.

    Half are messages built from AMI's own vocabulary (every event the model reacts to, list items and
    responses, the agent's ActionID shapes) with odd values; the rest are mutations of those (bit flips,
    cuts, insertions, repeats, splices), line-ending games, binary junk, and now and then a huge field.
    `Event: Shutdown` (Asterisk leaving) is never produced: it costs a reconnect, tested on its own.
    """

    def __init__(self, seed: int, huge_every: int = 5000) -> None:
        self.rng = r = random.Random(seed)
        self.huge_every = huge_every
        self.n = 0
        self._corpus: list[bytes] = [render(("Event", "Newchannel"), ("Channel", "DAHDI/i1/1-1"))]
        # Values drawn once, reused at random: generating them per input would dominate the run.
        odd = ["".join(chr(r.randrange(32, 0x2FF)) for _ in range(r.randrange(0, 40))) for _ in range(2000)]
        odd += [str(r.randrange(-10**6, 10**6)) for _ in range(500)] + ["x" * r.randrange(100, 5000) for _ in range(50)]
        self._values = [v.encode("utf-8", "surrogatepass") for v in VALUES * 10 + odd]
        self._keys = [k.encode() for k in KEYS]
        self._events = [f"Event: {e}".encode() for e in EVENTS] * 3 + [
            f"Response: {v}".encode() for v in ("Success", "Error", "Follows", "Goodbye")]

    def message(self) -> bytes:
        r = self.rng
        eol = r.choice(EOLS) if r.random() < 0.3 else b"\r\n"
        choice, keys, values = r.choice, self._keys, self._values
        lines = [choice(self._events)]
        for _ in range(r.randrange(0, 10)):
            lines.append(choice(keys) + (choice(SEPS) if r.random() < 0.15 else b": ") + choice(values))
        if r.random() < 0.3:
            r.shuffle(lines)
        return eol.join(lines) + eol + (eol if r.random() < 0.9 else b"")

    def mutate(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        for _ in range(r.randrange(1, 6)):
            op = r.randrange(7)
            at = r.randrange(len(b) + 1)
            if op == 0 and b:
                b[min(at, len(b) - 1)] ^= 1 << r.randrange(8)
            elif op == 1:
                b[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 8)))
            elif op == 2:
                del b[at:at + r.randrange(1, 16)]
            elif op == 3:
                b[at:at] = r.choice([b"\r\n", b"\r\n\r\n", b"\n\n", b": ", b"\xff\xfe", b"\xe9", b"\xf0\x9f", b"\x00"])
            elif op == 4:
                del b[at:]
            elif op == 5:
                b[at:at] = r.choice(self._corpus)[: r.randrange(1, 200)]
            else:
                b += b[:at]
        return bytes(b)

    def next(self) -> bytes:
        r = self.rng
        self.n += 1
        if self.huge_every and self.n % self.huge_every == 0:
            size = r.choice([70_000, 300_000, 1_200_000])
            return b"Event: UserEvent\r\nValue: " + b"v" * size + (b"\r\n\r\n" if r.random() < 0.5 else b"\r\n")
        roll = r.random()
        if roll < 0.45:
            out = self.message()
            if len(self._corpus) < 256:
                self._corpus.append(out)
            else:
                self._corpus[r.randrange(256)] = out
            return out
        if roll < 0.85:
            return self.mutate(r.choice(self._corpus))
        if roll < 0.95:
            return r.randbytes(r.randrange(1, 600))
        return b"".join(r.choice([b"\r", b"\n", b"\r\n", b": ", b":", b" "]) for _ in range(r.randrange(1, 40)))


# --------------------------------------------------------------------------- the agent under fuzz


class _Errors(logging.Handler):
    """Collects ERROR records (the agent's guards log caught exceptions at ERROR) and counts warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors.append(f"{record.name}: {record.getMessage()[:2000]}"
                               + (f" [{record.exc_info[1]!r}]" if record.exc_info else ""))
        else:
            self.warnings += 1


@dataclass
class Tally:
    inputs: int = 0
    bytes: int = 0
    batches: int = 0
    probes: int = 0
    reconnects_asked: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)


class AgentUnderFuzz:
    """A FakeAsterisk and a real AmiMonitor logged in to it, in the running loop."""

    def __init__(self, probe_timeout_s: float = 5.0, **monitor: float) -> None:
        self.peer = FakeAsterisk()
        self.monitor_options = {**FAST, **monitor}
        self.probe_timeout_s = probe_timeout_s
        self.tally = Tally()
        self.errors = _Errors()
        self.loop_errors: list[str] = []
        self.mon: AmiMonitor | None = None
        self._connects = 0
        self._probe = 0

    async def __aenter__(self) -> AgentUnderFuzz:
        loop = asyncio.get_running_loop()
        self._old_handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(
            f"{ctx.get('message')}: {ctx.get('exception')!r}"))
        for name in ("agents", "asyncio", "panoramisk"):
            logging.getLogger(name).addHandler(self.errors)
        await self.peer.start()
        await self.restart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.mon is not None:
            await self.mon.stop()
        await self.peer.close()
        for name in ("agents", "asyncio", "panoramisk"):
            logging.getLogger(name).removeHandler(self.errors)
        asyncio.get_running_loop().set_exception_handler(self._old_handler)

    async def restart(self) -> None:
        """A fresh monitor (after a crash or hang, so the next batch starts clean)."""
        if self.mon is not None:
            await self.mon.stop()
        self.mon = AmiMonitor("127.0.0.1", self.peer.port, "ccfo", "fuzz-secret", **self.monitor_options)
        await self.mon.start()
        await self._wait(lambda: self.mon is not None and self.mon.link.connected and self.peer.logged_in is not None
                         and self.mon.reconciles >= 1, "initial login and reconcile")
        self._connects = self.mon.link.connects

    async def _wait(self, predicate: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + self.probe_timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            await asyncio.sleep(0.001)

    def state(self) -> str:
        mon = self.mon
        assert mon is not None
        proto = getattr(mon.link._manager, "protocol", None)
        return (f"connected={mon.link.connected} connects={mon.link.connects} error={mon.link.error!r} "
                f"events={mon.events_processed} queued={mon._queue.qsize()} paused={mon.link._paused} "
                f"lists={list(mon._lists)} pending={list(getattr(proto, 'responses', {}))[:4]} "
                f"unparsed={getattr(proto, '_text', '')[:120]!r} peer_sessions={len(self.peer.sessions)}")

    def _failures(self) -> list[str]:
        mon = self.mon
        assert mon is not None
        out = [f"asyncio: {e}" for e in self.loop_errors] + [f"logged: {e}" for e in self.errors.errors]
        dead = [t.get_name() for t in [*mon._tasks, mon.link._task] if t is None or t.done()]
        if dead:
            out.append(f"agent task(s) ended: {dead}")
        self.loop_errors.clear()
        self.errors.errors.clear()
        return out

    async def run_batch(self, inputs: list[bytes], *, split: bool = False) -> list[str]:
        """Feed the inputs, then prove the agent alive. Returns what went wrong (empty: nothing)."""
        mon = self.mon
        assert mon is not None
        t = self.tally
        t.batches += 1
        t.inputs += len(inputs)
        t.bytes += sum(map(len, inputs))
        asked = b"Shutdown" in b"".join(inputs)  # inputs run together: one may finish what another began
        if asked:
            t.reconnects_asked += 1
        chunks: list[bytes] = []
        if not split:  # one write: where the reads split it is up to TCP
            chunks.append(b"".join(inputs))
        for data in inputs if split else ():  # each input in quarters, the agent reading between them
            cut = sorted({len(data) * k // 4 for k in (1, 2, 3)})
            chunks += [data[a:b] for a, b in zip([0, *cut], [*cut, len(data)], strict=True) if a < b]
        await self.peer.feed(*chunks)
        problems: list[str] = []
        try:
            await self._probe_alive(asked)
        except Exception as exc:  # any failure of the probe (a timeout, an AMI error) is a hang to report
            problems.append(f"hang: {type(exc).__name__}: {exc} ({self.state()})")
            t.hangs.append(problems[-1])
        crashed = self._failures()
        if mon.link.connects != self._connects and not asked:
            crashed.append(f"unexpected reconnect (connection #{mon.link.connects})")
        self._connects = mon.link.connects
        t.crashes += crashed
        problems += crashed
        if problems:
            await self.restart()
        return problems

    async def _probe_alive(self, reconnect_expected: bool) -> None:
        mon = self.mon
        assert mon is not None
        self.tally.probes += 1
        self._probe += 1
        if reconnect_expected:  # the Pong comes after the Shutdown, if that took effect: then it fails
            before = mon.link.connects
            try:
                await mon.link.send({"Action": "Ping"}, timeout=self.probe_timeout_s)
            except AmiNotConnected:
                await self._wait(lambda: mon.link.connected and mon.link.connects > before
                                 and self.peer.logged_in is not None, "reconnect after Shutdown")
        name = f"Local/ccfo-probe-{self._probe}@probe-00000001;1"
        self.peer.channels.add(name)
        await self.peer.feed(render(("Event", "Newchannel"), ("Privilege", "call,all"), ("Channel", name),
                                    ("Uniqueid", f"probe.{self._probe}")))
        await self._wait(lambda: name in mon.model.channels, "probe event applied")
        await mon.link.send({"Action": "Ping"}, timeout=self.probe_timeout_s)
        self.peer.channels.discard(name)
        await self.peer.feed(render(("Event", "Hangup"), ("Privilege", "call,all"), ("Channel", name)))
        await self._wait(lambda: name not in mon.model.channels, "probe hangup applied")
