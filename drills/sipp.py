"""Verification calls and the steady call load of a drill, as real SIPp processes.

Each check is one or more SIPp processes (scenarios in drills/sipp/, adapted from the lab fixtures) with a
global timeout, writing their own statistics (`-trace_stat` CSV, `-trace_screen`, `-trace_err`) into the
drill's work directory; the results are parsed from those files and the exit code, never guessed:
* inbound: a caller calls the IVR extension through the SIP front (the lab's Kamailio, drills.yaml `sip.front`)
  and the active host's IVR must answer it; every other host is called directly at the same time and must
  not answer (a second answer would be two IVRs serving at once). Without a front, every host is called
  directly and exactly the active host must answer;
* agent answer: the drill answers as the agent phone (a far-end UAS) and a caller asks for an agent; it
  passes when the caller is connected and the agent phone answered;
* outbound: the drill is the carrier's test number (a far-end UAS) and a caller asks the active host to
  dial out; it passes when the far end answered the host's call.
The steady load is in drills.load.

What it must not do: no decisions about the drill (the runner decides), no process left behind: every
process gets `-timeout`, dies with its parent (PR_SET_PDEATHSIG) and is killed by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccfo.config.loader import LoadedConfig
from drills.model import DrillsConfigModel

log = logging.getLogger("ccfo.drills.sipp")
SCENARIOS = Path(__file__).resolve().parent / "sipp"
EXIT_ALL_OK, EXIT_SOME_FAILED, EXIT_NO_CALLS = 0, 1, 99
# Calls give up fast on a dead endpoint: INVITE retransmitted twice (0.5 s, 1 s), then the call fails.
FAST_FAIL = ["-max_invite_retrans", "2", "-recv_timeout", "2500"]
# Through the front, a call may be held (ringing) up to the hold limit: wait that long plus this margin.
HOLD_MARGIN_S = 4.0


class SippError(Exception):
    """SIPp is missing, or a process could not start or bind its address."""


@dataclass(frozen=True, slots=True)
class SippStats:
    """One SIPp process's own figures: calls created, succeeded, failed; average INVITE->200 time."""

    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    setup_ms: float | None = None
    responses: Mapping[str, int] = field(default_factory=dict)  # response code -> count (from the screen)
    failed_reasons: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: SippStats) -> SippStats:
        codes = dict(self.responses)
        for k, v in other.responses.items():
            codes[k] = codes.get(k, 0) + v
        reasons = dict(self.failed_reasons)
        for k, v in other.failed_reasons.items():
            reasons[k] = reasons.get(k, 0) + v
        setups = [(s.setup_ms, s.succeeded) for s in (self, other) if s.setup_ms is not None and s.succeeded]
        setup = sum(ms * n for ms, n in setups) / sum(n for _, n in setups) if setups else None
        return SippStats(self.attempted + other.attempted, self.succeeded + other.succeeded,
                         self.failed + other.failed, setup, codes, reasons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "responses": dict(self.responses), "failed_reasons": dict(self.failed_reasons)}


def _ms(value: str) -> float | None:
    """SIPp's `HH:MM:SS:uuuuuu` (or `HH:MM:SS`) as milliseconds."""
    parts = value.strip().split(":")
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        us = int(parts[3]) if len(parts) > 3 else 0
    except (ValueError, IndexError):
        return None
    return ((h * 60 + m) * 60 + s) * 1000.0 + us / 1000.0


def parse_stat_csv(path: Path) -> SippStats | None:
    """The last row of a `-trace_stat` file (cumulative counters); None if there is none yet."""
    try:
        rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    except OSError:
        return None
    if len(rows) < 2:
        return None
    last = dict(zip(rows[0], rows[-1], strict=False))
    try:
        succeeded = int(last["SuccessfulCall(C)"])
        stats = SippStats(int(last["TotalCallCreated"]), succeeded, int(last["FailedCall(C)"]),
                          _ms(last.get("ResponseTime1(C)", "")) if succeeded else None,
                          failed_reasons={k[len("Failed"):-3]: int(v) for k, v in last.items()
                                          if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
                                          and v.isdigit() and int(v)})
    except (KeyError, ValueError):
        log.warning("unreadable SIPp statistics %s: %r", path, rows[-1][:20])
        return None
    return stats


