"""set_file on a managed server's agent: a whitelisted switch file pointed at one of its named values (backup,
atomic rewrite, read-back), then its reload command, here the lab's HTTP entry point stand-in (lab/entry.py, a
real process that serves what its file says after a reload). A failing reload puts the old content back; a file
or value outside the whitelist is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agents.actions import ActionExecutor, ActionRefused, ActionRequest
from agents.files import ConfigFiles
from agents.files.formats import FileSpec
from agents.files.switch import Reload, SwitchFiles
from agents.services import ServiceManager, make_backend
from lab.labconfig import LAB_ENTRY
from tests.support import wait_until

PATTERN = r"^Redirect 302 /customer-service (\S+)$"
VALUES = {"shenzhen": "https://cs.fundco.example/", "shanghai": "https://cs-sh.fundco.example/"}
TEXT = "# the website's customer-service entry\nRedirect 302 /customer-service https://cs.fundco.example/\n"


@pytest.fixture
def entry(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The entry point's file and the URL of its HTTP stand-in, running."""
    conf, ready = tmp_path / "cs-entry.conf", tmp_path / "entry.ready"
    conf.write_text(TEXT)
    proc = subprocess.Popen([sys.executable, "-S", str(LAB_ENTRY), "serve", "--listen", "127.0.0.1:0", "--file",
                             str(conf), "--pattern", PATTERN, "--ready-file", str(ready)], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=10)
        assert proc.poll() is None
        yield conf, f"http://{ready.read_text().strip()}"
    finally:
        proc.terminate()
        proc.wait(5)


def executor(tmp_path: Path, conf: Path, reload: list[str] | None) -> ActionExecutor:
    spec = FileSpec("cs-entry", conf, "regex", pattern=PATTERN)
    files = SwitchFiles([spec], {"cs-entry": VALUES}, {"cs-entry": Reload(tuple(reload), 10.0)} if reload else {},
                        tmp_path / "backups")
    services = ServiceManager(make_backend("command"), {}, None)
    return ActionExecutor("cs-sz", services, ConfigFiles([], {}, tmp_path / "b2"), None, hosts=[],
                          routing_method="none", board=False, switch_files=files)


def served(url: str) -> str:
    r = httpx.get(url, follow_redirects=False, timeout=5)
    assert r.status_code == 302
    return r.headers["location"]


@pytest.mark.asyncio
async def test_set_file_rewrites_backs_up_and_reloads_the_entry_point_which_then_serves_the_new_url(tmp_path, entry):
    conf, url = entry
    ex = executor(tmp_path, conf, [sys.executable, "-S", str(LAB_ENTRY), "reload", url])
    assert "set_file" in ex.kinds()
    assert served(url) == VALUES["shenzhen"]
    res = await ex.run(ActionRequest(action_id="a1", action="set_file", file="cs-entry", value="shanghai"), "t")
    assert res.ok, res.detail
    assert conf.read_text() == TEXT.replace(VALUES["shenzhen"], VALUES["shanghai"]), "only the value changed"
    (backup,) = (tmp_path / "backups").glob("cs-entry.*.bak")
    assert backup.read_text() == TEXT
    assert res.data["reload"] == VALUES["shanghai"] and served(url) == VALUES["shanghai"]
    again = await ex.run(ActionRequest(action_id="a2", action="set_file", file="cs-entry", value="shanghai"), "t")
    assert again.ok and "nothing changed" in again.detail and len(list((tmp_path / "backups").glob("*.bak"))) == 1
    back = await ex.run(ActionRequest(action_id="a3", action="set_file", file="cs-entry", value="shenzhen"), "t")
    assert back.ok and conf.read_text() == TEXT and served(url) == VALUES["shenzhen"]


@pytest.mark.asyncio
async def test_a_failing_reload_puts_the_old_content_back_and_fails_the_action(tmp_path, entry):
    conf, url = entry
    ex = executor(tmp_path, conf, [sys.executable, "-S", str(LAB_ENTRY), "reload", "http://127.0.0.1:9/"])
    res = await ex.run(ActionRequest(action_id="b1", action="set_file", file="cs-entry", value="shanghai"), "t")
    assert not res.ok and "reload" in res.detail and "the old content is back" in res.detail, res.detail
    assert conf.read_text() == TEXT and served(url) == VALUES["shenzhen"]


@pytest.mark.asyncio
async def test_a_file_or_value_outside_the_whitelist_is_refused_before_anything_runs(tmp_path, entry):
    conf, _ = entry
    ex = executor(tmp_path, conf, None)
    with pytest.raises(ActionRefused, match="'hosts' is not a whitelisted switch file of cs-sz"):
        await ex.run(ActionRequest(action_id="c1", action="set_file", file="hosts", value="shanghai"), "t")
    with pytest.raises(ActionRefused, match=r"cs-entry has no value 'beijing' \(values: shenzhen, shanghai\)"):
        await ex.run(ActionRequest(action_id="c2", action="set_file", file="cs-entry", value="beijing"), "t")
    with pytest.raises(ValueError, match="set_file needs value"):
        ActionRequest(action_id="c3", action="set_file", file="cs-entry")
    assert conf.read_text() == TEXT and not (tmp_path / "backups").exists()
