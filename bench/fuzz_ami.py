"""Fuzz the agent's AMI reader with a million inputs over a real loopback connection; count crashes and hangs.

    python -m bench.fuzz_ami                      # 1,000,000 inputs, seed 1, about a minute on 2 cores
    python -m bench.fuzz_ami --inputs 20000 --seed 7
    python -m bench.fuzz_ami --atheris 200000     # also: coverage-guided, in process (needs `pip install atheris`)

The agent side is the real `AmiMonitor` (our tolerant parser on panoramisk 1.4, the link with its Ping
watchdog, the consumer and the host model), logged in to a fake Asterisk on 127.0.0.1 that writes the
inputs into the session (tests/fuzz/amikit.py: the generator, the peer, what counts as a crash or a hang).
Inputs go in batches (`--batch`); every `--split-every`-th batch is written in quarters per input with the
agent reading between them (messages and UTF-8 sequences cut mid-way), the rest in one write; after each
batch a probe event must be applied and a Ping answered within `--probe-timeout` seconds. Every
`--interleave-every`-th batch the monitor also re-reads its lists while the peer puts junk between the
pieces of each answer, reusing the list's ActionID. A failing batch is saved under `--save` for replay.
Exit status 1 if anything crashed or hung.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

from agents.ami import AmiError
from tests.fuzz.amikit import AgentUnderFuzz, Generator, render

REPO = Path(__file__).resolve().parents[1]


async def fuzz(args: argparse.Namespace) -> dict[str, object]:
    gen = Generator(args.seed, huge_every=args.huge_every)
    started = time.monotonic()
    refreshes = {"ok": 0, "failed": 0}
    # Re-read the lists every 2 s, as the agent does every 10 s in production: that is what bounds the channels a
    # peer announces and never hangs up (junk Newchannel events here).
    async with AgentUnderFuzz(probe_timeout_s=args.probe_timeout, action_timeout_s=1.0,
                              reconcile_interval_s=2.0) as agent:
        assert agent.mon is not None
        batch_no = 0
        while agent.tally.inputs < args.inputs:
            batch_no += 1
            inputs = [gen.next() for _ in range(min(args.batch, args.inputs - agent.tally.inputs))]
            problems = await agent.run_batch(inputs, split=batch_no % args.split_every == 0)
            if batch_no % args.interleave_every == 0:
                agent.peer.interleave = lambda aid: gen.next() if gen.rng.random() < 0.5 else render(
                    ("Event", "PRIShowSpans"), ("ActionID", aid), ("Span", str(gen.rng.randrange(-3, 99))))
                try:
                    await agent.mon.refresh()
                    refreshes["ok"] += 1
                except AmiError:
                    refreshes["failed"] += 1
                agent.peer.interleave = None
                problems += await agent.run_batch([])
            if problems:
                saved = save(args, batch_no, inputs)
                print(f"batch {batch_no}: {problems[:3]} (inputs saved to {saved})", flush=True)
            if batch_no % max(1, 100_000 // args.batch) == 0:
                rate = agent.tally.inputs / (time.monotonic() - started)
                print(f"  {agent.tally.inputs:>9,} inputs, {len(agent.tally.crashes)} crashes, "
                      f"{len(agent.tally.hangs)} hangs, {rate:,.0f} inputs/s", flush=True)
        t = agent.tally
        wall = time.monotonic() - started
        return {"inputs": t.inputs, "bytes": t.bytes, "batches": t.batches, "probes": t.probes,
                "crashes": len(t.crashes), "hangs": len(t.hangs), "reconnects_asked": t.reconnects_asked,
                "agent_reconnects": agent.mon.link.connects - 1, "warnings_logged": agent.errors.warnings,
                "list_refreshes_with_junk": refreshes, "wall_s": round(wall, 1),
                "inputs_per_s": round(t.inputs / wall),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "seed": args.seed,
                "python": platform.python_version(),
                "cpus": os.cpu_count(), "load_avg": [round(x, 1) for x in os.getloadavg()],
                "first_problems": (t.crashes + t.hangs)[:5]}


def save(args: argparse.Namespace, batch_no: int, inputs: list[bytes]) -> str:
    folder = Path(args.save)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ami-seed{args.seed}-batch{batch_no}.json"
    path.write_text(json.dumps([i.decode("latin-1") for i in inputs]))  # latin-1: bytes survive as code points
    return str(path)


def atheris_run(runs: int) -> int:
    """Coverage-guided fuzzing of the same parser and model in process (no socket), in a child interpreter."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (pip install atheris); skipped", flush=True)
        return 0
    import subprocess

    code = f"import sys; sys.argv = ['fuzz_ami', '-runs={runs}', '-max_len=4096']; " \
           "from bench._ami_atheris import main; main()"
    return subprocess.call([sys.executable, "-c", code], cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz_ami", description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1000, help="inputs between two probes")
    ap.add_argument("--huge-every", type=int, default=5000, help="one input in N is a 70 kB-1.2 MB field")
    ap.add_argument("--split-every", type=int, default=10)
    ap.add_argument("--interleave-every", type=int, default=50)
    ap.add_argument("--probe-timeout", type=float, default=5.0)
    ap.add_argument("--save", default=str(REPO / "artifacts" / "fuzz"), help="where failing batches go")
    ap.add_argument("--atheris", type=int, default=0, metavar="RUNS", help="then RUNS coverage-guided inputs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(fuzz(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"\ninputs {result['inputs']:,} ({result['bytes']:,} bytes) in {result['batches']:,} batches; "
              f"crashes {result['crashes']}, hangs {result['hangs']}; {result['inputs_per_s']:,} inputs/s "
              f"({result['wall_s']} s); probes {result['probes']:,}; reconnects asked/seen "
              f"{result['reconnects_asked']}/{result['agent_reconnects']}; warnings logged "
              f"{result['warnings_logged']:,}; list re-reads with junk {result['list_refreshes_with_junk']}; "
              f"max RSS {result['max_rss_mb']} MB; "
              f"seed {result['seed']}, Python {result['python']}, load {result['load_avg']}")
    rc = 1 if result["crashes"] or result["hangs"] else 0
    if args.atheris:
        rc |= 1 if atheris_run(args.atheris) else 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
