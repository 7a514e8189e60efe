"""`python -m lab.ami`: run one lab AMI server until SIGTERM/SIGINT, reporting its bound ports when ready.

The secret is read from a file (`--secret-file`) or `CCFO_AMI_SECRET`, never from the command line,
so it does not show in `ps`. Readiness is one JSON line on stdout and, with `--ready-file`, the same
JSON written atomically to that file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from pathlib import Path

from .server import DEFAULT_MODULES, LabAmiServer


def parse_spans(text: str) -> list[tuple[int, int]]:
    """`1:30,2:30` -> [(1, 30), (2, 30)]; an empty string means no spans."""
    spans = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        number, _, bearer = item.partition(":")
        spans.append((int(number), int(bearer or 30)))
    return spans


def parse_trunks(text: str) -> list[tuple[str, str, int]]:
    """`carrier-a:pjsip:30,old:sip:10` -> [("carrier-a", "pjsip", 30), ("old", "sip", 10)]; "" means none."""
    trunks = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, driver, channels = item.split(":")
        trunks.append((name, driver, int(channels)))
    return trunks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab.ami", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="AMI bind address")
    p.add_argument("--port", type=int, default=5038, help="AMI port (0: any free port)")
    p.add_argument("--control-host", default=None,
                   help="HTTP control bind address, loopback only (default: --host if loopback, else 127.0.0.1)")
    p.add_argument("--control-port", type=int, default=None, help="HTTP control port (0: any; omit: none)")
    p.add_argument("--spans", default="1:30,2:30", help="span:bearer-channels list, e.g. 1:30,2:30")
    p.add_argument("--trunks", default="", help="SIP trunks name:driver:channels, e.g. carrier-a:pjsip:30")
    p.add_argument("--write-classes", default=None,
                   help="manager.conf write classes of the user, e.g. reporting,originate (default: allow all)")
    p.add_argument("--fax", type=int, default=4, help="number of fax channels")
    p.add_argument("--username", default="ccfo")
    p.add_argument("--secret-file", type=Path, help="file holding the AMI secret (else $CCFO_AMI_SECRET)")
    p.add_argument("--reportalarms", default="all", choices=["channels", "spans", "all", "none"])
    p.add_argument("--no-chan-dahdi", action="store_true", help="behave as if chan_dahdi is not loaded")
    p.add_argument("--driver-stopped", action="store_true", help="start with the DAHDI driver stopped")
    p.add_argument("--modules", default=",".join(sorted(DEFAULT_MODULES)), help="loaded modules (ModuleCheck)")
    p.add_argument("--login-fail-delay", type=float, default=1.0, help="seconds before a failed Login answer")
    p.add_argument("--time-scale", type=float, default=1.0, help="factor on simulated dialplan waits")
    p.add_argument("--ready-file", type=Path, help="write the bound ports here (JSON) when ready")
    p.add_argument("--log-level", default="WARNING")
    return p


async def serve(args: argparse.Namespace, secret: str) -> None:
    if args.control_host is None:
        try:
            loopback = ipaddress.ip_address(args.host).is_loopback
        except ValueError:
            loopback = False
        args.control_host = args.host if loopback else "127.0.0.1"
    lab = LabAmiServer(
        args.host, args.port, spans=parse_spans(args.spans), fax_channels=args.fax, username=args.username,
        secret=secret, chan_dahdi_loaded=not args.no_chan_dahdi, driver_running=not args.driver_stopped,
        reportalarms=args.reportalarms, modules=[m for m in args.modules.split(",") if m],
        login_fail_delay_s=args.login_fail_delay, time_scale=args.time_scale,
        control_port=args.control_port, control_host=args.control_host, trunks=parse_trunks(args.trunks),
        write_classes=args.write_classes.split(",") if args.write_classes else None)
    await lab.start()
    ready = json.dumps({"host": args.host, "ami_port": lab.port, "control_host": args.control_host,
                        "control_port": lab.control_port, "pid": os.getpid()})
    if args.ready_file:
        tmp = args.ready_file.with_suffix(args.ready_file.suffix + ".tmp")
        tmp.write_text(ready + "\n")
        tmp.replace(args.ready_file)
    print(ready, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await lab.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = args.secret_file.read_text().strip() if args.secret_file else os.environ.get("CCFO_AMI_SECRET", "")
    if not secret:
        print("lab.ami: no secret: give --secret-file or set CCFO_AMI_SECRET", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, secret))
    except OSError as exc:
        print(f"lab.ami: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
