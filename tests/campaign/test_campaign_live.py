"""The randomized fault campaign on the live lab: a small one in the default suite, the full one (200
runs) marked slow (`make test-slow`, run by .ci/run). Any violation fails with the replay commands."""

from __future__ import annotations

import os

import pytest

from lab.campaign import Campaign, Settings, summary_lines
from tests.integration.labkit import layout

pytestmark = [pytest.mark.asyncio]


def settings(tmp_path, runs: int, seed: str) -> Settings:
    lay = layout(tmp_path)  # a loopback network of this test's own
    return Settings(runs=runs, seed=seed, root=tmp_path / "campaign", net=lay.net,
                    controller_listen=lay.controller_listen, progress=True)


def judge(rep: dict) -> None:
    text = "\n".join(summary_lines(rep))
    print(text)
    assert rep["violations"] == 0, text + "\n" + "\n".join(
        f"{v['invariant']} in run {v['run']}: {v['text']}" for v in rep["violation_list"])
    assert rep["runs"] == len(rep["runs_detail"]) and rep["checks_by_invariant"]["split_brain"] > 0
    assert rep["checks_by_invariant"]["normal"] == rep["runs"], "every run ended in the normal site"


@pytest.mark.timeout(420)
async def test_a_small_campaign_finds_nothing(tmp_path):
    rep = await Campaign(settings(tmp_path, 2, os.environ.get("CCFO_CAMPAIGN_SEED", "ci"))).run()
    judge(rep)
    assert rep["events"] >= 6 and rep["checks_by_invariant"]["capacity"] > 0


@pytest.mark.slow
@pytest.mark.timeout(4200)  # 2,785 s measured on the 2-core workplace (bench/README.md)
async def test_the_full_campaign_finds_nothing_in_200_runs(tmp_path):
    rep = await Campaign(settings(tmp_path, 200, os.environ.get("CCFO_CAMPAIGN_SEED", "200"))).run()
    judge(rep)
    assert rep["runs"] == 200
