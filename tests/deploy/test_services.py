"""The real `ccfo controller` and `ccfo agent` processes as systemd runs them (Type=notify, WatchdogSec),
serving HTTPS from the config's certificates, and refusing secrets that others can read.

systemd is not PID 1 here, so the test plays its part: NOTIFY_SOCKET points at a datagram socket the test
reads (a path for the controller, an abstract '@' socket for the agent), with SO_PASSCRED so each message
carries its sender's pid, as systemd checks for NotifyAccess=main; WATCHDOG_USEC is small so pings come
often. READY=1 must mean ready: the API answers at once, without retrying.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import ssl
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ccfo.clients.agent_http import AgentHttpClient
from ccfo.config import secretfiles
from ccfo.config.loader import load_config
from ccfo.platform.auth import TokenFileError
from ccfo.ports import AgentUnreachable
from tests.deploy import kit
from tests.support import wait_until

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s
START_TIMEOUT_S = 60.0


@dataclass
class Running:
    site: kit.Site
    controller: kit.Service
    agent: kit.Service
    ctl_sock: kit.NotifySocket
    agent_sock: kit.NotifySocket


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("deploy-live")
    site = kit.write_site(root)
    ctl_sock = kit.NotifySocket(path=root / "ctl-notify.sock")
    agent_sock = kit.NotifySocket(abstract=f"ccfo-test-notify-{os.getpid()}-{site.net}")
    env = {"WATCHDOG_USEC": str(WATCHDOG_USEC)}
    controller = kit.start(["controller", "--config", str(site.config)], root / "controller.log",
                           {**env, "NOTIFY_SOCKET": ctl_sock.address})
    agent = None
    try:
        try:
            ctl_sock.wait_for(lambda m: m.fields.get("READY") == "1", START_TIMEOUT_S, "READY=1 from the controller")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- controller log\n{controller.text()[-3000:]}") from None
        agent = kit.start(["agent", "--config", str(site.config), "--host", "ipc-a", "--state-dir",
                           str(root / "agent-state")], root / "agent.log",
                          {**env, "NOTIFY_SOCKET": agent_sock.address})
        yield Running(site, controller, agent, ctl_sock, agent_sock)
    finally:
        for svc in (agent, controller):
            if svc is not None:
                svc.stop()
        ctl_sock.close()
        agent_sock.close()


def ca_context(site: kit.Site) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(site.ca_file))


def ready(sock: kit.NotifySocket, svc: kit.Service, name: str) -> kit.Message:
    try:
        return sock.wait_for(lambda m: m.fields.get("READY") == "1", START_TIMEOUT_S, f"READY=1 from the {name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {name} log\n{svc.text()[-3000:]}") from None


def _ready_then_watchdog(sock: kit.NotifySocket, svc: kit.Service, name: str) -> None:
    ready_msg = ready(sock, svc, name)
    assert ready_msg.pid == svc.pid, "READY=1 must come from the main process (NotifyAccess=main)"
    assert "https://" in ready_msg.fields.get("STATUS", ""), ready_msg.fields
    pings = []
    for _ in range(4):
        pings.append(sock.wait_for(lambda m: m.fields.get("WATCHDOG") == "1" and m not in pings and m.at > ready_msg.at,
                                   10.0, f"WATCHDOG=1 from the {name}"))
    assert {p.pid for p in pings} == {svc.pid}
    gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
    assert statistics.median(gaps) < WATCHDOG_USEC / 1e6, f"pings must beat the watchdog: gaps {gaps}"
    assert svc.proc.poll() is None, svc.text()


def test_controller_is_ready_only_when_serving_and_pings_the_watchdog(running: Running) -> None:
    site = running.site
    ready_msg = ready(running.ctl_sock, running.controller, "controller")
    # READY=1 already arrived (the fixture waited for it): the API must answer now, on the first try.
    r = httpx.get(f"{site.controller_url}/api/v1/status", verify=ca_context(site),
                  headers={"Authorization": f"Bearer {site.tokens['viewer']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["site"] == "deploy-test"
    assert ready_msg.fields["STATUS"].startswith("serving " + site.controller_url), ready_msg.fields
    _ready_then_watchdog(running.ctl_sock, running.controller, "controller")


def test_agent_is_ready_only_when_serving_and_pings_the_watchdog(running: Running) -> None:
    site = running.site
    ready(running.agent_sock, running.agent, "agent")
    r = httpx.get(f"{site.agent_url}/v1/report", verify=ca_context(site),
                  headers={"Authorization": f"Bearer {site.tokens['agent']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["host"] == "ipc-a"
    _ready_then_watchdog(running.agent_sock, running.agent, "agent")


def test_https_with_the_site_ca_succeeds_and_without_it_fails(running: Running) -> None:
    site = running.site
    ready(running.agent_sock, running.agent, "agent")
    headers = {"Authorization": f"Bearer {site.tokens['viewer']}"}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{site.controller_url}/api/v1/status", headers=headers, timeout=10)  # the public CA bundle
    other = ssl.create_default_context(cadata=kit.make_ca("another CA").pem().decode())
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{site.controller_url}/api/v1/status", headers=headers, verify=other, timeout=10)

    async def agent_side() -> None:  # the controller's own client, as the config sets it up
        with_ca = AgentHttpClient({"ipc-a": site.agent_url}, site.tokens["agent"], ca_file=str(site.ca_file))
        without = AgentHttpClient({"ipc-a": site.agent_url}, site.tokens["agent"])
        try:
            assert (await with_ca.report_json("ipc-a"))["host"] == "ipc-a"
            with pytest.raises(AgentUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
                await without.report_json("ipc-a")
        finally:
            await with_ca.aclose()
            await without.aclose()

    asyncio.run(agent_side())

    def reachable() -> bool:  # the agent's pushes verify the controller with controller.ca_file
        r = httpx.get(f"{site.controller_url}/api/v1/status", headers=headers, verify=ca_context(site), timeout=10)
        return bool(r.json()["hosts"]["ipc-a"]["reachable"])

    wait_until(reachable, timeout=30, describe=lambda: running.agent.text()[-2000:])


def test_sigterm_says_stopping_and_exits_0(running: Running) -> None:
    ready(running.agent_sock, running.agent, "agent")
    for svc, sock in ((running.agent, running.agent_sock), (running.controller, running.ctl_sock)):
        assert svc.stop() == 0, svc.text()
        stopping = sock.wait_for(lambda m: m.fields.get("STOPPING") == "1", 5.0, "STOPPING=1")
        assert stopping.pid == svc.pid


# --- secrets that others can read ------------------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> kit.Site:
    return kit.write_site(tmp_path)


def test_controller_refuses_a_world_readable_token_file(site: kit.Site) -> None:
    path = site.config / "secrets" / "tokens.yaml"
    path.chmod(0o644)
    done = kit.run(["controller", "--config", str(site.config)])
    assert done.returncode == 2, done.stderr
    assert (f"ccfo controller: controller.tokens_file: {path}: readable or writable by others (mode 644); "
            f"run: chmod 600 {path}") in done.stderr
    assert "Traceback" not in done.stderr


def test_agent_refuses_a_world_readable_token_file(site: kit.Site) -> None:
    path = site.config / "secrets" / "agent-token"
    path.chmod(0o604)
    done = kit.run(["agent", "--config", str(site.config), "--host", "ipc-a"])
    assert done.returncode == 1, done.stderr
    assert (f"ccfo agent: hosts.ipc-a.agent.token_file: {path}: readable or writable by others (mode 604); "
            f"run: chmod 600 {path}; refusing to start") in done.stderr
    assert "Traceback" not in done.stderr and site.tokens["agent"] not in done.stderr


@pytest.mark.parametrize(("secret", "field"), [("agent-token", "hosts.ipc-a.agent.token_file"),
                                               ("controller.key", "controller.tls_key_file"),
                                               ("tokens.yaml", "controller.tokens_file")])
def test_every_secret_the_controller_reads_is_checked(site: kit.Site, secret: str, field: str) -> None:
    cfg = load_config(site.config)
    secretfiles.check(cfg, secretfiles.controller_files(cfg.site_model))
    (site.config / "secrets" / secret).chmod(0o640)  # the group ccfo may read: allowed
    secretfiles.check(cfg, secretfiles.controller_files(cfg.site_model))
    (site.config / "secrets" / secret).chmod(0o644)
    with pytest.raises(TokenFileError, match=f"^{re.escape(field)}: .*{re.escape(secret)}: readable"):
        secretfiles.check(cfg, secretfiles.controller_files(cfg.site_model))


@pytest.mark.parametrize(("secret", "field"), [("agent-token", "hosts.ipc-a.agent.token_file"),
                                               ("ipc-a.key", "hosts.ipc-a.agent.tls_key_file")])
def test_every_secret_the_agent_reads_is_checked(site: kit.Site, secret: str, field: str, tmp_path: Path) -> None:
    from agents.runtime import AgentRuntime, Options, StartupError
    cfg = load_config(site.config)
    (site.config / "secrets" / secret).chmod(0o644)
    with pytest.raises(StartupError, match=f"^{re.escape(field)}: .*readable.*; refusing to start"):
        AgentRuntime(cfg, Options("ipc-a", state_dir=tmp_path / "state"))


def test_check_config_names_world_readable_secrets_on_their_lines(site: kit.Site) -> None:
    (site.config / "secrets" / "agent-token").chmod(0o644)
    done = kit.run(["check-config", "--config", str(site.config)])
    assert done.returncode == 0, done.stderr  # a warning: the services are the ones that refuse
    assert "hosts.ipc-a.agent.token_file: warning: secrets/agent-token is readable or writable by others " \
           "(mode 644)" in done.stderr
