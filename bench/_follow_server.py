"""Child process of bench.controller_failover: the real controller API + engine over a synthetic site of
N hosts (or, with --baseline, a do-nothing endpoint), exposing /bench/stats (CPU seconds used)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic(hosts: int) -> Any:
    from ccfo.config.loader import load_config
    from ccfo.domain.site import HostId, Role
    cfg = load_config(REPO / "config")
    a, b = cfg.site.hosts
    many = [dataclasses.replace(a if i == 0 else b, id=HostId(f"h{i:03d}"), role=Role.PRIMARY if i == 0 else
                                Role.STANDBY) for i in range(hosts)]
    return dataclasses.replace(cfg, site=dataclasses.replace(cfg.site, hosts=tuple(many)))


def controller_app(hosts: int, tmp: Path, token: str) -> tuple[FastAPI, Any]:
    from ccfo.clients.pdu import NoFencing
    from ccfo.platform.auth import add_token, digest
    from controller.engine import Engine
    from controller.events import EventBus
    from controller.executor import Executor
    from controller.journal import Journal
    from controller.service import LogNotifier, build_app
    from controller.store import Store
    cfg = synthetic(hosts)
    tokens_file = tmp / "tokens.yaml"
    add_token(tokens_file, "x", "viewer")
    import yaml
    data = yaml.safe_load(tokens_file.read_text())
    data["tokens"].append({"name": "agents", "role": "agent", "sha256": digest(token).hex()})
    tokens_file.write_text(yaml.safe_dump(data))
    from ccfo.platform.auth import TokenStore
    journal, store = Journal(tmp / "j.sqlite"), Store(tmp / "s.sqlite")
    events = EventBus()
    executor = Executor(None, NoFencing(), LogNotifier(events), journal, store)  # type: ignore[arg-type]
    engine = Engine(cfg, store, journal, executor, events)
    app = build_app(engine, TokenStore.load(tokens_file))
    return app, engine


def baseline_app(token: str) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/agents/{host}/report", status_code=204)
    async def report(host: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth, f"Bearer {token}"):
            return Response(status_code=401)
        await request.json()
        return Response(status_code=204)
    return app


async def run(args: argparse.Namespace) -> None:
    token = "bench-agent-token"
    tmp = Path(args.dir)
    engine = None
    if args.baseline:
        app = baseline_app(token)
    else:
        app, engine = controller_app(args.hosts, tmp, token)
        await engine.start()
    cpu0 = time.process_time()

    @app.get("/bench/stats")
    async def stats() -> dict[str, Any]:
        return {"cpu_s": time.process_time() - cpu0, "cycles": engine.cycles if engine else 0}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    cpu0 = time.process_time()
    Path(args.ready).write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "token": token}))
    await task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--baseline", action="store_true")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
