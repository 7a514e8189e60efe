"""Self-fencing under a real partition (issue 14 item 8, last case): the primary cut from every controller
stops its own CTI/IVR before the standby starts them, and a watcher of both hosts' process tables never
sees CTI/IVR running on both.

The primary (ipc-a: its lab AMI server, stand-in services and real agent), the standby (ipc-b, the same)
and the controller each live in a network namespace on one bridge (tests/ha/netns_site.py); the site has
`fencing.method: self` and is in automatic mode. The primary's link is cut with `ip link set ... down`:
its agent's report pushes stop being answered, it stops CTI/IVR itself `self_fence_after_s` after its
last answered push; the controller sees the host unreachable, plans the failover, and its fence step
waits `self_fence_after_s + self_fence_margin_s` from the primary's last report before the standby's
CTI/IVR start. Needs root for `ip netns`; skips with the reason where namespaces cannot be created.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.netns import NetnsLab, netns_available
from tests.ha.netns_site import HOSTS, NetnsSite
from tests.support import wait_until

AFTER_S = 6.0  # the agent: no controller answer for this long -> stop CTI/IVR (above the 2 s push timeout and a
# loaded machine's slow answers: at 3 s an agent fenced itself at start-up on this 2-core box under load)
MARGIN_S = 5.0  # the controller: after + this from the last report; above the check (0.25 s) + the stop timeout (4 s)
HEARTBEAT_S = 1.0  # the lab's controller.heartbeat_s: the agent pushes a report at least this often


class Watcher:
    """Polls both hosts' CTI/IVR processes (pid file + live process) every few milliseconds from its own
    thread; keeps every change with its wall-clock time (comparable with the controller's journal)."""

    def __init__(self, site: NetnsSite) -> None:
        self.site = site
        self.samples: list[tuple[float, dict[str, frozenset[str]]]] = []
        self.both: list[tuple[float, dict[str, frozenset[str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cti-ivr-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        last: dict[str, frozenset[str]] | None = None
        while not self._stop.is_set():
            now = {h: self.site.running(h) for h in HOSTS}
            t = time.time()
            if all(now.values()):
                self.both.append((t, now))
            if now != last:
                self.samples.append((t, now))
                last = now
            self._stop.wait(0.005)  # the watcher's pace, not a synchronisation

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, predicate: Any, after: float = 0.0) -> float | None:
        return next((t for t, now in self.samples if t >= after and predicate(now)), None)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[NetnsSite]:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    net = NetnsLab(subnet_prefix="10.214.0")
    s: NetnsSite | None = None
    try:
        s = NetnsSite(tmp_path, net, after_s=AFTER_S, margin_s=MARGIN_S)
        s.up()
        yield s
    finally:
        if s is not None:
            s.close()
        net.close()


def _entries(site: NetnsSite, kind: str) -> list[dict[str, Any]]:
    return site.get(f"/api/v1/journal?kind={kind}&limit=500")["entries"]  # type: ignore[no-any-return]


@pytest.mark.timeout(150)
def test_the_primary_cut_from_the_controller_fences_itself_before_the_standby_starts(site: NetnsSite) -> None:
    # the site is up: the primary runs CTI/IVR, the standby does not, and the controller sees both hosts
    assert site.running("ipc-a") == {"cti", "ivr"} and site.running("ipc-b") == frozenset()
    assert site.get("/api/v1/status")["mode"] == "automatic"
    watcher = Watcher(site)
    watcher.start()
    try:
        t_cut = time.time()
        site.net.cut("ipc-a")
        wait_until(lambda: site.running("ipc-b") == {"cti", "ivr"}, timeout=60,
                   describe=lambda: (watcher.samples[-3:], site.log("controller").read_text()[-3000:]))
    finally:
        watcher.stop()

    # the primary stopped CTI/IVR by itself: its processes ended after_s after its last answered push
    a_stopped = watcher.first(lambda now: not now["ipc-a"])
    assert a_stopped is not None, watcher.samples
    assert AFTER_S - HEARTBEAT_S - 0.5 <= a_stopped - t_cut <= AFTER_S + 4.5, (a_stopped - t_cut, watcher.samples)
    agent_log = site.log("ipc-a-agent").read_text()
    said = f"no controller answered for {AFTER_S:.1f} s (fencing.method self)"
    fenced = [ln for ln in agent_log.splitlines() if said in ln]
    assert len(fenced) == 1 and "CRITICAL" in fenced[0], agent_log[-3000:]
    assert set(fenced[0].rpartition("stopping ")[2].split(", ")) == {"cti", "ivr"}, fenced

    # the controller started the standby's CTI/IVR only after that, once its fence step had waited
    b_started = watcher.first(lambda now: bool(now["ipc-b"]))
    assert b_started is not None and b_started > a_stopped, watcher.samples
    plans = _entries(site, "plan_started")
    assert len(plans) == 1 and plans[0]["data"]["action"] == "failover", plans
    plan = plans[0]["plan_id"]
    started = {e["step"]: e for e in _entries(site, "step_started") if e["plan_id"] == plan}
    finished = {e["step"]: e for e in _entries(site, "step_finished") if e["plan_id"] == plan}
    fence = next(finished[i] for i, e in started.items() if e["data"]["step"]["kind"] == "fence")
    assert fence["status"] == "ok" and fence["host"] == "ipc-a", fence
    starts = [e for e in started.values() if e["host"] == "ipc-b" and e["data"]["step"]["kind"] == "start"
              and e["data"]["step"].get("service") in ("cti", "ivr")]
    assert {e["data"]["step"]["service"] for e in starts} == {"cti", "ivr"}, starts
    assert fence["ts"] >= a_stopped, (fence["ts"] - a_stopped, fence)
    assert fence["ts"] - t_cut >= AFTER_S + MARGIN_S - HEARTBEAT_S - 0.5, fence["ts"] - t_cut
    assert min(e["ts"] for e in starts) > a_stopped

    # and at no sample of the watcher did CTI/IVR run on both hosts
    assert watcher.both == [], watcher.both[:5]
    assert len(watcher.samples) >= 3, watcher.samples  # it saw the primary stop and the standby start
    print(f"cut -> primary stopped {a_stopped - t_cut:.2f} s, fence done {fence['ts'] - t_cut:.2f} s, "
          f"standby CTI/IVR started {b_started - t_cut:.2f} s (after {AFTER_S:g} s, margin {MARGIN_S:g} s)")
