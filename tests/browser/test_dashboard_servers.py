"""The dashboard on the lab with its managed servers (`LabLayout(servers=True)`) in a real browser (Debian's
Chromium via Playwright): one panel per data center lists its servers with their heartbeat, services and
scheduled jobs as the server agents report them, and a change made on a server through its own agent (a job
disabled, a service stopped, the agent frozen) shows up in the panel; the section-III switches panel dry-runs a
switch, runs it and its inverse (issue #17 items 1 and 4).

One lab serves the module (nine server agents beside the IPC lab take a while to come up); the tests run in
file order and each leaves the servers as it found them.
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.browser.test_dashboard import _shot, browser, dashboard, expect
from tests.integration.labkit import Api, layout, running
from tests.support import async_wait_until

__all__ = ["browser"]  # the fixture, imported for its name
# Slow (`make test-slow`, run by CI), like the other lab-with-servers tests: the lab alone takes a minute here.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]
LIVE = 30_000  # ms: a change reaches the page with the server's next report (heartbeat 1 s; a loaded CI box is slower)
BY_DC = {"shanghai": ["app-sh", "cs-sh", "sms-sh", "ta-sh"],
         "shenzhen": ["app-sz", "cs-sz", "dbconn-sz", "sms-sz", "ta-sz"]}  # sorted; the page keeps site.yaml's order


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LabSite, Api]]:
    lab = LabSite(layout(tmp_path_factory.mktemp("browser-servers"), servers=True))
    try:
        await lab.up(timeout=90)
        api = Api(lab)
        try:
            await async_wait_until(lambda: _all_reporting(api), timeout=40)
            yield lab, api
        finally:
            await api.aclose()
    finally:
        await lab.down()


async def _all_reporting(api: Api) -> dict[str, Any] | None:
    s = await api.status()
    ok = s["state"] == "normal" and s["servers"] and all(v["reachable"] for v in s["servers"].values())
    return s if ok else None


async def _agent_action(lab: LabSite, server: str, **body: str) -> dict[str, Any]:
    """An action sent straight to the server's agent with its own token (as the controller would send it)."""
    spec = lab.site["servers"][server]["agent"]
    token = (lab.layout.config / spec["token_file"]).read_text().strip()
    async with httpx.AsyncClient(timeout=20) as c:
        r = await c.post(spec["url"] + "/v1/actions", headers={"Authorization": f"Bearer {token}"},
                         json={"action_id": f"browser-{uuid.uuid4()}", "reason": "dashboard test", **body})
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_panel_per_datacenter_lists_its_servers_with_heartbeat_services_and_jobs(servers_site, browser):
    lab, api = servers_site
    status = await api.status()
    async with dashboard(browser, lab, "viewer") as page:
        for dc, names in BY_DC.items():
            panel = page.get_by_test_id(f"dc-{dc}")
            await expect(panel.get_by_role("heading", name=dc, exact=True)).to_be_visible()
            in_site_order = [n for n in lab.site["servers"] if n in names]
            assert sorted(in_site_order) == names
            await expect(panel.locator("article.server h4")).to_have_text(in_site_order)  # site.yaml order
            await expect(page.get_by_test_id(f"dc-{dc}-summary")).to_have_text(f"{len(names)} servers · all reporting")
        for name, v in status["servers"].items():
            await expect(page.get_by_test_id(f"server-{name}-health")).to_have_text("reporting")
            tag = "ACTIVE" if v["role"] == "active" else "BACKUP — kept ready"
            await expect(page.get_by_test_id(f"server-{name}").locator(".tag")).to_have_text(tag)
            for svc, state in v["services"].items():
                await expect(page.get_by_test_id(f"srvsvc-{name}-{svc}").locator(".svc-state")).to_have_text(state)
            for job in v["jobs"]:
                await expect(page.get_by_test_id(f"job-{name}-{job['name']}").locator(".job-state")).to_have_text(
                    job["state"])
        # what the lab set up, read from the page: active Shenzhen, backup Shanghai
        await expect(page.get_by_test_id("srvsvc-app-sz-appserver")).to_contain_text("active")
        await expect(page.get_by_test_id("srvsvc-app-sh-appserver")).to_contain_text("inactive")
        await expect(page.get_by_test_id("job-ta-sz-ta-import")).to_contain_text("enabled")
        await expect(page.get_by_test_id("job-ta-sz-ta-import-next")).to_contain_text(re.compile(r"^next \d{4}-"))
        await expect(page.get_by_test_id("job-ta-sh-ta-import")).to_contain_text("disabled")
        await expect(page.get_by_test_id("job-ta-sh-ta-import-next")).to_have_text("no next run")
        await expect(page.locator("#cluster-panel")).to_be_hidden()  # a single controller: no cluster view
        await expect(page.get_by_test_id("member")).to_be_hidden()
        await _shot(page, "dashboard-servers.png")


