"""FastAGI admission server: answers the dialplan's "may this call have a channel?" from live X, Y and C.

The dialplan runs `AGI(agi://127.0.0.1:4573/admit?kind=agent)` before transferring a caller to an agent
(and `kind=ivr` for a new IVR call if the site wants that too). We read the request, ask the pure
capacity core (`ccfo.domain.capacity.admit`) with the live figures the agent hands us, and set two
channel variables: `CCFO_REASON` (a sentence), then `CCFO_ADMIT` (`yes` or `no`), then close the socket.

Never block the dialplan for long: Asterisk itself has no FastAGI deadline while the caller is up. Our
answer goes out within `answer_within_s` of the request. When the live source says the capacity cannot
be known (`CapacityUnknown`: AMI down, no trunk data), the per-kind `ami_down` policy answers (the pure
core's `admit_unknown`) and the reason starts with "AMI down"; on any internal error (the live source
raising otherwise or slow, a malformed request, overload) the answer follows the fail-open / fail-closed
policy and the reason says so. The dialplan must judge from CCFO_ADMIT, never from AGISTATUS (see
config/asterisk/extensions-ccfo.conf).

Own asyncio implementation on streams, not pyst2 (blocking, no server for Python 3) nor panoramisk's
fast_agi (its header loop spins on EOF and freezes the loop; no timeouts; replies shift after HANGUP);
see shared/reference/asterisk-client-libraries.md sections 9-12.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from agents.fastagi.protocol import (
    MAX_ENV_BYTES,
    AdmitRequest,
    AgiProtocolError,
    BadRequest,
    Reply,
    parse_env,
    parse_reply,
    parse_request,
    set_variable,
)
from ccfo.domain.capacity import HostLoad, UnknownPolicy, admit, admit_unknown
from ccfo.domain.site import CapacityPolicy, DirectionLimits

log = logging.getLogger(__name__)


class LiveCapacity(NamedTuple):
    """What admission needs now; a plain (channels, load, policy, fax_channels) tuple works too."""

    channels: int
    load: HostLoad
    policy: CapacityPolicy
    fax_channels: int = 0
    limits: DirectionLimits | None = None


LiveSource = Callable[[], LiveCapacity | tuple | Awaitable[LiveCapacity | tuple]]


# Admission answers by result and a short reason (what `reason_label` returns).
ADMISSION_REASONS = ("capacity", "no_room", "fax_full", "inbound_limit", "outbound_limit", "ami_down",
                     "capacity_timeout", "internal_error", "bad_request", "overloaded", "other")


def reason_label(reason: str, fallback: bool) -> str:
    """The `reason` label of the agent's admissions metric: a closed set, from the reason sentence."""
    text = reason.lower()
    if fallback:
        for needle, label in (("ami down", "ami_down"), ("not available within", "capacity_timeout"),
                              ("internal error", "internal_error"), ("overloaded", "overloaded"),
                              ("bad request", "bad_request"), ("cut short", "bad_request"),
                              ("too long", "bad_request"), ("no complete request", "bad_request")):
            if needle in text:
                return label
        return "other"
    for needle, label in (("no room", "no_room"), ("fax pool full", "fax_full"), ("inbound limit", "inbound_limit"),
                          ("outbound limit", "outbound_limit")):
        if needle in text:
            return label
    return "capacity"


class CapacityUnknown(Exception):
    """The live source cannot know the capacity now; its message names the cause ("AMI down (...)"),
    which the policy answer carries instead of a generic "internal error"."""


@dataclass
class AdmissionStats:
    connections: int = 0
    admitted: int = 0
    refused: int = 0
    fallback: int = 0  # answered by policy after an internal error or a bad request
    unanswered: int = 0  # the peer left before we could answer
    max_latency_s: float = 0.0
    by_result_reason: dict[tuple[str, str], int] = field(default_factory=dict)  # for /metrics


class Decision(NamedTuple):
    admit: bool
    reason: str
    fallback: bool


