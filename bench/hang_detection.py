"""A hung CTI beside a crashed one, on the live lab: time from the fault to the controller seeing it, and
to the plan it proposes (supervised mode), N rounds of each, interleaved in one run on one lab.

* hang: SIGSTOP of the primary's CTI stand-in (`ccfo lab inject ipc-a service cti hang`). Its status
  command still says running; the agent's liveness probe (lab: HTTP, every 0.5 s, 0.5 s timeout,
  3 failures) reports it `hung`; the rule's debounce for service_hung is 0.5 s (config/rules.yaml).
* crash: SIGKILL of the same stand-in. The agent's service poll (every half heartbeat: 0.5 s) sees it
  `failed`; the rule's debounce for service_down is 3 s.

"Seen" is the controller's journal entry `fault_seen` (its own clock, the same machine's), "proposed" its
`plan_proposed`; both are measured from the signal. Between rounds the proposal is rejected and the
stand-in restored (SIGCONT, or started again), and the site must be normal with no fault. The rules are
the shipped ones but for the flap window (1 s instead of 300 s: the same fault every few seconds would
otherwise be "flapping", reported and not acted on, from the third round on).

    .venv/bin/python -m bench.hang_detection [--rounds 10] [--net 127.210.1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAULT = {"hang": "ipc-a:service:cti=hung", "crash": "ipc-a:service:cti=down"}
UNDO = {"hang": "resume", "crash": "start"}


class Bench:
    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.api = httpx.AsyncClient(base_url=lab.api, timeout=10)
        self.v = {"Authorization": f"Bearer {lab.token('viewer')}"}
        self.o = {"Authorization": f"Bearer {lab.token('operator')}"}

    async def status(self) -> dict[str, Any]:
        return (await self.api.get("/api/v1/status", headers=self.v)).json()  # type: ignore[no-any-return]

    async def until(self, what: str, pred: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = await pred()
            if got:
                return got
            await asyncio.sleep(0.02)
        raise RuntimeError(f"timed out waiting for {what}")

    async def normal(self) -> bool:
        s = await self.status()
        return s["state"] == "normal" and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())

    async def journal_ts(self, kind: str, text: str, after: float) -> float | None:
        entries = (await self.api.get("/api/v1/journal", params={"limit": 200, "kind": kind},
                                      headers=self.v)).json()["entries"]
        hits = [e["ts"] for e in entries if e["ts"] >= after - 0.05 and text in f"{e['reason']} {e['data']}"]
        return min(hits) if hits else None

    async def one(self, how: str) -> dict[str, float]:
        await self.until("the normal site", self.normal, 60)
        await asyncio.sleep(1.0)  # a few heartbeats of calm
        fault = FAULT[how]
        t0 = time.time()
        await self.lab.inject("ipc-a", "service", "cti", how)
        seen = await self.until(f"{fault} in the journal", lambda: self.journal_ts("fault_seen", fault, t0))
        plans = await self.until("a proposal", lambda: self._proposed())
        proposed = await self.until("plan_proposed", lambda: self.journal_ts("plan_proposed", fault, t0))
        await self.api.post(f"/api/v1/plans/{plans[0]['id']}/reject", json={"reason": "benchmark"}, headers=self.o)
        await self.lab.inject("ipc-a", "service", "cti", UNDO[how])
        return {"seen_s": seen - t0, "proposed_s": proposed - t0}

    async def _proposed(self) -> list[dict[str, Any]]:
        r = await self.api.get("/api/v1/plans", params={"status": "proposed"}, headers=self.v)
        return r.json()["plans"]  # type: ignore[no-any-return]


async def run(rounds: int, net: str) -> dict[str, list[dict[str, float]]]:
    from lab.campaign import Settings, campaign_source
    from lab.labconfig import LabLayout
    from lab.site import LabSite
    with tempfile.TemporaryDirectory() as tmp:
        # the shipped rules, but a 1 s flap window: the same fault every round is not "flapping" here
        source = campaign_source(Path(tmp), Settings(flap_window_s=1.0))
        lab = LabSite(LabLayout(Path(tmp) / "lab", net=net, controller_listen=f"{net}.100:8080"), source)
        await lab.up()
        bench = Bench(lab)
        out: dict[str, list[dict[str, float]]] = {"hang": [], "crash": []}
        try:
            for i in range(rounds):
                for how in ("hang", "crash") if i % 2 == 0 else ("crash", "hang"):
                    r = await bench.one(how)
                    out[how].append(r)
                    print(f"round {i + 1} {how:<5}: seen {r['seen_s']:.3f} s, proposed {r['proposed_s']:.3f} s",
                          flush=True)
        finally:
            await bench.api.aclose()
            await lab.down()
        return out


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f} s, min {min(values):.3f}, max {max(values):.3f}"
            + (f", p90 {statistics.quantiles(values, n=10)[-1]:.3f}" if len(values) >= 10 else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hang_detection")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--net", default="127.210.1")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args.rounds, args.net))
    print(f"\n{args.rounds} rounds each, interleaved, one lab (supervised; probe 0.5 s x 3, poll 0.5 s):")
    for how in ("hang", "crash"):
        print(f"  {how:<5} -> fault seen:    {summary([r['seen_s'] for r in out[how]])}")
        print(f"  {how:<5} -> plan proposed: {summary([r['proposed_s'] for r in out[how]])}")
    worst = max(r["seen_s"] for r in out["hang"])
    ok = worst <= 0.5 * 3 + 1.0
    print(f"\ntarget (every hang seen within interval_s x failures + 1 s = 2.5 s): {'met' if ok else 'MISSED'} "
          f"(worst {worst:.3f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
