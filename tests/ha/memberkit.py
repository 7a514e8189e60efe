"""Test helpers: real `ccfo controller --member` processes of one site on a real etcd (the lab's config
with a `cluster:` section), each with its own log and ready file, and the unauthenticated `/leader` probe."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from lab.etcd import EtcdCluster
from lab.labconfig import build
from tests.integration.labkit import layout

REPO = Path(__file__).resolve().parents[2]


def member_config(tmp: Path, etcd: EtcdCluster, ttl: float, names: tuple[str, ...] = ("ctl-a", "ctl-b")
                  ) -> tuple[Path, dict[str, str]]:
    """The lab's config with a cluster of `names` (ports 8080, 8081, ... on the test's own address)."""
    lay = layout(tmp)
    build(REPO / "config", lay)
    site_file = lay.config / "site.yaml"
    site = yaml.safe_load(site_file.read_text())
    site["controller"].pop("snmp_trap_listen", None)  # one trap port per machine; the members share this one
    host = lay.controller_listen.rpartition(":")[0]
    urls = {n: f"http://{host}:{8080 + i}" for i, n in enumerate(names)}
    site["cluster"] = {"members": [{"name": n, "url": u} for n, u in urls.items()],
                       "etcd_endpoints": etcd.endpoints, "lease_ttl_s": ttl, "etcd_timeout_s": 1}
    site_file.write_text(yaml.safe_dump(site, sort_keys=False))
    return lay.config, urls


def start_member(config: Path, member: str, tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    ready = tmp / f"{member}.ready"
    with (tmp / f"{member}.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "controller", "controller", "--config", str(config),
                                 "--member", member, "--ready-file", str(ready)], cwd=REPO, stdout=log, stderr=log)
    return proc, ready


def stop_members(procs: dict[str, tuple[subprocess.Popen[bytes], Any]]) -> None:
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in procs.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def leader_probe(url: str) -> tuple[int, dict[str, Any]]:
    """`GET /leader` of one member: (status, body), or (0, {}) when it does not answer."""
    try:
        r = httpx.get(url + "/leader", timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return r.status_code, r.json()


def token(config: Path, role: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + (config / "secrets" / f"{role}.token").read_text().strip()}