async def test_a_change_on_a_server_shows_in_its_panel(servers_site, browser):
    """A job disabled and a service stopped through the server's own agent, then its agent frozen (SIGSTOP):
    the panel follows each (the process table and the cron file confirm the change is real), then all back."""
    lab, api = servers_site
    async with dashboard(browser, lab, "viewer") as page:
        job = page.get_by_test_id("job-ta-sz-ta-import")
        svc = page.get_by_test_id("srvsvc-dbconn-sz-dbconn")
        await expect(job.locator(".job-state")).to_have_text("enabled", timeout=LIVE)
        await expect(svc.locator(".svc-state")).to_have_text("active", timeout=LIVE)
        try:
            await _agent_action(lab, "ta-sz", action="job_disable", job="ta-import")
            cron = (lab.layout.host_dir("ta-sz") / "cron.d" / "ta-import").read_text()
            assert "#ccfo-disabled# " in cron, cron
            await expect(job.locator(".job-state")).to_have_text("disabled", timeout=LIVE)
            await expect(page.get_by_test_id("job-ta-sz-ta-import-next")).to_have_text("no next run", timeout=LIVE)
            await _agent_action(lab, "dbconn-sz", action="stop", service="dbconn")
            assert not running(lab, "dbconn-sz", "dbconn")
            await expect(svc.locator(".svc-state")).to_have_text("inactive", timeout=LIVE)
            await expect(svc).to_have_class(re.compile(r"\bsvc-inactive\b"), timeout=LIVE)
        finally:
            await _agent_action(lab, "ta-sz", action="job_enable", job="ta-import")
            await _agent_action(lab, "dbconn-sz", action="start", service="dbconn")
        await expect(job.locator(".job-state")).to_have_text("enabled", timeout=LIVE)
        await expect(page.get_by_test_id("job-ta-sz-ta-import-next")).to_contain_text(re.compile(r"^next \d{4}-"),
                                                                                     timeout=LIVE)
        await expect(svc.locator(".svc-state")).to_have_text("active", timeout=LIVE)

        agent = lab.procs["ta-sh-agent"]
        agent.signal(signal.SIGSTOP)
        try:
            health = page.get_by_test_id("server-ta-sh-health")
            await expect(health).to_contain_text("UNREACHABLE (last report", timeout=LIVE)
            await expect(page.get_by_test_id("server-ta-sh")).to_have_class(re.compile(r"\bserver-down\b"))
            await expect(page.get_by_test_id("dc-shanghai-summary")).to_have_text("4 servers · 1 unreachable")
        finally:
            agent.signal(signal.SIGCONT)
        await expect(page.get_by_test_id("server-ta-sh-health")).to_have_text("reporting", timeout=LIVE)
        await expect(page.get_by_test_id("dc-shanghai-summary")).to_have_text("4 servers · all reporting", timeout=LIVE)
    await async_wait_until(lambda: _all_reporting(api), timeout=20)


# --- section III: the named switches ------------------------------------------------------------------------

SWITCH = "sms-email-from-shanghai"


def _cron(lab: LabSite, server: str, job: str) -> str:
    return (lab.layout.host_dir(server) / "cron.d" / job).read_text()


async def _run_from_dialog(page: Any, card: Any, button: str, steps: list[str], reason: str) -> None:
    await card.get_by_test_id(f"switch-{SWITCH}-{button}").click()
    dialog = page.locator("dialog#dialog")
    await expect(dialog.get_by_test_id("dlg-steps").locator("li")).to_have_text(steps)  # the controller's dry run
    submit = dialog.locator("#dlg-submit")
    await dialog.get_by_label("Reason").fill(reason)
    await expect(submit).to_be_disabled()  # not before the operator confirms
    await dialog.get_by_label(re.compile(r"^I confirm")).check()
    await expect(submit).to_be_enabled()
    await submit.click()
    await expect(dialog).to_be_hidden()