class AdmissionServer:
    """Serve FastAGI admission on host:port (port 0: any free port; see `.port`).

    live: returns the live capacity; may be a plain callable (which must return at once: it runs on the
        event loop, so only an async callable's wait can be bounded) or an async one (bounded by
        answer_within_s).
    fail_open: on an internal error, admit (True) or refuse (False).
    ami_down: per call kind, admit or refuse when the live source raises CapacityUnknown (default: every
        kind as fail_open).
    """

    def __init__(self, live: LiveSource, *, host: str = "127.0.0.1", port: int = 4573, fail_open: bool = True,
                 answer_within_s: float = 0.2, header_timeout_s: float = 2.0, reply_timeout_s: float = 2.0,
                 max_connections: int = 512, ami_down: UnknownPolicy | None = None) -> None:
        self._live = live
        self.ami_down = ami_down or UnknownPolicy(fail_open, fail_open, fail_open)
        self._host, self._port = host, port
        self.fail_open = fail_open
        self._answer_within_s = answer_within_s
        self._header_timeout_s = header_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._max_connections = max_connections
        self._active = 0
        self._server: asyncio.Server | None = None
        self.stats = AdmissionStats()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("admission server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port,
                                                  limit=MAX_ENV_BYTES, reuse_address=True)
        log.info("fastagi: admission on %s:%d (on error: %s)", self._host, self.port,
                 "admit" if self.fail_open else "refuse")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> AdmissionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fallback(self, why: str) -> Decision:
        verdict = "admitted" if self.fail_open else "refused"
        policy = "fail-open" if self.fail_open else "fail-closed"
        return Decision(self.fail_open, f"{why}; {verdict} by {policy} policy", True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._active += 1
        started = time.monotonic()
        env: dict[str, str] = {}
        try:
            decision, env = await self._request(reader)
            if decision is None:
                self.stats.unanswered += 1
                return
            if decision.fallback and not env:
                _discard_buffered(reader)  # what is left of a bad request must not be read as replies
            self._count(decision, env, time.monotonic() - started)
            await self._answer(reader, writer, decision)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("fastagi: %s left: %r", env.get("agi_channel", "peer"), exc)
        except Exception:
            log.exception("fastagi: unexpected error answering %s", env.get("agi_channel", "peer"))
        finally:
            self._active -= 1
            writer.close()  # not awaited: the transport finishes closing on its own

    async def _request(self, reader: asyncio.StreamReader) -> tuple[Decision | None, dict[str, str]]:
        """Read the environment and decide; None when the peer left before sending anything."""
        try:
            async with asyncio.timeout(self._header_timeout_s):  # asyncio.timeout: no extra task per await
                block = await reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None, {}
            return self._fallback("request cut short"), {}
        except asyncio.LimitOverrunError:
            return self._fallback("request too long"), {}
        except TimeoutError:
            return self._fallback(f"no complete request within {self._header_timeout_s:g}s"), {}
        try:
            env = parse_env(block)
            request = parse_request(env)
        except (AgiProtocolError, BadRequest) as exc:
            log.warning("fastagi: bad request: %s; raw: %r", exc, block[:300])
            return self._fallback(f"bad request: {exc}"), {}
        if self._active > self._max_connections:
            return self._fallback("admission server overloaded"), env
        return await self._decide(request), env

    async def _decide(self, request: AdmitRequest) -> Decision:
        try:
            live = self._live()
            if inspect.isawaitable(live):
                async with asyncio.timeout(self._answer_within_s):
                    live = await live
            cap = LiveCapacity(*live)
            result = admit(cap.channels, cap.load, request.kind, cap.policy, fax_channels=cap.fax_channels,
                           direction=request.direction, limits=cap.limits)
        except TimeoutError:
            return self._fallback(f"live capacity not available within {self._answer_within_s * 1000:.0f} ms")
        except CapacityUnknown as exc:
            result = admit_unknown(request.kind, self.ami_down, str(exc))
            return Decision(result.admit, result.reason, True)
        except Exception as exc:
            log.warning("fastagi: cannot decide %s: %s: %s", request.kind, type(exc).__name__, exc)
            return self._fallback(f"internal error ({type(exc).__name__})")
        return Decision(result.admit, f"{request.kind}: {result.reason}", False)

    def _count(self, decision: Decision, env: dict[str, str], latency_s: float) -> None:
        self.stats.max_latency_s = max(self.stats.max_latency_s, latency_s)
        key = ("admitted" if decision.admit else "refused", reason_label(decision.reason, decision.fallback))
        self.stats.by_result_reason[key] = self.stats.by_result_reason.get(key, 0) + 1
        if decision.fallback:
            self.stats.fallback += 1
            log.warning("fastagi: %s %s: %s", env.get("agi_channel", "?"),
                        "admit" if decision.admit else "refuse", decision.reason)
        elif decision.admit:
            self.stats.admitted += 1
            log.debug("fastagi: %s admit: %s", env.get("agi_channel", "?"), decision.reason)
        else:
            self.stats.refused += 1
            log.info("fastagi: %s refuse: %s", env.get("agi_channel", "?"), decision.reason)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decision: Decision) -> None:
        """CCFO_REASON first, CCFO_ADMIT last: a dialplan that sees CCFO_ADMIT also has its reason."""
        for command in (set_variable("CCFO_REASON", decision.reason),
                        set_variable("CCFO_ADMIT", "yes" if decision.admit else "no")):
            writer.write(command)
            async with asyncio.timeout(self._reply_timeout_s):
                await writer.drain()
                reply = await self._read_reply(reader)
            if reply is None or reply.code == 511:  # gone, or a dead channel: nothing more to set
                return

    @staticmethod
    async def _read_reply(reader: asyncio.StreamReader) -> Reply | None:
        """The reply to our last command; skips HANGUP notices and reads 520 usage text to its end."""
        while True:
            raw = await _readline(reader)
            if not raw:
                return None
            line = raw.decode("utf-8", "replace").strip()
            if not line or line == "HANGUP":
                continue
            if line.startswith("520-"):
                while raw and not raw.startswith(b"520 "):
                    raw = await _readline(reader)
                return parse_reply(raw.decode("utf-8", "replace")) if raw else None
            try:
                return parse_reply(line)
            except AgiProtocolError:
                log.warning("fastagi: unexpected reply line %r", line[:120])
                return None


async def _readline(reader: asyncio.StreamReader) -> bytes:
    """One line, or b"" (as at EOF) for a line over the stream limit: no AGI reply is that long, and
    StreamReader.readline reports it as a bare ValueError."""
    try:
        return await reader.readline()
    except ValueError:  # readline turns asyncio.LimitOverrunError into this
        log.warning("fastagi: a reply line over %d bytes; ending the session", MAX_ENV_BYTES)
        return b""


def _discard_buffered(reader: asyncio.StreamReader) -> None:
    """Drop bytes already received but not consumed (StreamReader has no public way to do this)."""
    buffer = getattr(reader, "_buffer", None)
    if isinstance(buffer, bytearray):
        buffer.clear()
