"""The operator dashboard in a real browser: Debian's Chromium, driven by Playwright, against one live lab.

One lab serves the whole module (it takes several seconds to come up), so the tests run in file order and
each leaves the site the way the next one expects it: normal until the operator approves the failover,
then failed over until the operator fails back from the page. Screenshots of the normal and failed-over
states go to artifacts/browser/ (not committed; docs/dashboard.png is a copy of one of them).
The lab's configuration gets one small checklist of its own (CHECKLIST) for the checklists panel.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.integration.labkit import Api, layout
from tests.support import async_wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
VIEWPORT = {"width": 1440, "height": 1000}

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("browser tests skipped: the playwright package is not installed (`make test` installs it with "
                "the test extra: pip install -e '.[test]'; never `playwright install`, the tests use Debian's "
                "chromium)", allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.skip(f"browser tests skipped: {CHROMIUM} is missing (`make test` installs Debian's chromium when run as "
                "root; or apt-get install chromium)", allow_module_level=True)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]
expect.set_options(timeout=10_000)  # a loaded CI machine; the 2 s live-update bound is asserted explicitly
CHECKLIST = """\
name: night-handover
title: Night-shift handover
description: What the night shift checks when it takes over the call center.
phases:
  - id: handover
    title: Handover at 22:00
    steps:
      - {id: site-normal, title: Site state normal, owner: operator, kind: check, planned: 1m, after: [],
         check: {site_state: normal}}
      - {id: read-journal, title: Read the day shift's journal, owner: operator, kind: manual, planned: 5m, after: []}
      - {id: test-call, title: Call the IVR from the handover phone, owner: operator, kind: manual, planned: 5m,
         after: []}
      - {id: print-report, title: Print the capacity report, owner: operator, kind: manual, planned: 2m, after: []}
"""


# --- fixtures: one lab, one browser ----------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LabSite, Api]]:
    lab = LabSite(layout(tmp_path_factory.mktemp("browser")))
    try:
        await lab.up()
        (lab.layout.config / "checklists").mkdir(exist_ok=True)  # the controller reads them on each request
        (lab.layout.config / "checklists" / "night-handover.yaml").write_text(CHECKLIST)
        api = Api(lab)
        try:
            await async_wait_until(lambda: _normal(api), timeout=20)
            yield lab, api
        finally:
            await api.aclose()
    finally:
        await lab.down()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    for stale in ARTIFACTS.glob("failed-*.png"):  # the failure screenshots in artifacts/ are this run's only
        stale.unlink()
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@contextlib.asynccontextmanager
async def dashboard(browser: Browser, lab: LabSite, role: str) -> AsyncIterator[Page]:
    """A fresh browser context signed in with `role`'s token through the login form."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
            and "Failed to load resource" not in msg.text else None)
    try:
        await page.goto(lab.api + "/")
        await page.get_by_label("API token").fill(lab.token(role))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#who")).to_contain_text(role)
        await expect(page.locator("#conn")).to_contain_text("live")
        yield page
        assert not errors, f"the page reported errors: {errors}"
    except BaseException:
        with contextlib.suppress(Exception):  # what the page showed when the test failed, for the CI artifacts
            test = os.environ.get("PYTEST_CURRENT_TEST", "test").split("::")[-1].split(" ")[0]
            await _shot(page, f"failed-{test}-{role}.png")
        raise
    finally:
        await context.close()


async def _normal(api: Api) -> dict[str, Any] | None:
    s = await api.status()
    ok = s["state"] == "normal" and not s["faults"] and all(h["reachable"] for h in s["hosts"].values())
    return s if ok else None


async def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


def _dialog_confirm(dialog: Any) -> Any:
    return dialog.get_by_label(re.compile(r"^I confirm"))


# --- the tests, in the order they must run ---------------------------------------------------------------

