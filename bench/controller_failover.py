"""Controller timings on the live lab, and how many agents one controller follows on one core.

1. **Failover on the lab** (primary CTI crash, supervised): fault injected -> fault seen by the
   controller -> decision (the rule's debounce subtracted) -> approval -> last step verified. The
   controller's own overhead is the plan's wall time minus the sum of its steps' durations (the steps
   are agent work: stopping and starting processes), i.e. the gaps the controller adds between steps.
2. **Hosts followed**: one controller process (the real API, engine and journal) with a synthetic site
   of N hosts, fed by a separate load process that pushes one report per host per second over HTTP.
   We measure the controller's CPU use over the window (must stay under one core) and the engine's
   cycle count; the baseline is a do-nothing FastAPI endpoint receiving the same pushes in the same run.

    .venv/bin/python -m bench.controller_failover [--hosts 200] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


async def failover_round(tmp: Path, net: str) -> dict[str, float]:
    from lab.labconfig import LabLayout
    from lab.site import LabSite
    lab = LabSite(LabLayout(tmp, net=net, controller_listen=f"{net}.100:8080"))
    await lab.up()
    try:
        api = httpx.AsyncClient(base_url=lab.api, timeout=10)
        v = {"Authorization": f"Bearer {lab.token('viewer')}"}
        o = {"Authorization": f"Bearer {lab.token('operator')}"}
        while not all(h["reachable"] for h in (await api.get("/api/v1/status", headers=v)).json()["hosts"].values()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        t_inject = time.time()
        await lab.inject("ipc-a", "service", "cti", "crash")
        while not (plans := (await api.get("/api/v1/plans", params={"status": "proposed"}, headers=v)).json()["plans"]):
            await asyncio.sleep(0.02)
        t_approve = time.time()
        pid = plans[0]["id"]
        await api.post(f"/api/v1/plans/{pid}/approve", json={"reason": "benchmark"}, headers=o)
        while (p := (await api.get(f"/api/v1/plans/{pid}", headers=v)).json())["status"] == "running":
            await asyncio.sleep(0.02)
        journal = (await api.get("/api/v1/journal", params={"limit": 500}, headers=v)).json()["entries"]
        seen = min(e["ts"] for e in journal if e["kind"] == "fault_seen" and "cti" in (e["reason"] or ""))
        proposed = min(e["ts"] for e in journal if e["kind"] == "plan_proposed")
        started = min(e["ts"] for e in journal if e["kind"] == "plan_started" and e["plan_id"] == pid)
        ended = max(e["ts"] for e in journal if e["kind"] == "plan_finished" and e["plan_id"] == pid)
        steps = sum(e["duration_s"] for e in journal if e["kind"] == "step_finished" and e["plan_id"] == pid)
        debounce = 0.0  # config/rules.yaml: primary-cti-ivr-fault, debounce_by_fault_s service_down
        await api.aclose()
        return {"status_ok": float(p["status"] == "finished"), "inject_to_seen_s": seen - t_inject,
                "decision_after_debounce_s": proposed - seen - debounce,
                "approval_to_done_s": ended - t_approve, "plan_wall_s": ended - started,
                "steps_sum_s": steps, "controller_overhead_s": (ended - started) - steps}
    finally:
        await lab.down()


def follow_round(hosts: int, seconds: float, baseline: bool) -> dict[str, float]:
    """Run the controller (or the baseline) in a child process, load it from another, measure its CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        server = subprocess.Popen([sys.executable, "-m", "bench._follow_server", "--hosts", str(hosts), "--dir", tmp,
                                   "--ready", str(ready)] + (["--baseline"] if baseline else []), cwd=REPO)
        try:
            while not ready.exists():
                if server.poll() is not None:
                    raise RuntimeError("follow server died")
                time.sleep(0.05)
            info = json.loads(ready.read_text())
            load = subprocess.run([sys.executable, "-m", "bench._follow_load", "--url", info["url"], "--token",
                                   info["token"], "--hosts", str(hosts), "--seconds", str(seconds)],
                                  cwd=REPO, capture_output=True, text=True, check=True)
            pushed = json.loads(load.stdout)
            stats = json.loads(httpx.get(info["url"] + "/bench/stats", timeout=10).text)
        finally:
            server.terminate()
            server.wait(10)
    return {"pushes_per_s": pushed["ok"] / seconds, "errors": pushed["errors"],
            "cpu_fraction_of_one_core": stats["cpu_s"] / seconds, "cycles": stats.get("cycles", 0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.controller_failover")
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(asyncio.run(failover_round(Path(tmp), f"127.{200 + i}.1")))
    print("failover on the lab (primary CTI crash, supervised), median of", args.rounds, "rounds:")
    for key in rounds[0]:
        print(f"  {key:<28} {statistics.median(r[key] for r in rounds):8.3f}")
    ctl = follow_round(args.hosts, args.seconds, baseline=False)
    base = follow_round(args.hosts, args.seconds, baseline=True)
    print(f"\nfollowing {args.hosts} hosts, 1 report/s each, for {args.seconds:g} s:")
    print(f"  controller: {ctl['pushes_per_s']:.0f} pushes/s, {ctl['errors']} errors, "
          f"CPU {ctl['cpu_fraction_of_one_core']:.2f} of one core, {ctl['cycles']} engine cycles")
    print(f"  baseline (do-nothing endpoint): {base['pushes_per_s']:.0f} pushes/s, "
          f"CPU {base['cpu_fraction_of_one_core']:.2f} of one core")
    ratio = ctl["cpu_fraction_of_one_core"] / max(base["cpu_fraction_of_one_core"], 1e-9)
    print(f"  controller CPU / baseline CPU: {ratio:.2f}")
    ok = (statistics.median(r["decision_after_debounce_s"] for r in rounds) < 0.2 + 1.0  # + one heartbeat
          and statistics.median(r["controller_overhead_s"] for r in rounds) < 1.0
          and ctl["cpu_fraction_of_one_core"] < 1.0 and ctl["errors"] == 0)
    print("\ntargets (decision < 200 ms after debounce + report interval, overhead < 1 s, 200 hosts on one core):",
          "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