async def test_a_switch_dry_runs_runs_and_its_inverse_restores_from_the_switches_panel(servers_site, browser):
    """sms-email-from-shanghai from the page: the dry run lists its steps and changes nothing; the run (confirmed,
    with a reason) enables the Shanghai sender's cron jobs and disables the Shenzhen ones, the card shows the
    journaled steps and the servers panel the jobs; the inverse puts the cron files back byte for byte."""
    lab, api = servers_site
    listing = (await api.c.get("/api/v1/switches", headers=api._h("viewer"))).json()["switches"]
    sw = next(s for s in listing if s["id"] == SWITCH)
    forward, inverse = [st["text"] for st in sw["steps"]], [st["text"] for st in sw["inverse"]]
    assert "enable job sms-send on sms-sh" in forward and "disable job sms-send on sms-sh" in inverse
    before = {(srv, job): _cron(lab, srv, job) for srv in ("sms-sh", "sms-sz") for job in ("sms-send", "mail-send")}
    assert "#ccfo-disabled# " in before[("sms-sh", "sms-send")] and "#ccfo-disabled# " not in before[("sms-sz",
                                                                                                       "sms-send")]

    async with dashboard(browser, lab, "viewer") as page:  # a viewer sees the switches, with no button
        card = page.get_by_test_id(f"switch-{SWITCH}")
        await expect(card.get_by_test_id(f"switch-{SWITCH}-steps").locator("li")).to_have_text(forward)
        await expect(card.get_by_role("button")).to_have_count(0)
        await expect(page.get_by_test_id("switches").locator("article.switch")).to_have_count(len(listing))

    async with dashboard(browser, lab, "operator") as page:
        warnings: list[str] = []  # a failed refresh is a console warning: said if the panel does not come
        page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
        card = page.get_by_test_id(f"switch-{SWITCH}")
        try:
            await expect(card.get_by_test_id(f"switch-{SWITCH}-state")).to_have_text("NEVER RUN FROM THIS CONTROLLER")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nthe page's warnings: {warnings}") from exc
        await card.get_by_test_id(f"switch-{SWITCH}-dry").click()
        dry = card.get_by_test_id(f"switch-{SWITCH}-dry-result")
        await expect(dry).to_contain_text(f"would run these {len(forward)} steps")
        await expect(dry.locator("li")).to_have_text(forward)
        assert {k: _cron(lab, *k) for k in before} == before, "a dry run changes nothing"
        assert not await api.plans("running,finished,failed")

        await _run_from_dialog(page, card, "run", forward, "section III rehearsal from the dashboard")
        await expect(card.get_by_test_id(f"switch-{SWITCH}-last-status")).to_have_text("FINISHED", timeout=60_000)
        await expect(card.get_by_test_id(f"switch-{SWITCH}-state")).to_have_text("SWITCHED")
        journal = card.get_by_test_id(f"switch-{SWITCH}-journal")
        await expect(journal.locator('[data-kind="step_finished"]')).to_have_count(len(forward))
        await expect(journal.locator('[data-kind="plan_finished"]')).to_have_count(1)
        await expect(journal).to_contain_text("enable job sms-send on sms-sh")
        await expect(card.get_by_test_id(f"switch-{SWITCH}-last")).to_contain_text("by lab-operator")
        # its effect, on the disk and in the servers panel
        assert "#ccfo-disabled# " not in _cron(lab, "sms-sh", "sms-send")
        assert "#ccfo-disabled# " in _cron(lab, "sms-sz", "sms-send")
        for job in ("sms-send", "mail-send"):
            await expect(page.get_by_test_id(f"job-sms-sh-{job}").locator(".job-state")).to_have_text("enabled",
                                                                                                     timeout=LIVE)
            await expect(page.get_by_test_id(f"job-sms-sz-{job}").locator(".job-state")).to_have_text("disabled")

        await _run_from_dialog(page, card, "run-inverse", inverse, "back to Shenzhen after the rehearsal")
        await expect(card.get_by_test_id(f"switch-{SWITCH}-state")).to_have_text("UNDONE (INVERSE RAN LAST)",
                                                                                 timeout=60_000)
        await expect(card.get_by_test_id(f"switch-{SWITCH}-last")).to_contain_text(sw["inverse_description"])
        await expect(journal.locator('[data-kind="step_finished"]')).to_have_count(len(inverse))
        for job in ("sms-send", "mail-send"):
            await expect(page.get_by_test_id(f"job-sms-sh-{job}").locator(".job-state")).to_have_text("disabled",
                                                                                                     timeout=LIVE)
            await expect(page.get_by_test_id(f"job-sms-sz-{job}").locator(".job-state")).to_have_text("enabled")
        await _shot(page, "dashboard-switches.png")
    assert {k: _cron(lab, *k) for k in before} == before, "the inverse put the cron files back"
    actions = [e["data"]["title"] for e in await api.journal(kind="operator_action")]
    assert sorted(actions) == sorted([sw["description"], sw["inverse_description"]]), actions
