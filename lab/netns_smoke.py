"""A smoke run of the lab's netns mode (`python -m lab.netns_smoke --root DIR --net 10.X.Y`): it moves this
process into the lab's world namespace (lab/world.py: it must, before any thread starts, hence a process of
its own), brings the lab up with three controllers in automatic mode, and prints one JSON object of what it saw:

* `members`: per node process, whether it runs in its node's namespace under its own pid (not `ip`'s);
* `leaders_at_start`: the members whose `GET /leader` answers 200 (one expected);
* `leader_cut`: the leader partitioned: who leads after it (another member, a higher term) and how long it took;
* `etcd_cut`: an etcd member partitioned for lease_ttl_s + 2 s: the most members leading at once (one
  expected: the majority keeps a leader), the terms seen, the member healthy again after the heal;
* `primary_cut`: the primary host partitioned: the most hosts ever running CTI/IVR at once (sampled every
  0.05 s from the pid files under the run dirs, lab/campaign_check.py `critical_hosts`), whether the standby
  came to run both, the failover plans (with their routing step through the SIP front's UNIX socket) and
  the SIP front's destinations after them;
* `ami_control_while_cut`: the cut primary's lab AMI control answered from world (the first keys of its
  snapshot), as it must: it is the lab's console, reached through a socket opened in the host's namespace;
* `namespaces_left`: the lab's namespaces still listed after `down()` (none expected).

Any error is reported as `error` in the same JSON (exit status 1); `down()` always runs. With `--fail-up` the lab
is built from a copy of the site whose hosts are listed the other way round, so `up()` fails (the hosts are
not where `enter_world` put their nodes): the JSON then says what `up()` raised and which namespaces
`down()` left (none expected). Needs root.
tests/ha/test_lab_netns.py runs it and asserts on the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
import yaml

from lab.campaign_check import CRITICAL, critical_hosts, running
from lab.labconfig import LabLayout
from lab.netns import list_netns
from lab.site import REPO, LabError, LabSite
from lab.world import enter_world


async def _leading(site: LabSite, names: list[str]) -> dict[str, int | None]:
    """The members among `names` whose GET /leader answers 200, with their term."""
    out: dict[str, int | None] = {}
    async with httpx.AsyncClient(timeout=1.0) as c:
        for name in names:
            try:
                r = await c.get(site.controllers.url(name) + "/leader")
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                out[name] = r.json().get("term")
    return out


async def _follows(site: LabSite, name: str) -> int | None:
    """The member's GET /leader status once it answers and does not lead (503), else None."""
    async with httpx.AsyncClient(timeout=1.0) as c:
        try:
            r = await c.get(site.controllers.url(name) + "/leader")
        except httpx.HTTPError:
            return None
    return r.status_code if r.status_code != 200 else None


async def _until(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:g} s")
        await asyncio.sleep(0.05)  # a poll interval under a deadline


def _members(site: LabSite) -> dict[str, dict[str, Any]]:
    """Per node process: its namespace is its node's, and the pid is the program's (ip exec'd it)."""
    assert site.netns is not None
    out: dict[str, dict[str, Any]] = {}
    procs = {**{n: p.pid for n, p in site.procs.items()},
             **({m.name: m.pid for m in site.controllers.etcd.members} if site.controllers.etcd else {})}
    for name, pid in procs.items():
        node = name.rsplit("-", 1)[0] if name.endswith(("-agent", "-ami")) else name
        if pid is None or node not in site.netns.nodes:
            continue
        ns = site.netns.nodes[node].netns
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            same = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino
        except OSError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = {"pid": pid, "netns": ns, "in_node": same, "program": Path(argv0).name}
    return out


async def _status(site: LabSite, url: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(timeout=2.0) as c:
        try:
            r = await c.get(url + "/api/v1/status", headers={"Authorization": f"Bearer {site.token('viewer')}"})
            return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError):
            return None


