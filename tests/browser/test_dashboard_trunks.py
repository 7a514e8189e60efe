"""The dashboard on a SIP-trunk lab (`LabLayout(telephony="sip")`) in a real browser (Debian's Chromium via
Playwright): each host lists its SIP trunks beside (here: instead of) its spans, and a trunk injected down
turns red live, then green again."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from lab.site import LabSite
from tests.browser.test_dashboard import browser, dashboard, expect
from tests.integration.labkit import Api, layout
from tests.support import async_wait_until

__all__ = ["browser"]  # the fixture, imported for its name
# Slow (`make test-slow`, run by CI): make test has the trunks on the live lab in tests/integration/test_lab_trunks.py.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sip_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LabSite, Api]]:
    lab = LabSite(layout(tmp_path_factory.mktemp("browser-sip"), telephony="sip"))
    try:
        await lab.up()
        api = Api(lab)
        try:
            await async_wait_until(lambda: _trunks_up(api), timeout=20)
            yield lab, api
        finally:
            await api.aclose()
    finally:
        await lab.down()


async def _trunks_up(api: Api) -> dict[str, Any] | None:
    s = await api.status()
    ok = s["state"] == "normal" and all(t["state"] == "up" for h in s["hosts"].values() for t in h["trunks"])
    return s if ok else None


async def test_the_hosts_show_their_trunks_and_a_trunk_down_turns_red(sip_site, browser):
    lab, _api = sip_site
    async with dashboard(browser, lab, "viewer") as page:
        for host, names in (("ipc-a", ("carrier-1", "carrier-2")), ("ipc-b", ("carrier-1",))):
            card = page.get_by_test_id(f"host-{host}")
            await expect(card.get_by_role("heading", name="SIP trunks")).to_be_visible()
            await expect(card.get_by_role("heading", name="E1 spans")).to_have_count(0)  # no span on this site
            for name in names:
                trunk = page.get_by_test_id(f"trunk-{host}-{name}")
                await expect(trunk).to_contain_text("UP")
                await expect(trunk).to_have_class(re.compile(r"\balarm-ok\b"))
        await expect(page.get_by_test_id("trunk-ipc-a-carrier-2")).to_contain_text("sip · 30 ch")
        await lab.inject("ipc-a", "trunk", "carrier-2", "down")
        trunk = page.get_by_test_id("trunk-ipc-a-carrier-2")
        await expect(trunk).to_contain_text("DOWN")
        await expect(trunk).to_have_class(re.compile(r"\balarm-red\b"))
        await expect(page.get_by_test_id("cap-ipc-a-c")).to_have_text("30")
        await lab.inject("ipc-a", "trunk", "carrier-2", "up")
        await expect(trunk).to_contain_text("UP")
        await expect(page.get_by_test_id("cap-ipc-a-c")).to_have_text("60")