async def test_page_shows_both_hosts_and_the_capacity_the_api_reports(site, browser):
    lab, api = site
    await lab.calls("ipc-a", 7, 4)
    try:
        status = await async_wait_until(lambda: _calls(api, "ipc-a", 7, 4), timeout=10)
        async with dashboard(browser, lab, "operator") as page:
            await expect(page.get_by_test_id("site-state")).to_have_text("NORMAL")
            await expect(page.locator("#active-host")).to_have_text("ipc-a")
            await expect(page.locator("#site-mode")).to_have_text("supervised")
            for name, host in status["hosts"].items():
                card = page.get_by_test_id(f"host-{name}")
                await expect(card.get_by_role("heading", name=name)).to_be_visible()
                await expect(page.get_by_test_id(f"duty-{name}")).to_have_text(host["duty"])
                for sp in host["spans"]:
                    span = page.get_by_test_id(f"span-{name}-{sp['span']}")
                    await expect(span).to_contain_text("OK")
                    await expect(span).to_have_class(re.compile(r"\balarm-ok\b"))
                for svc, state in host["services"].items():
                    await expect(page.get_by_test_id(f"svc-{name}-{svc}")).to_contain_text(state)
                c = host["capacity"]
                shown = {"c": c["channels"], "x": c["ivr_calls"], "2y": 2 * c["agent_calls"], "free": c["free"],
                         "reserve": c["reserve"], "more": c["more_ivr_calls"]}
                for key, want in shown.items():
                    await expect(page.get_by_test_id(f"cap-{name}-{key}")).to_have_text(str(want))
            assert status["hosts"]["ipc-a"]["capacity"]["free"] == 60 - 7 - 8, "X + 2Y of the calls the lab set"
            await expect(page.get_by_test_id("capacity-line")).to_contain_text(status["capacity"]["line"])
            await expect(page.locator("#actions").get_by_role("button")).to_have_count(3)  # operator: no Mode
            await expect(page.get_by_test_id("drill-primary-cti-crash")).to_contain_text("target: lab")
            await expect(page.get_by_test_id("checklist-night-handover")).to_contain_text("4 steps (1 automatic)")
            await _shot(page, "dashboard-normal.png")
    finally:
        await lab.calls("ipc-a", 0, 0)
        await async_wait_until(lambda: _calls(api, "ipc-a", 0, 0), timeout=10)


async def test_a_hung_service_and_a_hung_asterisk_look_unlike_a_stopped_one(site, browser):
    """kcxp on the primary hangs (no rule moves the site for it): the card shows `hung`, not `inactive`
    like the primary's idle kcxp-replica; a frozen Asterisk reads HUNG, not DISCONNECTED."""
    lab, api = site
    async with dashboard(browser, lab, "viewer") as page:
        await lab.inject("ipc-a", "service", "kcxp", "hang")
        try:
            hung = page.get_by_test_id("svc-ipc-a-kcxp")
            await expect(hung).to_have_class(re.compile(r"\bsvc-hung\b"), timeout=5000)
            await expect(hung.locator(".svc-state")).to_have_text("hung")
            idle = page.get_by_test_id("svc-ipc-a-kcxp-replica")
            await expect(idle).to_have_class(re.compile(r"\bsvc-inactive\b"))
            assert await hung.evaluate("e => getComputedStyle(e).borderLeftStyle") == "dashed"
            assert await idle.evaluate("e => getComputedStyle(e).borderLeftStyle") != "dashed"
            await lab.inject("ipc-a", "asterisk", "hang")
            await expect(page.get_by_test_id("ami-ipc-a")).to_have_text("HUNG (not answering)", timeout=10000)
            await _shot(page, "dashboard-hung.png")
        finally:
            await lab.inject("ipc-a", "asterisk", "resume")
            await lab.inject("ipc-a", "service", "kcxp", "resume")
        await expect(page.get_by_test_id("svc-ipc-a-kcxp")).to_have_class(re.compile(r"\bsvc-active\b"),
                                                                          timeout=10000)
        await expect(page.get_by_test_id("ami-ipc-a")).to_have_text("connected", timeout=20000)
    for plan in await api.plans("proposed"):  # a hung Asterisk on the primary proposes rule 2: decline it
        await api.post(f"/api/v1/plans/{plan['id']}/reject", {"reason": "test over"})
    await async_wait_until(lambda: _normal(api), timeout=30)


async def _calls(api: Api, host: str, ivr: int, agent: int) -> dict[str, Any] | None:
    s = await api.status()
    c = s["hosts"][host]["capacity"]
    return s if (c["ivr_calls"], c["agent_calls"]) == (ivr, agent) else None


