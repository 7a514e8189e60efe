"""The dashboard on a controller cluster in a real browser (Debian's Chromium via Playwright): three real `ccfo
controller --member` processes on a real 3-member etcd (as tests/ha/test_controller_members.py starts them; no
agents run, the members see unreachable hosts). The page opened on the leader shows the members with their
roles, the leader and its term; after kill -9 of the member it talks to, it moves to another member of the last
members list (cross-origin: the members allow each other's origins), says which one it talks to now, and goes
on refreshing: the new leader, a higher term, the dead member unreachable (issue #14 item 6).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab.etcd import EtcdCluster
from tests.browser.test_dashboard import VIEWPORT, _shot, browser, expect
from tests.ha.etcdkit import cluster
from tests.ha.memberkit import member_config
from tests.support import async_wait_until, wait_until

__all__ = ["browser"]  # the fixture, imported for its name
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]
REPO = Path(__file__).resolve().parents[2]
TTL = 3
MEMBERS = ("ctl-a", "ctl-b", "ctl-c")


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    c = cluster(tmp_path, 3)
    c.start()
    try:
        yield c
    finally:
        c.stop(grace_s=0)


def _config(tmp: Path, etcd: EtcdCluster) -> tuple[Path, dict[str, str]]:
    return member_config(tmp, etcd, TTL, MEMBERS)


@pytest.fixture
def members(tmp_path: Path, etcd: EtcdCluster) -> Iterator[tuple[Path, dict[str, str], dict]]:
    config, urls = _config(tmp_path, etcd)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for m in urls:
            with (tmp_path / f"{m}.log").open("wb") as log:  # the child keeps its own descriptor
                procs[m] = subprocess.Popen([sys.executable, "-m", "controller", "controller", "--config", str(config),
                                             "--member", m, "--ready-file", str(tmp_path / f"{m}.ready")],
                                            cwd=REPO, stdout=log, stderr=log)
        for m in urls:
            ready = wait_until(lambda m=m: _ready(tmp_path / f"{m}.ready"), timeout=40,
                               describe=lambda m=m: (tmp_path / f"{m}.log").read_text()[-2000:])
            assert ready["api"] == urls[m]
        yield config, urls, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _ready(path: Path) -> dict | None:
    """The member's ready file once it is written whole (it can be seen created and still empty)."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


async def _leader(urls: dict[str, str]) -> tuple[str, int] | None:
    """(name, term) of the one member answering 200 on /leader, from the members' own answers."""
    found = []
    async with httpx.AsyncClient(timeout=2) as c:
        for name, url in urls.items():
            with contextlib.suppress(httpx.HTTPError):
                r = await c.get(url + "/leader")
                if r.status_code == 200:
                    found.append((name, r.json()["term"]))
    return found[0] if len(found) == 1 else None


async def _agreed(urls: dict[str, str], token: str) -> tuple[str, int] | None:
    """(leader, term) once one member answers 200 on /leader and every member's cluster view names it with that
    term and sees every member (the election settled: on a loaded machine the first lease can change hands)."""
    found = await _leader(urls)
    if found is None:
        return None
    async with httpx.AsyncClient(timeout=2, headers={"Authorization": f"Bearer {token}"}) as c:
        for url in urls.values():
            try:
                view = (await c.get(url + "/api/v1/cluster")).json()
            except httpx.HTTPError:
                return None
            if (view["leader"], view["term"]) != found or any(m["role"] == "unreachable" for m in view["members"]):
                return None
    return found


async def test_the_page_shows_the_cluster_and_moves_to_another_member_when_its_own_dies(members, browser):
    config, urls, procs = members
    token = (config / "secrets" / "viewer.token").read_text().strip()
    leader, term = await async_wait_until(lambda: _agreed(urls, token), timeout=30, interval=0.2)
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and "Failed to load resource" not in msg.text else None)  # the dead member's refused connections
    try:
        await page.goto(urls[leader] + "/")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#conn")).to_contain_text("live")
        await expect(page.get_by_test_id("cluster-leader")).to_have_text(leader)
        await expect(page.get_by_test_id("cluster-term")).to_have_text(str(term))
        await expect(page.get_by_test_id("cluster-me")).to_have_text(leader)
        await expect(page.get_by_test_id("member")).to_have_text(f"via {leader}")
        for name, url in urls.items():
            member = page.get_by_test_id(f"cluster-member-{name}")
            await expect(member).to_have_attribute("data-role", "leader" if name == leader else "follower")
            await expect(member).to_contain_text(url)
        await _shot(page, "dashboard-cluster.png")
        assert await _leader(urls) == (leader, term), "the leadership changed under the test: kill the leader"

        os.kill(procs[leader].pid, signal.SIGKILL)
        survivors = {n: u for n, u in urls.items() if n != leader}
        new_leader, new_term = await async_wait_until(lambda: _leader(survivors), timeout=TTL + 10, interval=0.2)
        assert new_term > term
        me = page.get_by_test_id("cluster-me")
        await expect(me).not_to_have_text(leader, timeout=20_000)
        talking_to = await me.inner_text()
        assert talking_to in survivors
        await expect(page.get_by_test_id("member")).to_have_text(f"via {talking_to}")
        await expect(page.get_by_test_id("cluster-moved")).to_have_count(1)
        await expect(page.get_by_test_id("cluster-moved")).to_contain_text(
            f"{urls[leader]} stopped answering; now talking to {talking_to}")
        await expect(page.get_by_test_id("cluster-leader")).to_have_text(new_leader, timeout=20_000)
        await expect(page.get_by_test_id("cluster-term")).to_have_text(str(new_term))
        await expect(page.get_by_test_id(f"cluster-member-{leader}")).to_have_attribute("data-role", "unreachable",
                                                                                          timeout=20_000)
        await expect(page.get_by_test_id(f"cluster-member-{new_leader}")).to_have_attribute("data-role", "leader")
        # it goes on: the stream is live again on the new member and the page keeps re-reading
        await expect(page.locator("#conn")).to_contain_text("live", timeout=20_000)
        first = await page.locator("#updated").inner_text()
        await expect(page.locator("#updated")).not_to_have_text(first, timeout=15_000)
        await expect(page.get_by_test_id("site-state")).not_to_have_text("…")
        await expect(page.get_by_test_id("cluster")).not_to_contain_text("null")
        await _shot(page, "dashboard-cluster-moved.png")
        assert not errors, f"the page reported errors: {errors}"
    except BaseException:
        with contextlib.suppress(Exception):
            await _shot(page, "failed-cluster.png")
        raise
    finally:
        await context.close()