_RESPONSE = re.compile(r"^\s*(?:(?P<a>\d{3})\s+<-+|<-+\s+(?P<b>\d{3}))\s+(?:[EB]-RTD\d+\s+)?(?P<n>\d+)")
_SENT = re.compile(r"^\s*-+>\s+(?P<b>\d{3})\s+(?P<n>\d+)")


def parse_screen(path: Path) -> dict[str, int]:
    """Response codes and counts from the scenario screen of a `-trace_screen` file: the responses a UAC
    received or a UAS sent (UAS screens draw responses as `<---------- 200`)."""
    codes: dict[str, int] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return codes
    for line in text.split("Statistics Screen", 1)[0].splitlines():
        m = _RESPONSE.match(line) or _SENT.match(line)
        if m and int(m.group("n")):
            code = m.groupdict().get("a") or m.group("b")
            codes[code] = codes.get(code, 0) + int(m.group("n"))
    return codes


@dataclass(frozen=True, slots=True)
class CallFates:
    """What became of each call of a SIPp UAC, from the `<log>` lines of drills/sipp/uac_inbound.xml:
    answered (by which IVR address, held or not) and ended by the IVR's BYE."""

    answered: Mapping[int, str] = field(default_factory=dict)  # call number -> IVR ADDR:PORT that answered
    held: frozenset[int] = frozenset()  # answered after the front held them
    ended: frozenset[int] = frozenset()  # the IVR hung up normally (BYE, 200)

    @property
    def cut(self) -> int:
        """Answered calls that did not end normally (the IVR died or vanished mid-call)."""
        return len(set(self.answered) - self.ended)

    def refused(self, attempted: int) -> int:
        """New calls that were never answered."""
        return max(0, attempted - len(self.answered))

    def __add__(self, other: CallFates) -> CallFates:  # call numbers are per process: offset the other's
        off = max([*self.answered, *self.ended, 0]) + 1_000_000
        return CallFates({**self.answered, **{n + off: b for n, b in other.answered.items()}},
                         self.held | {n + off for n in other.held}, self.ended | {n + off for n in other.ended})


_LOGLINE = re.compile(r"^(?P<what>answered|ended) (?P<n>\d+)(?: by=(?P<by>\S*))?(?P<held> X-CCFO-Held)?")


def parse_call_log(path: Path) -> CallFates:
    answered: dict[int, str] = {}
    held: set[int] = set()
    ended: set[int] = set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return CallFates()
    for line in text.splitlines():
        m = _LOGLINE.match(line.strip())
        if not m:
            continue
        n = int(m.group("n"))
        if m.group("what") == "ended":
            ended.add(n)
        else:
            answered[n] = m.group("by") or ""
            if m.group("held"):
                held.add(n)
    return CallFates(answered, frozenset(held), frozenset(ended))


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the drill's process dies (Linux PR_SET_PDEATHSIG)."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def udp_bound(endpoint: tuple[str, int]) -> bool:
    """Is a UDP socket bound to this address and port on this machine (/proc/net/udp)?"""
    addr, port = endpoint
    try:
        ip = int.from_bytes(bytes(int(x) for x in addr.split(".")), "little")
        want = f"{ip:08X}:{port:04X}"
        with open("/proc/net/udp") as fh:
            return any(line.split()[1] == want for line in fh.readlines()[1:])
    except (OSError, ValueError, IndexError):
        return False


@dataclass(frozen=True, slots=True)
class SippOutcome:
    name: str
    returncode: int | None  # None: killed after its timeout
    stats: SippStats
    files: dict[str, str]
    started: float
    duration_s: float
    fates: CallFates = CallFates()