async def test_a_wrong_token_is_refused_at_the_login_form(site, browser):
    lab, _ = site
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        await page.goto(lab.api + "/")
        await page.get_by_label("API token").fill("not-a-token")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("alert")).to_contain_text("refused the token")
        await expect(page.get_by_label("API token")).to_be_focused()
        assert await page.evaluate("() => sessionStorage.length + localStorage.length") == 0
        await expect(page.locator("#app")).to_be_hidden()
    finally:
        await context.close()


async def test_a_viewer_sees_no_action_buttons(site, browser):
    lab, _ = site
    async with dashboard(browser, lab, "viewer") as page:
        await expect(page.get_by_test_id("host-ipc-b")).to_be_visible()  # rendered with the role, same pass
        # every panel that has buttons for an operator has been read and drawn
        await expect(page.get_by_test_id("drill-primary-cti-crash")).to_be_visible()
        await expect(page.get_by_test_id("checklist-night-handover")).to_be_visible()
        await expect(page.get_by_test_id("pending")).to_contain_text("No plan is waiting for approval")
        assert await page.locator("#actions").count() == 0
        assert await page.get_by_role("button").all_inner_texts() == ["Sign out"]
        where = await page.evaluate("() => [sessionStorage.getItem('ccfo.token') !== null, localStorage.length, "
                                    "document.cookie]")
        assert where == [True, 0, ""], "the token lives in sessionStorage only"
    async with dashboard(browser, lab, "admin") as page:  # the contrast: an admin also gets the mode
        await expect(page.locator("#actions").get_by_role("button")).to_have_text(
            ["Fail over…", "Planned switchover…", "Fail back…", "Mode…"])


async def test_a_failover_without_a_reason_cannot_be_submitted(site, browser):
    lab, api = site
    async with dashboard(browser, lab, "operator") as page:
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method != "GET" else None)
        opener = page.get_by_role("button", name="Fail over…")
        await opener.click()
        dialog = page.get_by_role("dialog", name="Fail over")
        await expect(dialog).to_be_visible()
        await expect(dialog.get_by_label("Target host")).to_have_value("ipc-b")
        steps = dialog.get_by_test_id("dlg-steps")  # the controller's dry run: the plan it would run now
        await expect(steps.locator("li").first).to_contain_text("ipc-a")
        count = await steps.locator("li").count()
        assert count >= 5, f"a failover plan has its stops, fence, starts and route: {count} steps"
        await expect(dialog).to_contain_text(f"Run these {count} steps on site ")
        reason = dialog.get_by_label("Reason")
        await expect(reason).to_be_focused()
        submit = dialog.get_by_role("button", name="Fail over to ipc-b")
        await expect(submit).to_be_disabled()
        await page.keyboard.press("Shift+Tab")  # keyboard only: back to the target host, then forward twice
        await expect(dialog.get_by_label("Target host")).to_be_focused()
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await expect(_dialog_confirm(dialog)).to_be_focused()
        await page.keyboard.press("Space")
        await expect(_dialog_confirm(dialog)).to_be_checked()
        await expect(_dialog_confirm(dialog)).to_have_accessible_name("I confirm: fail over to ipc-b now.")
        await expect(submit).to_be_disabled()  # confirmed, but still no reason
        await reason.fill("   ")
        await expect(submit).to_be_disabled()
        await dialog.locator("form").evaluate("form => form.requestSubmit()")  # force a submit past the button
        await expect(dialog).to_be_visible()
        await reason.fill("ok")
        await expect(submit).to_be_disabled()  # the API wants at least 3 characters
        await reason.fill("testing the form only")
        await expect(submit).to_be_enabled()
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(opener).to_be_focused()
    assert posts and all(url.endswith("/api/v1/failover?dry_run=true") for url in posts), \
        f"only the dry run may be sent: {posts}"
    assert await api.plans("running,finished,failed") == []
    assert await _normal(api)


SPAN_1_RED = """() => {
  const el = document.querySelector('[data-testid="span-ipc-a-1"]');
  return el !== null && el.classList.contains("alarm-red") && el.textContent.includes("RED ALARM");
}"""


