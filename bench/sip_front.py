"""What callers hear during a switch: the `planned-switchover` and `primary-cti-crash` drills on the live
lab, every call through the SIP front (Kamailio), at 2 and 10 calls/s, with the front's hold
(`routing.hold_s: 8`) and without it (`routing.hold_s: 0`, the old behaviour) in the same run.

    python -m bench.sip_front                       # 1 round: 2 drills x 2 rates x 2 hold settings
    python -m bench.sip_front --rounds 3 --json out.json

Per drill run: calls refused (never answered), cut (answered, ended abnormally) and held (answered after
the front held them) for the drill and the way back, from the steady load's SIPp call logs; fault to
first answered call (the drill's time to recover); the fault plan's duration. Each hold setting gets its
own lab (its own loopback network); the drills run through `ccfo drill run`, as an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from controller.cli import main as ccfo
from drills.model import LIBRARY
from lab.labconfig import LabLayout
from lab.site import LabSite
from lab.supervisor import control_app

DRILLS = ("planned-switchover", "primary-cti-crash")
KEYS = ("calls_attempted", "calls_refused", "calls_cut", "calls_held", "way_back_calls_attempted",
        "way_back_calls_refused", "way_back_calls_cut", "way_back_calls_held", "time_to_recover_s",
        "plan_duration_s")


def _free_port(net: str) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((f"{net}.1", 0))
            port = int(s.getsockname()[1])
        try:
            for last in (1, 2, 200, 240, 241, 242):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((f"{net}.{last}", port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free UDP port on {net}")


async def _healthy(lab: LabSite) -> bool:
    import httpx
    async with httpx.AsyncClient(base_url=lab.api, timeout=5) as c:
        s = (await c.get("/api/v1/status", headers={"Authorization": f"Bearer {lab.token('viewer')}"})).json()
    return bool(s["state"] == "normal" and not s["faults"] and s["active_host"] == "ipc-a"
                and all(h["reachable"] for h in s["hosts"].values()))


async def _wait(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise RuntimeError("the lab did not become healthy")
        await asyncio.sleep(0.5)


def _scenario(name: str, rate: float, work: Path) -> Path:
    s = yaml.safe_load((LIBRARY / f"{name}.yaml").read_text())
    s["load"] = {"rate_cps": rate}
    path = work / f"{name}-{rate:g}cps.yaml"
    path.write_text(yaml.safe_dump(s, sort_keys=False))
    return path


async def run_setting(hold_s: float, rates: list[float], rounds: int, net: str, work: Path) -> list[dict[str, Any]]:
    lay = LabLayout(work / f"lab-hold{hold_s:g}", net=net, controller_listen=f"{net}.100:8080", hold_s=hold_s)
    lay.sip_port = _free_port(net)
    lab = LabSite(lay)
    out: list[dict[str, Any]] = []
    stop = asyncio.Event()
    server: uvicorn.Server | None = None
    serving: asyncio.Task[Any] | None = None
    try:
        await lab.up()
        host, _, port = lay.lab_control.rpartition(":")
        server = uvicorn.Server(uvicorn.Config(control_app(lab, stop), host=host, port=int(port),
                                               log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        (lay.root / "lab.json").write_text(json.dumps({"pid": os.getpid(), "control": f"http://{lay.lab_control}",
                                                       **lab.summary()}))
        for r in range(rounds):
            for rate in rates:
                for name in DRILLS:
                    await _wait(lambda: _healthy(lab), 120)
                    reports = work / "reports" / f"hold{hold_s:g}-{name}-{rate:g}-{r}"
                    path = _scenario(name, rate, work)
                    rc = await asyncio.to_thread(ccfo, ["drill", "run", str(path), "--config", str(lay.config),
                                                        "--reports", str(reports)])
                    docs = sorted(reports.glob("*/report.json"))
                    doc = json.loads(docs[-1].read_text()) if docs else {}
                    row = {"hold_s": hold_s, "drill": name, "rate_cps": rate, "round": r, "exit": rc,
                           "status": doc.get("status"), "reason": doc.get("reason"),
                           **{k: (doc.get("figures") or {}).get(k) for k in KEYS}}
                    print(json.dumps(row), flush=True)
                    out.append(row)
    finally:
        if server is not None:
            server.should_exit = True
        if serving is not None:
            with contextlib.suppress(BaseException):
                await serving
        await lab.down()
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| drill | calls/s | hold_s | runs | refused | cut | held | way back refused/cut/held | "
             "fault→first answered (s) | plan (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["drill"], row["rate_cps"], row["hold_s"]), []).append(row)

    def tot(rs: list[dict[str, Any]], k: str) -> str:
        vals = [r[k] for r in rs if r.get(k) is not None]
        return f"{sum(vals)}" if vals else "-"

    def med(rs: list[dict[str, Any]], k: str) -> str:
        vals = [r[k] for r in rs if r.get(k) is not None]
        return f"{statistics.median(vals):.1f}" if vals else "-"

    for (drill, rate, hold), rs in sorted(groups.items()):
        attempted = tot(rs, "calls_attempted")
        lines.append(f"| {drill} | {rate:g} | {hold:g} | {len(rs)} | {tot(rs, 'calls_refused')}/{attempted} | "
                     f"{tot(rs, 'calls_cut')} | {tot(rs, 'calls_held')} | {tot(rs, 'way_back_calls_refused')}/"
                     f"{tot(rs, 'way_back_calls_cut')}/{tot(rs, 'way_back_calls_held')} of "
                     f"{tot(rs, 'way_back_calls_attempted')} | {med(rs, 'time_to_recover_s')} | "
                     f"{med(rs, 'plan_duration_s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sip_front")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--rates", default="2,10")
    ap.add_argument("--holds", default="8,0", help="routing.hold_s settings, each on its own lab")
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args(argv)
    rates = [float(x) for x in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ccfo-bench-front-") as tmp:
        for i, hold in enumerate(float(x) for x in args.holds.split(",")):
            rows += asyncio.run(run_setting(hold, rates, args.rounds, f"127.{230 + i}.1", Path(tmp)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))
    failed = [r for r in rows if r["hold_s"] > 0 and (r["calls_refused"] or r["way_back_calls_refused"])]
    print(f"\nruns with the hold that refused a call: {len(failed)} of {sum(r['hold_s'] > 0 for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