class SippProcess:
    """One SIPp run with its files in `workdir`: NAME.csv (statistics), NAME.screen, NAME.err, NAME.log."""

    def __init__(self, sipp: str, name: str, args: list[str], workdir: Path, timeout_s: float) -> None:
        self.name, self.workdir, self.timeout_s = name, workdir, timeout_s
        self.files = {k: str(workdir / f"{name}.{k}") for k in ("csv", "screen", "err", "log", "calls")}
        self.argv = [sipp, *args, "-nostdin", "-timeout", f"{int(timeout_s) + 1}s",
                     "-trace_logs", "-log_file", self.files["calls"],
                     "-trace_stat", "-stf", self.files["csv"], "-fd", "1",
                     "-trace_screen", "-screen_file", self.files["screen"],
                     "-trace_err", "-error_file", self.files["err"]]
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self._t0 = 0.0
        self._soft_stopped = False

    async def start(self) -> SippProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        out = open(self.files["log"], "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, stdin=asyncio.subprocess.DEVNULL,
                                                             stdout=out, stderr=out, start_new_session=True,
                                                             preexec_fn=_die_with_parent)
        except OSError as exc:
            raise SippError(f"cannot run {self.argv[0]}: {exc}") from exc
        finally:
            out.close()
        self.started, self._t0 = time.time(), time.monotonic()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def soft_stop(self) -> None:
        """SIPp's soft exit: no new calls, the calls in progress end, then it writes its figures. Sent once:
        SIPp 3.6.1 never exits after a second SIGUSR1 while calls are in progress."""
        if self.running and self.proc is not None and not self._soft_stopped:
            self._soft_stopped = True
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)

    async def wait(self, timeout_s: float | None = None) -> SippOutcome:
        assert self.proc is not None, "not started"
        rc: int | None
        try:
            async with asyncio.timeout(timeout_s if timeout_s is not None else self.timeout_s + 10):
                rc = await self.proc.wait()
        except TimeoutError:
            await self.close()
            rc = None
        stats = parse_stat_csv(Path(self.files["csv"])) or SippStats()
        stats = SippStats(stats.attempted, stats.succeeded, stats.failed, stats.setup_ms,
                          parse_screen(Path(self.files["screen"])), stats.failed_reasons)
        return SippOutcome(self.name, rc, stats, dict(self.files), self.started, time.monotonic() - self._t0,
                           parse_call_log(Path(self.files["calls"])))

    async def close(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


# --------------------------------------------------------------------------- the site's SIP plan


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class SipPlan:
    endpoints: Mapping[str, tuple[str, int]]  # host -> its IVR's SIP address
    caller: str  # address the drill's callers bind
    agent_phone: tuple[str, int]
    dialout: tuple[str, int]
    ext_inbound: str = "100"
    ext_agent: str = "200"
    ext_outbound: str = "300"
    front: tuple[str, int] | None = None  # the SIP front every inbound call enters (the lab's Kamailio)
    hold_s: float = 8.0  # the front's hold limit: a caller waits that long (plus a margin) for an answer

    def host_at(self, endpoint: str) -> str | None:
        """The host whose IVR answers at `endpoint` (ADDR:PORT, as in a 200 OK's Contact)."""
        return next((h for h, (a, p) in self.endpoints.items() if f"{a}:{p}" == endpoint), None)


def sip_plan(cfg: LoadedConfig, drills: DrillsConfigModel) -> SipPlan | None:
    """drills.yaml's `sip`, else the lab's (each ivr stand-in's DIR/ivr.sip, DIR from its start command)."""
    if drills.sip is not None:
        s = drills.sip
        return SipPlan({h: _endpoint(e) for h, e in s.endpoints.items()}, s.caller, _endpoint(s.agent_phone),
                       _endpoint(s.dialout), s.extensions.inbound, s.extensions.agent, s.extensions.outbound,
                       _endpoint(s.front) if s.front else None, s.hold_s)
    found: dict[str, dict[str, str]] = {}
    for name, host in cfg.site_model.hosts.items():
        ivr = host.services.get("ivr")
        argv = (ivr.start or []) if ivr else []
        if "--dir" in argv[:-1]:
            path = Path(argv[argv.index("--dir") + 1]) / "ivr.sip"
            with contextlib.suppress(OSError):
                found[name] = dict(x.split("=", 1) for x in path.read_text().split() if "=" in x)
    if not found or any("sip" not in v for v in found.values()):
        return None
    first = next(iter(found.values()))
    front = _endpoint(first["front"]) if "front" in first else None
    return SipPlan({h: _endpoint(v["sip"]) for h, v in found.items()}, first["caller"], _endpoint(first["agent"]),
                   _endpoint(first["dialout"]), front=front, hold_s=cfg.site_model.routing.hold_s)


# --------------------------------------------------------------------------- verification calls


@dataclass(frozen=True, slots=True)
class CallCheck:
    """One verification call (or line test) and what SIPp (or the agent) said about it."""

    kind: str
    host: str | None
    passed: bool
    detail: str
    started: float
    duration_s: float
    stats: SippStats = SippStats()
    answered_by: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "passed": self.passed, "detail": self.detail,
                "started": self.started, "duration_s": round(self.duration_s, 3), "stats": self.stats.to_dict(),
                "answered_by": list(self.answered_by), "files": list(self.files)}