async def test_a_span_alarm_turns_red_live_and_the_proposal_is_rejected(site, browser):
    lab, api = site
    async with dashboard(browser, lab, "operator") as page:
        span = page.get_by_test_id("span-ipc-a-1")
        await expect(span).to_have_class(re.compile(r"\balarm-ok\b"))
        await page.evaluate("() => { window.sameDocument = true; }")
        t0 = time.monotonic()
        await lab.inject("ipc-a", "span", "1", "red")
        proposals = page.get_by_test_id("pending-plan").filter(has_text="isolate the board of ipc-a")
        try:
            budget_ms = max(1.0, 2000 - 1000 * (time.monotonic() - t0))  # 2 s from the injection, checked every 50 ms
            try:
                await page.wait_for_function(SPAN_1_RED, polling=50, timeout=budget_ms)
            except PlaywrightTimeout as exc:
                spans = (await api.status())["hosts"]["ipc-a"]["spans"]
                raise AssertionError(f"span 1 not red on the page within 2 s; the API now says {spans}; "
                                     f"load average {os.getloadavg()}") from exc
            seen = time.monotonic() - t0
            assert seen < 2.0, f"red after {seen:.2f} s"
            await expect(page.locator('[data-testid="span-ipc-a-1"].alarm-red')).to_contain_text("RED ALARM")
            await expect(page.get_by_test_id("span-ipc-a-2")).to_have_class(re.compile(r"\balarm-ok\b"))
            await expect(page.get_by_test_id("site-state")).to_have_text("DEGRADED")
            assert await page.evaluate("() => window.sameDocument === true"), "no reload"
            await expect(proposals.first).to_be_visible(timeout=15000)  # the rule proposes isolating the board
            plan_id = await proposals.first.get_attribute("data-plan-id")
            pending = page.locator(f'[data-testid="pending-plan"][data-plan-id="{plan_id}"]')
            await pending.get_by_role("button", name="Reject…").click()
            dialog = page.get_by_role("dialog", name="Reject the plan")
            submit = dialog.get_by_role("button", name="Reject the plan")
            await expect(submit).to_be_disabled()
            await dialog.get_by_label("Reason").fill("a carrier test on span 1, announced")
            await submit.click()
            await expect(dialog).to_be_hidden()
            await expect(pending).to_have_count(0)
            await expect(page.get_by_test_id("pending")).to_be_focused()  # not lost with the plan's buttons
        finally:
            await lab.inject("ipc-a", "span", "1", "clear")
        await expect(span).to_have_class(re.compile(r"\balarm-ok\b"), timeout=5000)
        await expect(span).to_contain_text("D-channel up", timeout=5000)
        await async_wait_until(lambda: _normal(api), timeout=15)
        # the span is back: the controller withdraws what it proposed meanwhile, and the page follows
        await expect(page.get_by_test_id("pending")).to_contain_text("No plan is waiting for approval")
        await expect(page.get_by_test_id("site-state")).to_have_text("NORMAL")
    rec = await api.plan(str(plan_id))
    assert (rec["status"], rec["decided_by"], rec["decided_reason"]) == ("rejected", "lab-operator",
                                                                         "a carrier test on span 1, announced")
    assert await api.plans("proposed") == []


RECORD_PROGRESS = """() => {
  window.progress = [];
  const box = document.getElementById("plan");
  new MutationObserver(() => {
    const status = box.querySelector('[data-testid="plan-status"]');
    const done = box.querySelector('[data-testid="plan-progress"]');
    if (status && done) window.progress.push(`${status.textContent} ${done.textContent}`);
  }).observe(box, { childList: true, subtree: true });
}"""


