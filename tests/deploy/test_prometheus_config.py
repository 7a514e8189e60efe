"""The shipped Prometheus files (config/prometheus/): promtool accepts the scrape config and the alert rules,
the rules' own unit tests pass (alerts.test.yml), and every ccfo series an alert names is one the controller
or the agent really exports (so a renamed metric cannot silently disarm an alert)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import AgentMetrics
from controller.metrics import ControllerMetrics
from tests.controller.harness import Harness
from tests.deploy.kit import REPO

PROM = REPO / "config" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus; "
                                                             "`make test` installs it when run as root)")


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=PROM)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules() -> None:
    out = promtool("check", "rules", "alerts.yml")
    rules = sum(len(g["rules"]) for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in out, out


@needs_promtool
def test_promtool_unit_tests_of_the_rules() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


@needs_promtool
def test_promtool_check_scrape_config() -> None:
    assert "SUCCESS" in promtool("check", "config", "--syntax-only", "prometheus.yml")


def exported_names(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update({f"{family.name}_total", f"{family.name}_count", f"{family.name}_sum", f"{family.name}_bucket"})
    return names


@pytest.mark.asyncio
async def test_every_series_an_alert_names_is_exported(tmp_path) -> None:
    h = Harness(tmp_path)
    try:
        names = exported_names((await ControllerMetrics(h.engine).render()).decode())
    finally:
        h.journal.close()
        h.store.close()
    names |= exported_names(AgentMetrics("ipc-a").render().decode())
    rules = [r for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    used = {name for r in rules for name in re.findall(r"\bccfo_[a-z_]+", r["expr"])}
    assert used, "the rules name ccfo series"
    assert used <= names, f"alerts name series nobody exports: {sorted(used - names)}"