class Sip:
    """Runs verification calls for one drill; every process it starts is tracked and killed by close()."""

    def __init__(self, plan: SipPlan, workdir: Path, *, sipp: str | None = None, call_timeout_s: float = 15.0) -> None:
        found = sipp or shutil.which("sipp")
        if found is None:
            raise SippError("SIPp is not installed (Debian package sip-tester)")
        self.plan, self.workdir, self.sipp, self.call_timeout_s = plan, workdir, found, call_timeout_s
        self._seq = itertools.count(1)
        self._procs: list[SippProcess] = []

    def _bind(self, addr: str, port: int | None = None) -> list[str]:
        return ["-i", addr, *(["-p", str(port)] if port else []), "-bind_local", "-ci", addr, "-mi", addr]

    def process(self, label: str, args: list[str], timeout_s: float | None = None) -> SippProcess:
        proc = SippProcess(self.sipp, f"{next(self._seq):03d}-{label}", args, self.workdir,
                           timeout_s or self.call_timeout_s)
        self._procs.append(proc)
        return proc

    def uac(self, label: str, host: str, exten: str, scenario: str, calls: int = 1, rate: float | None = None,
            extra: list[str] | None = None, timeout_s: float | None = None) -> SippProcess:
        addr, port = self.plan.endpoints[host]
        args = [f"{addr}:{port}", "-sf", str(SCENARIOS / scenario), "-s", exten, *self._bind(self.plan.caller),
                *FAST_FAIL, *(["-m", str(calls)] if calls else []), "-r", str(rate or 1), *(extra or [])]
        return self.process(label, args, timeout_s)

    def uac_front(self, label: str, exten: str, scenario: str, calls: int = 1, rate: float | None = None,
                  extra: list[str] | None = None, timeout_s: float | None = None) -> SippProcess:
        """A caller through the SIP front: it may be held (ringing) up to the hold limit before an answer."""
        assert self.plan.front is not None, "no SIP front in the plan"
        addr, port = self.plan.front
        wait_ms = int((self.plan.hold_s + HOLD_MARGIN_S) * 1000)
        args = [f"{addr}:{port}", "-sf", str(SCENARIOS / scenario), "-s", exten, *self._bind(self.plan.caller),
                "-max_invite_retrans", "2", "-recv_timeout", str(wait_ms),
                *(["-m", str(calls)] if calls else []), "-r", str(rate or 1), *(extra or [])]
        return self.process(label, args, timeout_s or self.call_timeout_s + self.plan.hold_s)

    def far_end(self, label: str, endpoint: tuple[str, int]) -> SippProcess:
        args = ["-sf", str(SCENARIOS / "uas_answer.xml"), *self._bind(*endpoint), "-m", "1"]
        return self.process(label, args)

    async def close(self) -> None:
        for proc in self._procs:
            await proc.close()

    async def inbound_one(self, host: str) -> SippOutcome:
        """One inbound call that must reach `host`'s IVR: through the front when there is one (answered by
        another host's IVR counts as not reached), else straight to the host."""
        if self.plan.front is None:
            proc = await self.uac(f"inbound-{host}", host, self.plan.ext_inbound, "uac_inbound.xml").start()
            return await proc.wait()
        out = await self.front_call(f"inbound-front-{host}")
        by = {self.plan.host_at(b) for b in out.fates.answered.values()}
        if out.stats.succeeded and by != {host}:
            stats = out.stats
            out = SippOutcome(out.name, out.returncode, SippStats(stats.attempted, 0, stats.attempted, None,
                                                                  stats.responses, stats.failed_reasons),
                              out.files, out.started, out.duration_s, out.fates)
        return out

    async def front_call(self, label: str) -> SippOutcome:
        proc = await self.uac_front(label, self.plan.ext_inbound, "uac_inbound.xml").start()
        return await proc.wait()

    async def _direct(self, host: str) -> SippOutcome:
        proc = await self.uac(f"inbound-{host}", host, self.plan.ext_inbound, "uac_inbound.xml").start()
        return await proc.wait()

    async def inbound(self, active: str | None) -> CallCheck:
        """Through the front (when there is one): a caller's call is answered by the active host's IVR, and
        no other host's IVR answers a call placed on it directly (two IVRs serving at once). Without a
        front: every host is called at once and exactly the active host answers."""
        t0, started = time.monotonic(), time.time()
        if self.plan.front is not None:
            others = [h for h in self.plan.endpoints if h != active]
            front, *direct = await asyncio.gather(self.front_call("inbound-front"),
                                                  *(self._direct(h) for h in others))
            via = tuple(sorted({self.plan.host_at(b) or b for b in front.fates.answered.values()}))
            also = tuple(h for h, o in zip(others, direct, strict=True) if o.stats.succeeded >= 1)
            passed = active is not None and via == (active,) and not also
            detail = (f"through the front: answered by {', '.join(via) or 'nobody'}; expected the active host "
                      f"{active}" + (f"; {', '.join(also)} also answered a direct call (two IVRs)" if also else ""))
            total = sum((o.stats for o in direct), front.stats)
            return CallCheck("inbound", active, passed, detail, started, time.monotonic() - t0, total, via + also,
                             (front.files["csv"], *(o.files["csv"] for o in direct)))
        hosts = list(self.plan.endpoints)
        outcomes = await asyncio.gather(*(self._direct(h) for h in hosts))
        answered = tuple(h for h, o in zip(hosts, outcomes, strict=True) if o.stats.succeeded >= 1)
        passed = active is not None and answered == (active,)
        others = [h for h in answered if h != active]
        detail = (f"answered by {', '.join(answered) or 'nobody'}; expected the active host {active} only"
                  + (f" (also answered: {', '.join(others)})" if others else ""))
        total = sum((o.stats for o in outcomes), SippStats())
        return CallCheck("inbound", active, passed, detail, started, time.monotonic() - t0, total, answered,
                         tuple(o.files["csv"] for o in outcomes))

    async def _via_far_end(self, kind: str, host: str, far: tuple[str, int], exten: str, scenario: str,
                           extra: list[str]) -> CallCheck:
        t0, started = time.monotonic(), time.time()
        end = await self.far_end(f"{kind}-far-end", far).start()
        deadline = time.monotonic() + 5.0
        while not udp_bound(far) and end.running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        caller = await self.uac(f"{kind}-{host}", host, exten, scenario, extra=extra).start()
        call = await caller.wait()
        far_out = await end.wait(timeout_s=8.0 if call.stats.succeeded else 0.5)
        passed = call.stats.succeeded == 1 and far_out.stats.succeeded == 1
        who = "the agent phone" if kind == "agent_answer" else "the far end"
        detail = (f"caller {'connected' if call.stats.succeeded else 'not connected'} via {host}; "
                  f"{who} {'answered' if far_out.stats.succeeded else 'got no call'}")
        return CallCheck(kind, host, passed, detail, started, time.monotonic() - t0, call.stats,
                         (host,) if passed else (), (call.files["csv"], far_out.files["csv"]))

    async def agent_answer(self, host: str) -> CallCheck:
        return await self._via_far_end("agent_answer", host, self.plan.agent_phone, self.plan.ext_agent,
                                       "uac_agent.xml", ["-d", "500"])

    async def outbound(self, host: str) -> CallCheck:
        return await self._via_far_end("outbound", host, self.plan.dialout, self.plan.ext_outbound,
                                       "uac_inbound.xml", [])


def workdir_for(base: Path, run_id: str) -> Path:
    path = base / run_id / "sipp"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path