async def test_an_operator_approves_the_proposed_failover_and_watches_it_finish(site, browser):
    lab, api = site
    async with dashboard(browser, lab, "operator") as page, dashboard(browser, lab, "viewer") as viewer:
        await lab.inject("ipc-a", "service", "cti", "crash")
        title = "fail over from ipc-a to ipc-b"
        pending = page.get_by_test_id("pending-plan").filter(has_text=title)
        await expect(pending).to_be_visible(timeout=20000)
        proposed = next(p for p in await api.plans("proposed") if p["title"] == title)
        n = len(proposed["steps"])
        await expect(pending).to_contain_text("Proposed by controller (rule primary-cti-ivr-fault)")
        await expect(pending).to_contain_text(proposed["reason"])
        await expect(pending.get_by_role("listitem")).to_have_count(n)
        await expect(page.get_by_test_id("svc-ipc-a-cti")).to_have_text(re.compile(r"^cti\s*(failed|inactive)$"))
        seen = viewer.get_by_test_id("pending-plan").filter(has_text=title)
        await expect(seen).to_be_visible()
        assert await seen.get_by_role("button").count() == 0, "a viewer sees the plan but cannot decide on it"

        await page.evaluate(RECORD_PROGRESS)
        await pending.get_by_role("button", name="Approve…").click()
        dialog = page.get_by_role("dialog", name="Approve the plan")
        await expect(dialog).to_contain_text("target host: ipc-b")
        submit = dialog.get_by_role("button", name="Approve: ipc-b")
        await dialog.get_by_label("Reason").fill("night shift: CTI crashed on ipc-a")
        await expect(submit).to_be_disabled()  # not confirmed yet
        await _dialog_confirm(dialog).check()
        await submit.click()
        await expect(dialog).to_be_hidden()

        panel = page.get_by_test_id("plan")
        await expect(panel).to_contain_text(title)
        await expect(panel.get_by_test_id("plan-step")).to_have_count(n)
        await expect(page.get_by_test_id("plan-status")).to_have_text("FINISHED", timeout=30000)
        await expect(panel.locator(".step-done")).to_have_count(n)
        await expect(panel.get_by_test_id("plan-progress")).to_have_text(f"{n} of {n} steps done")
        durations = await panel.get_by_test_id("step-duration").all_inner_texts()
        assert all(re.fullmatch(r"\d+\.\d\d s", d) for d in durations), durations
        assert "approved by lab-operator: “night shift: CTI crashed on ipc-a”" in await panel.inner_text()
        await expect(page.get_by_test_id("site-state")).to_have_text("FAILED OVER", timeout=10000)
        await expect(page.locator("#active-host")).to_have_text("ipc-b")
        await expect(viewer.get_by_test_id("site-state")).to_have_text("FAILED OVER")
        progress = await page.evaluate("() => window.progress")
        between = {p for p in progress if re.fullmatch(rf"RUNNING (\d+) of {n} steps done", p)
                   and 0 < int(p.split()[1]) < n}
        assert len(between) >= 2, f"the steps were seen completing one by one: {progress}"

        journal = page.locator("#journal")
        await page.get_by_label("Kind").select_option(label="plan steps")
        await page.get_by_label("Host", exact=True).select_option("ipc-b")
        await expect(journal.locator('[data-testid="journal-entry"]:not([data-host="ipc-b"])')).to_have_count(0)
        await expect(journal.locator('[data-testid="journal-entry"]:not([data-kind^="step_"])')).to_have_count(0)
        await expect(journal.get_by_text("step 10: start cti on ipc-b — ok")).to_be_visible()
        await page.get_by_label("Kind").select_option(label="all kinds")
        await page.get_by_label("Host", exact=True).select_option("")
        await expect(journal.locator('[data-kind="plan_approved"]')).to_contain_text("by lab-operator")
        await _shot(page, "dashboard-failed-over.png")


