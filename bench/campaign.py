"""The full fault campaign as a benchmark: 200 runs (by default) of random faults and operator actions on
a lab of its own, judged by the independent checker (`lab/campaign_check.py`).

It is too long for CI (about 45 minutes on the 2-core box); CI runs a 20-run campaign whose seed changes
with every commit (`tests/campaign/test_campaign_live.py`). This command records what the long run found,
with the seed and the commit it ran on, so bench/README.md can cite it:

    .venv/bin/python -m bench.campaign [--runs 200] [--seed 2026] [--json reports/campaign.json]
    .venv/bin/python -m bench.campaign --controllers 3 [--partitions] ...   # the controller cluster's events

Exit 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def commit() -> str:
    """The checkout's commit (with `+dirty` when it has uncommitted changes), for the record."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    from lab.campaign import Settings, enter_partitions, run_campaign, summary_lines

    ap = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", default="2026")
    ap.add_argument("--net", default=None, help="the campaign lab's network: 127.78.1 (loopback) by default, "
                                              "10.78.1 with --partitions")
    ap.add_argument("--json", default=None, help="write the full report here")
    ap.add_argument("--controllers", type=int, default=1, choices=(1, 3),
                    help="3: a controller cluster on etcd, with the cluster's events and invariants")
    ap.add_argument("--partitions", action="store_true",
                    help="with --controllers 3: the lab in network namespaces, link cuts among the events (root)")
    args = ap.parse_args(argv)
    if args.partitions and args.controllers != 3:
        ap.error("--partitions needs --controllers 3")
    args.net = args.net or ("10.78.1" if args.partitions else "127.78.1")
    with tempfile.TemporaryDirectory(prefix="ccfo-campaign-") as tmp:
        s = Settings(runs=args.runs, seed=args.seed, root=Path(tmp) / "campaign", net=args.net,
                     controller_listen=f"{args.net}.100:8080", progress=True, controllers=args.controllers,
                     partitions=args.partitions)
        enter_partitions(s)
        rep = asyncio.run(run_campaign(s))
    rep["commit"] = commit()
    print(f"commit {rep['commit']}")
    print("\n".join(summary_lines(rep)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rep, indent=2, default=str))
    return 1 if rep["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
