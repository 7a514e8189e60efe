"""The lab supervisor: runs a LabSite in the background and serves the lab's fault-injection API.

`ccfo lab up` starts `python -m lab.supervisor --dir DIR` detached and waits for DIR/lab.json; `ccfo lab
inject|calls|down` talk to the control API it serves (loopback only; it can stop the whole lab, so it
requires the lab admin token). `ccfo lab down` asks it to stop, which brings every process down.
"""


import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from lab.labconfig import LabLayout
from lab.site import LabError, LabSite

log = logging.getLogger("lab.supervisor")


class InjectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Annotated[str, Field(max_length=63)]
    what: Annotated[str, Field(max_length=63)]
    args: Annotated[list[Annotated[str, Field(max_length=63)]], Field(max_length=4)] = []


class CallsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    ivr: Annotated[int, Field(ge=0, le=500)] = 0
    agent: Annotated[int, Field(ge=0, le=250)] = 0


def control_app(lab: LabSite, stop: asyncio.Event) -> FastAPI:
    app = FastAPI(title="ccfo lab control")
    bearer = HTTPBearer(auto_error=False)
    admin = lab.token("admin")

    def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        import hmac
        if creds is None or not hmac.compare_digest(creds.credentials, admin):
            raise HTTPException(401, "the lab control API needs the lab admin token")

    @app.get("/lab", dependencies=[Depends(check)])
    async def summary() -> dict[str, Any]:
        return lab.summary()

    @app.post("/inject", dependencies=[Depends(check)])
    async def inject(req: InjectRequest) -> dict[str, str]:
        try:
            return {"done": await lab.inject(req.target, req.what, *req.args)}
        except LabError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.post("/calls", dependencies=[Depends(check)])
    async def calls(req: CallsRequest) -> dict[str, Any]:
        try:
            return await lab.calls(req.host, req.ivr, req.agent)
        except LabError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.post("/down", dependencies=[Depends(check)])
    async def down() -> dict[str, str]:
        stop.set()
        return {"done": "stopping the lab"}

    return app


async def run(layout: LabLayout) -> int:
    lab = LabSite(layout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = layout.root / "lab.json"
    state.unlink(missing_ok=True)
    try:
        await lab.up()
        host, _, port = layout.lab_control.rpartition(":")
        server = uvicorn.Server(uvicorn.Config(control_app(lab, stop), host=host, port=int(port), log_level="warning",
                                               timeout_graceful_shutdown=2,
                                               lifespan="off"))
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():
            raise LabError(f"cannot serve the lab control API on {layout.lab_control}")
        info = {"pid": os.getpid(), "control": f"http://{layout.lab_control}", **lab.summary()}
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(state)
        await stop.wait()
        server.should_exit = True
        await serving
    except LabError as exc:
        log.error("lab failed: %s", exc)
        (layout.root / "lab.error").write_text(str(exc))
        return 1
    finally:
        await lab.down()
        state.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.supervisor")
    p.add_argument("--dir", default=".lab")
    p.add_argument("--net", default="127.0.1")
    p.add_argument("--controller-listen", default="127.0.0.1:8080")
    p.add_argument("--control-port", type=int, default=8090)
    p.add_argument("--telephony", choices=["dahdi", "sip"], default="dahdi")
    p.add_argument("--servers", action="store_true", help="also start the managed servers' agents")
    p.add_argument("--before-migration", action="store_true", help="the site before the data-center migration")
    p.add_argument("--controllers", type=int, choices=[1, 3], default=1,
                   help="3: a controller cluster (ctl-a, ctl-b, ctl-c) on a 3-member etcd")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    layout = LabLayout(Path(args.dir).resolve(), net=args.net, controller_listen=args.controller_listen,
                       lab_control_port=args.control_port, telephony=args.telephony, servers=args.servers,
                       before_migration=args.before_migration, controllers=args.controllers)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(layout))
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