async def test_the_drills_panel_lists_the_library_starts_a_run_and_shows_the_history(site, browser):
    lab, api = site
    library = (await api.c.get("/api/v1/drills", headers=api._h("viewer"))).json()["drills"]
    async with dashboard(browser, lab, "operator") as page:
        await expect(page.get_by_test_id("site-state")).to_have_text("FAILED OVER")
        await expect(page.get_by_test_id("drills").locator("li h4")).to_have_text([d["name"] for d in library])
        card = page.get_by_test_id("drill-primary-cti-crash")
        await expect(card).to_contain_text(next(d["fault"] for d in library if d["name"] == "primary-cti-crash"))
        await card.get_by_role("button", name="Run…").click()
        dialog = page.get_by_role("dialog", name="Run a drill")
        submit = dialog.get_by_role("button", name="Run drill primary-cti-crash")
        await expect(_dialog_confirm(dialog)).to_be_focused()
        await expect(submit).to_be_disabled()
        await _dialog_confirm(dialog).check()
        await submit.click()
        # the site is failed over, not in the drill's steady state: the controller refuses and journals why
        await expect(dialog.get_by_role("alert")).to_contain_text("drill primary-cti-crash not started")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        skipped = (await api.journal(kind="drill_skipped"))[0]
        assert skipped["data"]["drill"] == "primary-cti-crash" and skipped["actor"] == "lab-operator", skipped
        rows = page.get_by_test_id("drill-history-row")
        await expect(rows.first).to_contain_text("primary-cti-crash")
        await expect(rows.first.get_by_test_id("drill-result")).to_have_text("SKIPPED")
        await expect(rows.first).to_contain_text(skipped["data"]["why"])

        # a run by `ccfo drill run` outside the controller is recorded through the API; the page shows its figures
        figures = {"time_to_recover_s": 7.42, "calls_failed": 1, "calls_attempted": 40}
        r = await api.post("/api/v1/drills/journal", {
            "kind": "drill_finished", "reason": "drill primary-ivr-crash passed", "status": "passed",
            "duration_s": 96.5,
            "data": {"run_id": "primary-ivr-crash-browser", "drill": "primary-ivr-crash", "status": "passed",
                     "by": "ccfo drill run", "figures": figures}})
        assert r.status_code == 201, r.text
        await expect(rows.first.get_by_test_id("drill-result")).to_have_text("PASSED")
        await expect(rows.first).to_contain_text("primary-ivr-crash")
        await expect(rows.first.get_by_test_id("drill-recover")).to_have_text("7.42 s")
        await expect(rows.first.get_by_test_id("drill-calls-failed")).to_have_text("1 of 40")
        await expect(rows).to_have_count(2)
        await expect(page.get_by_test_id("drill-runs")).to_contain_text("No drill is running")


async def test_an_operator_fails_back_from_the_page(site, browser):
    lab, api = site
    async with dashboard(browser, lab, "operator") as page:
        await expect(page.get_by_test_id("site-state")).to_have_text("FAILED OVER")
        await page.get_by_role("button", name="Fail back…").click()
        dialog = page.get_by_role("dialog", name="Fail back")
        await expect(dialog).to_contain_text("ipc-a serves calls again")
        await dialog.get_by_label("Drain timeout (seconds)").fill("5")
        await expect(dialog.get_by_test_id("dlg-steps")).to_contain_text("ipc-a")  # the plan, from the dry run
        await dialog.get_by_label("Reason").fill("ipc-a repaired")
        await _dialog_confirm(dialog).check()
        await dialog.get_by_role("button", name="Fail back to ipc-a").click()
        await expect(dialog).to_be_hidden()
        await expect(page.get_by_test_id("plan")).to_contain_text("fail back to ipc-a")
        await expect(page.get_by_test_id("plan-status")).to_have_text("FINISHED", timeout=30000)
        await expect(page.get_by_test_id("site-state")).to_have_text("NORMAL", timeout=15000)
        await expect(page.locator("#active-host")).to_have_text("ipc-a")
    finished = await api.plans("finished")
    assert [p["title"] for p in finished[:1]] == ["fail back to ipc-a"]
    assert finished[0]["requested_by"] == "lab-operator" and finished[0]["reason"].endswith("ipc-a repaired")


