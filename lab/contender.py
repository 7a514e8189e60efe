"""One election contender as a process, for the HA tests and the lab: runs controller.cluster's Election
against the given etcd endpoints and prints one JSON line on stdout each time what it knows changes
(role, leader, term, acting deadline) and for each election warning, with the host's monotonic clock
so lines from several processes (and network namespaces) can be compared.
SIGTERM resigns (revokes the lease); SIGKILL is a crash.

    python -m lab.contender --endpoints http://10.1.0.1:2379,... --site lab --name c1 --ttl 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time

from ccfo.clients.etcd import EtcdClient
from controller.cluster.election import Election


class _JsonLines(logging.Handler):
    """The election's warnings (failed campaigns and renewals) as JSON lines too."""

    def emit(self, record: logging.LogRecord) -> None:
        print(json.dumps({"t": time.monotonic(), "event": "log", "level": record.levelname,
                          "msg": record.getMessage()}), flush=True)


def _line(e: Election, event: str) -> str:
    s = e.snapshot()
    return json.dumps({"t": time.monotonic(), "event": event, "name": s.member, "role": s.role.value,
                       "leader": s.leader, "term": s.term, "acting": s.acting, "acting_until": s.acting_until})


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", required=True, help="comma-separated etcd client URLs")
    p.add_argument("--site", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--ttl", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=1.0, help="etcd call timeout, seconds")
    p.add_argument("--tag", default="", help="free text naming the run (e.g. its folder), to find its processes")
    a = p.parse_args(argv)
    logging.getLogger("ccfo.cluster").addHandler(_JsonLines(logging.WARNING))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with EtcdClient(a.endpoints.split(","), timeout_s=a.timeout) as client:
        e = Election(client, a.site, a.name, lease_ttl_s=a.ttl)
        task = asyncio.create_task(e.run(), name=f"election-{a.name}")
        print(_line(e, "start"), flush=True)
        last = None
        while not stop.is_set():
            s = e.snapshot()
            key = (s.role, s.leader, s.term, s.acting, s.acting_until)
            if key != last:
                last = key
                print(_line(e, "state"), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)  # the reporting period, not a synchronisation
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(_line(e, "stopped"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