async def _failovers(site: LabSite, url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        r = await c.get(url + "/api/v1/plans", headers={"Authorization": f"Bearer {site.token('viewer')}"})
    return [{"id": p["id"], "action": p.get("action"), "status": p["status"], "error": p.get("error"),
             "steps": [s.get("kind") or s.get("action") for s in p.get("steps", [])]}
            for p in r.json()["plans"]]


async def scenario(site: LabSite, out: dict[str, Any]) -> None:
    lay = site.layout
    t0 = time.monotonic()
    await site.up()
    out["up_s"] = round(time.monotonic() - t0, 1)
    out["members"] = _members(site)
    names = site.controllers.names
    start = await _until("one leader", 30, lambda: _leading(site, names))
    out["leaders_at_start"] = start
    lead = await site.controllers.wait_leader(30)
    url = lead.url

    async def normal() -> bool:
        s = await _status(site, url)
        out["last_status"] = {k: v for k, v in (s or {}).items() if k in ("faults", "hosts", "running_plan", "mode")}
        return s is not None and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())
    await _until("the site to be normal", 60, normal)
    out.pop("last_status", None)

    # the leader cut off: another member leads with a higher term
    others = [n for n in names if n != lead.name]
    t_cut = time.monotonic()
    await site.partition(lead.name)
    out["partitioned_after_cut"] = sorted(site.partitioned)

    async def new_leader() -> dict[str, int | None]:
        now = await _leading(site, others)
        return {n: t for n, t in now.items() if (t or 0) > (lead.term or 0)}
    after = await _until("a new leader", lay.lease_ttl_s + 10, new_leader)
    took = time.monotonic() - t_cut
    await site.heal(lead.name)
    healed = await _until("one leader after the heal", 30, lambda: _leading(site, names))
    t_heal = time.monotonic()
    follower = await _until("the healed member to answer as a follower", 30, lambda: _follows(site, lead.name))
    out["leader_cut"] = {"leader": lead.name, "term": lead.term, "new": after, "took_s": round(took, 2),
                         "lease_ttl_s": lay.lease_ttl_s, "leaders_after_heal": await _leading(site, names),
                         "first_after_heal": healed, "healed_follows_after_s": round(time.monotonic() - t_heal, 2),
                         "healed_answer": follower}

    # an etcd member cut off: the majority keeps one leader (never two at once), the member rejoins healthy
    member = lay.etcd_names[0]
    out["inject_said"] = await site.inject("net", member, "cut")  # the campaign's vocabulary: partition()
    t_cut, most_leaders, terms = time.monotonic(), 0, set()
    while time.monotonic() < t_cut + lay.lease_ttl_s + 2:  # an observation window, sampled
        now = await _leading(site, names)
        most_leaders = max(most_leaders, len(now))
        terms.update(t for t in now.values() if t is not None)
        await asyncio.sleep(0.1)
    await site.inject("net", member, "heal")
    assert site.controllers.etcd is not None
    t_heal = time.monotonic()
    await asyncio.to_thread(site.controllers.etcd.wait_healthy, 30.0, [site.controllers.etcd.member(member)])
    out["etcd_cut"] = {"member": member, "most_leaders_at_once": most_leaders, "terms": sorted(terms),
                       "leaders_after_heal": await _until("a leader after the etcd heal", 30,
                                                          lambda: _leading(site, names)),
                       "healthy_after_heal_s": round(time.monotonic() - t_heal, 2)}

    # the primary cut off: CTI/IVR never on two hosts, the standby takes over (automatic mode)
    lead = await site.controllers.wait_leader(30)
    url = lead.url
    await _until("the site to be normal again", 60, normal)
    out.pop("last_status", None)
    # how long the healed member's own view (reads are served by any member) takes to be normal too
    old_url, t_view = site.controllers.url(out["leader_cut"]["leader"]), time.monotonic()

    async def healed_normal() -> bool:
        s = await _status(site, old_url)
        return s is not None and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())
    try:
        await _until("the healed member's view to be normal", 30, healed_normal)
        out["leader_cut"]["healed_view_normal_after_s"] = round(time.monotonic() - t_view, 2)
    except TimeoutError:
        s = await _status(site, old_url)
        out["leader_cut"]["healed_view_normal_after_s"] = None
        out["leader_cut"]["healed_view"] = {k: v for k, v in (s or {}).items() if k in ("faults", "hosts")}
    run_dirs = {h: lay.run_dir(h) for h in site.site["hosts"]}
    primary = next(h for h, s in site.site["hosts"].items() if s["role"] == "primary")
    standby = next(h for h in run_dirs if h != primary)
    most, samples = 0, 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal most, samples
        while not done.is_set():
            most = max(most, len(critical_hosts(run_dirs)))
            samples += 1
            await asyncio.sleep(0.05)
    sampler = asyncio.create_task(sample())
    before = critical_hosts(run_dirs)
    t_cut = time.monotonic()
    await site.partition(primary)
    try:  # the lab AMI's control (the lab's console, not the site's network) still answers from world
        snap = await site.ami_control(primary, "/snapshot", method="GET")
        console: Any = sorted(snap)[:3] if isinstance(snap, dict) else type(snap).__name__
    except LabError as exc:
        console = f"error: {exc}"

    async def took_over() -> bool:
        return all(running(run_dirs[standby], s) for s in CRITICAL) and critical_hosts(run_dirs) == [standby]
    try:
        await _until("the standby to run CTI and IVR alone", 120, took_over)
        took = time.monotonic() - t_cut
        await _until("no plan running", 60, lambda: _idle(site, lead.url))
    finally:
        done.set()
        await sampler
    front = [line.split()[1] for line in (lay.front_dir / "dispatcher.list").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    out["primary_cut"] = {"primary": primary, "standby": standby, "before": before, "after": critical_hosts(run_dirs),
                          "took_s": round(took, 1), "most_hosts_at_once": most, "samples": samples,
                          "ami_control_while_cut": console, "powered": dict(site.powered),
                          "front_destinations": front, "plans": await _failovers(site, lead.url)}
    await site.heal(primary)
    out["partitioned_at_end"] = sorted(site.partitioned)


async def _idle(site: LabSite, url: str) -> bool:
    s = await _status(site, url)
    return s is not None and s.get("running_plan") is None


async def run(layout: LabLayout, source: Path | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"tag": layout.netns_tag}
    site = LabSite(layout, source) if source is not None else LabSite(layout)
    try:
        await scenario(site, out)
    except Exception as exc:  # reported in the JSON, with where it happened
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["trace"] = traceback.format_exc()[-2000:]
    finally:
        t0 = time.monotonic()
        await site.down()
        out["down_s"] = round(time.monotonic() - t0, 1)
    return out


def _swapped_site(dest: Path) -> Path:
    """A copy of the example site with its hosts listed the other way round (ipc-b first, so at NET.1)."""
    shutil.copytree(REPO / "config", dest, dirs_exist_ok=True)
    site = yaml.safe_load((dest / "site.yaml").read_text())
    site["hosts"] = dict(reversed(list(site["hosts"].items())))
    (dest / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, type=Path)
    p.add_argument("--net", required=True, help="the lab's /24 prefix outside 127/8, such as 10.79.0")
    p.add_argument("--lease-ttl", type=float, default=5.0)
    p.add_argument("--fail-up", action="store_true", help="build from a site whose hosts are swapped: up() fails")
    args = p.parse_args(argv)
    layout = LabLayout(args.root.resolve() / "lab", net=args.net, controllers=3, netns=True, debounce_s=1.0,
                       mode="automatic", lease_ttl_s=args.lease_ttl, controller_listen=f"{args.net}.100:8080",
                       lab_control_port=18090)
    t0 = time.monotonic()
    enter_world(layout)  # the main thread, no other thread yet
    enter_s = round(time.monotonic() - t0, 2)
    source = _swapped_site(args.root.resolve() / "swapped") if args.fail_up else None
    out = asyncio.run(run(layout, source))
    out["enter_world_s"] = enter_s
    out["namespaces_left"] = [ns for ns in list_netns() if ns.startswith(layout.netns_tag + "-")]
    print(json.dumps(out))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
