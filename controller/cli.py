"""`ccfo`: the command line. Thin dispatch to offline commands and (later) the controller API client.

Exit codes, for scripts: 0 ok; 1 refused or failed (the answer is "no"); 2 usage or config error; 141
(128 + SIGPIPE) when the reader of the output has gone (`ccfo journal | head`), without a traceback.
A user's mistake gets one clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from ccfo.config.yamlpos import ConfigError
from ccfo.domain.capacity import Scenario
from ccfo.domain.faults import FAULT_FORMS
from ccfo.domain.state import Mode
from ccfo.platform.auth import TokenFileError
from controller import cli_online, client, demo, offline
from controller import init as init_cmd
from controller.checklists import cli as checklist_cli
from drills import cli as drills_cli
from lab import cli as lab_cli
from lab.cli import LabCliError

Handler = Callable[[argparse.Namespace], int]


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=os.environ.get("CCFO_CONFIG", "config"),
                   help="config directory (default: ./config, or $CCFO_CONFIG)")


def _add_offline(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check-config", help="validate the config directory (exit 0 valid, 2 invalid)")
    _config_arg(p)
    p.set_defaults(func=checklist_cli.cmd_check_config)  # the site config, then its checklists

    p = sub.add_parser("capacity", help="X+2Y capacity per host and for the site, by scenario")
    _config_arg(p)
    p.add_argument("--agent-calls", type=int, default=0, help="agent calls up (each holds 2 channels)")
    p.add_argument("--scenario", choices=[s.value for s in Scenario], default=Scenario.NORMAL.value)
    p.add_argument("--span-down", action="append", default=[], metavar="HOST:SPAN", help="a span out of service")
    p.add_argument("--trunk-down", action="append", default=[], metavar="HOST:TRUNK",
                   help="a SIP trunk out of service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=offline.cmd_capacity)
    csub = p.add_subparsers(dest="capacity_cmd")
    b = csub.add_parser("blocking", help="blocking probabilities (Kaufman-Roberts, reservation, transfer chain)")
    b.add_argument("--model", choices=["classes", "transfer"], default="classes")
    b.add_argument("--channels", type=int, required=True)
    b.add_argument("--ivr-erlangs", type=float)
    b.add_argument("--agent-erlangs", type=float)
    b.add_argument("--reserve", type=int, default=0)
    b.add_argument("--arrivals-per-min", type=float)
    b.add_argument("--ivr-minutes", type=float)
    b.add_argument("--transfer-ratio", type=float)
    b.add_argument("--agent-minutes", type=float)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=offline.cmd_capacity)

    p = sub.add_parser("plan", help="show the decision and plan for faults or an operator action (dry run)",
                       epilog="FAULT forms: " + "  ".join(FAULT_FORMS))
    _config_arg(p)
    p.add_argument("faults", nargs="*", metavar="FAULT")
    p.add_argument("--mode", choices=[m.value for m in Mode])
    p.add_argument("--duty", action="append", metavar="HOST=DUTY",
                   help="start from this duty (primary|standby|takeover|out)")
    p.add_argument("--isolated", action="append", metavar="HOST", help="start with this host's board isolated")
    p.add_argument("--failover-to", metavar="HOST")
    p.add_argument("--switchover-to", metavar="HOST")
    p.add_argument("--failback", action="store_true")
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--reason")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=offline.cmd_plan)


def _add_agent(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`ccfo agent`: the host agent; its code (agents.runtime) is imported only when the command runs."""
    p = sub.add_parser("agent", help="run the host agent (services, config files, AMI, control API, reports)")
    _config_arg(p)
    p.add_argument("--host", required=True, help="this machine's name in site.yaml (a host, or a server: the "
                   "smaller profile without AMI or board)")
    p.add_argument("--lab", action="store_true",
                   help="lab mode: without a configured token, use (or generate) --token-file")
    p.add_argument("--listen", metavar="HOST:PORT", help="API bind address (default: agent.listen, else agent.url)")
    p.add_argument("--state-dir", help="action results and lab files (default: CONFIG/var/agent-HOST)")
    p.add_argument("--token-file", help="lab mode: the token file (default: STATE_DIR/agent-token)")
    p.add_argument("--ready-file", help="write {pid, api, report_url} here (JSON) once serving")
    p.add_argument("--lab-ami-control", metavar="URL", help="lab: the stand-in board driver also drives this "
                                                            "lab AMI control API")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--log-level", default="INFO")

    def run(args: argparse.Namespace) -> int:
        # The agent is its own program sharing the `ccfo` entry point (declared in .importlinter); imported
        # only when it runs, so the controller's commands do not load the agent (AMI, SNMP responder).
        from agents.runtime import cmd_agent
        return int(cmd_agent(args))

    p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccfo", description="call-center telephony failover controller")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_offline(sub)
    cli_online.add_parsers(sub)
    checklist_cli.add_parsers(sub)
    lab_cli.add_parsers(sub)
    drills_cli.add_parsers(sub)
    _add_agent(sub)
    demo.add_parser(sub, main)  # the demo runs `ccfo ...` commands: it gets this entry point, not an import
    init_cmd.add_parser(sub)
    from controller import config_reference
    config_reference.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(build_parser(), argv)
    except BrokenPipeError:  # `ccfo status | head -1`: the reader has gone, so stop quietly as Unix tools do
        _drop_stdout()
        return EXIT_PIPE


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    func: Handler = args.func
    try:
        return func(args)
    except offline.UsageError as exc:
        print(f"ccfo {args.command}: {exc}", file=sys.stderr)
        return offline.EXIT_USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return offline.EXIT_USAGE
    except client.ApiError as exc:
        print(f"ccfo {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except LabCliError as exc:
        print(f"ccfo lab: {exc}", file=sys.stderr)
        return 1
    except TokenFileError as exc:
        print(f"ccfo {args.command}: {exc}", file=sys.stderr)
        return offline.EXIT_USAGE
    except KeyboardInterrupt:
        return 130


EXIT_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool that SIGPIPE ended


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