async def test_an_operator_runs_a_checklist_ticking_failing_and_skipping_steps(site, browser):
    lab, api = site
    async with dashboard(browser, lab, "operator") as page:
        panel = page.get_by_test_id("checklist-run")
        await expect(panel).to_contain_text("No checklist has been run yet.")
        card = page.get_by_test_id("checklist-night-handover")
        await card.get_by_role("button", name="Start run…").click()
        dialog = page.get_by_role("dialog", name="Start a checklist run")
        submit = dialog.get_by_role("button", name="Start the run")
        await _dialog_confirm(dialog).check()
        await expect(submit).to_be_disabled()  # no reason yet
        await dialog.get_by_label("Reason").fill("night shift takes over")
        await submit.click()
        await expect(dialog).to_be_hidden()
        await expect(panel).to_contain_text("Open run: Night-shift handover")
        await expect(panel).to_contain_text("by lab-operator: “night shift takes over”")
        await expect(panel.get_by_test_id("checklist-status")).to_have_text("ACTIVE")
        await expect(panel.get_by_test_id("cl-step-site-normal")).to_have_attribute("data-state", "done")  # by itself
        assert await panel.get_by_test_id("cl-step-site-normal").get_by_role("button").count() == 0

        # keyboard only: a manual step in progress is ticked done, with a note
        step = panel.get_by_test_id("cl-step-read-journal")
        await expect(step.get_by_test_id("cl-state")).to_have_text("in progress")
        await step.get_by_role("button", name="Done…").focus()
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Mark the step done")
        await expect(dialog.get_by_label("Note (optional)")).to_be_focused()
        await page.keyboard.type("nothing unusual")
        await page.keyboard.press("Tab")
        await expect(dialog.get_by_role("button", name="Mark done: read-journal")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(dialog).to_be_hidden()
        await expect(step).to_have_attribute("data-state", "done")
        await expect(step.get_by_test_id("cl-state")).to_have_text("done")
        await expect(step.get_by_test_id("cl-note")).to_have_text("Note: nothing unusual")
        await expect(panel).to_be_focused()  # its button is gone: focus stays in the panel, not lost
        await expect(panel.get_by_test_id("checklist-progress")).to_have_text("2 of 4 steps done or skipped")

        # a failure needs a note; it is shown in words, not only in red
        step = panel.get_by_test_id("cl-step-test-call")
        await step.get_by_role("button", name="Failed…").click()
        dialog = page.get_by_role("dialog", name="Mark the step failed")
        submit = dialog.get_by_role("button", name="Mark failed: test-call")
        await expect(submit).to_be_disabled()
        await dialog.get_by_label("What went wrong").fill("IVR answered with silence")
        await submit.click()
        await expect(dialog).to_be_hidden()
        await expect(step).to_have_attribute("data-state", "failed")
        await expect(step.get_by_test_id("cl-state")).to_have_text("FAILED")
        await expect(step.get_by_role("button")).to_have_text(["Retry…", "Skip…"])

        for name, why in (("print-report", "the printer is out of paper"), ("test-call", "retested by hand: fine")):
            step = panel.get_by_test_id(f"cl-step-{name}")
            await step.get_by_role("button", name="Skip…").click()
            dialog = page.get_by_role("dialog", name="Skip the step")
            await dialog.get_by_label("Reason").fill(why)
            await dialog.get_by_role("button", name=f"Skip the step: {name}").click()
            await expect(dialog).to_be_hidden()
            await expect(step).to_have_attribute("data-state", "skipped")
        await expect(panel.get_by_test_id("checklist-status")).to_have_text("FINISHED")
        await expect(panel).to_contain_text("Last run: Night-shift handover")
        await expect(panel.get_by_role("button")).to_have_count(0)
        row = page.get_by_test_id("checklist-run-row")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("FINISHED")
        await expect(row).to_contain_text("4 of 4")
    r = await api.c.get("/api/v1/checklist-runs/latest", headers=api._h("viewer"))
    steps = {st["id"]: st for p in r.json()["phases"] for st in p["steps"]}
    assert {k: (v["state"], v["note"]) for k, v in steps.items()} == {
        "site-normal": ("done", steps["site-normal"]["note"]), "read-journal": ("done", "nothing unusual"),
        "test-call": ("skipped", "retested by hand: fine"), "print-report": ("skipped", "the printer is out of paper")}
    assert steps["read-journal"]["ended_by"] == "lab-operator"


async def test_the_page_reconnects_when_its_event_stream_breaks(site, browser):
    lab, _ = site
    async with dashboard(browser, lab, "viewer") as page:
        await page.evaluate("() => { window.sameDocument = true; }")
        refused: list[str] = []

        async def refuse(route: Any) -> None:  # the controller is away for the first reconnection attempt
            refused.append(route.request.url)
            await route.abort("connectionrefused")

        await page.route("**/api/v1/events", refuse, times=1)
        await page.evaluate("() => S.stream.controller.abort()")  # the open stream breaks
        await expect(page.locator("#conn")).to_contain_text("reconnecting")
        await expect(page.locator("#conn")).to_have_text("live", timeout=15000)
        assert len(refused) == 1, refused
        await expect(page.get_by_test_id("site-state")).to_have_text("NORMAL")
        assert await page.evaluate("() => window.sameDocument === true"), "no reload"
