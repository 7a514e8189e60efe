"""The lab AMI server's HTTP control endpoint and its `python -m lab.ami` entry point."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from lab.ami import ControlServer, LabAmiServer

from .amiclient import RawAmi
from .test_ami_session import barrier

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.asyncio
async def test_http_control_drives_the_lab(make_lab) -> None:
    lab = await make_lab(control_port=0)
    assert lab.control_port
    ami = await RawAmi.connect(lab.port)
    await ami.login(events="system")
    await ami.read()  # FullyBooted
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{lab.control_port}", timeout=5) as http:
        snap = (await http.get("/snapshot")).json()
        assert [s["alarm"] for s in snap["spans"]] == ["ok", "ok"] and snap["driver_running"] is True
        assert (await http.post("/spans/1/alarm", json={"alarm": "red"})).json() == {"ok": True}
        assert [m.name for m in await barrier(ami)][:2] == ["Alarm", "SpanAlarm"]
        assert (await http.post("/spans/2/dchannel", json={"up": False})).status_code == 200
        spans = (await http.get("/snapshot")).json()["spans"]
        assert [(s["alarm"], s["dchannel_up"], s["healthy"]) for s in spans] == [("red", True, False),
                                                                               ("ok", False, False)]
        refused = await http.post("/calls/ivr", json={})
        assert refused.status_code == 409 and "no free bearer channel" in refused.json()["error"]
        await http.post("/spans/1/alarm", json={"alarm": "clear"})
        await http.post("/spans/2/dchannel", json={"up": True})
        call_id = (await http.post("/calls/ivr", json={"span": 2})).json()["call_id"]
        assert (await http.post(f"/calls/{call_id}/transfer")).status_code == 200
        fax_id = (await http.post("/calls/fax")).json()["call_id"]
        assert (await http.post("/calls/set", json={"ivr": 2, "agent": 2})).status_code == 200
        counts = (await http.get("/snapshot")).json()["counts"]
        assert counts == {"ivr": 2, "agent": 2, "fax": 1, "probe": 0}
        assert (await http.delete(f"/calls/{fax_id}")).status_code == 200
        assert (await http.post("/calls/nope-1/end")).status_code == 404
        assert (await http.post("/spans/1/alarm", json={"alarm": "purple"})).status_code == 400
        assert (await http.post("/spans/9/alarm", json={"alarm": "red"})).status_code == 400
        assert (await http.get("/spans/1/alarm")).status_code == 405
        assert (await http.get("/nothing")).status_code == 404
        assert (await http.post("/driver/stop")).status_code == 200
        snap = (await http.get("/snapshot")).json()
        assert snap["driver_running"] is False and snap["counts"]["agent"] == 0
        await http.post("/driver/start")
        assert (await http.post("/shutdown", json={"restart": False})).status_code == 200
        assert (await http.get("/snapshot")).json()["ami"]["accepting"] is False
        assert await ami.expect_eof()  # the Shutdown event, then EOF
        assert (await http.post("/start")).status_code == 200
    again = await RawAmi.connect(lab.port)
    await again.login()
    await again.close()


def test_control_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ControlServer(LabAmiServer(), host="0.0.0.0")


@pytest.mark.asyncio
async def test_module_entry_point_reports_ports_and_serves(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.ami", "--host", "127.0.0.1", "--port", "0", "--control-port", "0",
        "--spans", "1:30", "--fax", "2", "--username", "ccfo", "--secret-file", str(secret),
        "--ready-file", str(ready), "--login-fail-delay", "0.05", cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
        info = json.loads(line)
        assert json.loads(ready.read_text()) == info and info["ami_port"] > 0 and info["control_port"] > 0
        client = await RawAmi.connect(info["ami_port"])
        await client.login(secret="s3cret")
        spans = await client.action({"Action": "PRIShowSpans"})
        assert spans[-1].get("ListItems") == "1"
        await client.close()
        async with httpx.AsyncClient(timeout=5) as http:
            snap = (await http.get(f"http://127.0.0.1:{info['control_port']}/snapshot")).json()
        assert snap["fax"] == {"channels": 2, "busy": 0} and "s3cret" not in json.dumps(snap)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.asyncio
async def test_module_entry_point_refuses_to_run_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CCFO_AMI_SECRET"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.ami", "--port", "0", cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"no secret" in err
