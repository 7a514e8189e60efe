"""`ccfo demo`: the main job shown end to end on the example site.

Until the live lab lands this walks the offline commands an operator would use on the night: validate
the config, show capacity in each scenario, and show the plans the documented rules produce.
"""

from __future__ import annotations

import argparse

from controller import offline


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="walk through the example site (offline)")
    p.add_argument("--config", default="config")
    p.set_defaults(func=run)


def _section(title: str) -> None:
    print(f"\n=== {title} ===")


def run(args: argparse.Namespace) -> int:
    from controller.cli import main as ccfo
    steps: list[tuple[str, list[str]]] = [
        ("Validate the site config", ["check-config"]),
        ("Capacity: 10 agent calls up, normal operation", ["capacity", "--agent-calls", "10"]),
        ("Capacity: 10 agent calls up, primary down",
         ["capacity", "--agent-calls", "10", "--scenario", "primary-down"]),
        ("Rule 1: primary span alarm", ["plan", "ipc-a:span:1=alarm"]),
        ("Rule 2: primary CTI crash (supervised: an operator approves)", ["plan", "ipc-a:service:cti=down"]),
        ("Rule 3: standby fault", ["plan", "ipc-b:service:kcxp=down"]),
        ("Rule 4: database site down", ["plan", "db:shenzhen=down"]),
        ("Both hosts faulty: no safe target", ["plan", "ipc-a:service:ivr=down", "ipc-b:board=down"]),
        ("Blocking: 30 channels, 12 E IVR + 6 E agent", ["capacity", "blocking", "--channels", "30",
                                                         "--ivr-erlangs", "12", "--agent-erlangs", "6"]),
    ]
    worst = 0
    for title, argv in steps:
        _section(title)
        print("$ ccfo " + " ".join(argv))
        extra = ["--config", args.config] if argv[:2] != ["capacity", "blocking"] else []
        code = ccfo([*argv[:1], *extra, *argv[1:]])
        worst = max(worst, code if code != offline.EXIT_REFUSED else 0)
    return worst
