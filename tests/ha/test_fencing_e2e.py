"""A paused leader is harmless, end to end: real etcd (election and guarded writes) and a real agent over
HTTP. Leader A passes its "may I act" check, then is paused past its lease; B takes over with a higher
term and acts; when A resumes and sends the action it had decided on, the agent refuses it (409 naming
both terms, TermRefused at the controller's client) and A's state write fails (NotLeader). The pause is
modelled by revoking A's lease (what its expiry does) while A's own clock stands still."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.api import create_app
from agents.server import ApiServer
from agents.terms import TermStore
from ccfo.clients.agent_http import AgentHttpClient, TermRefused
from ccfo.clients.etcd import EtcdClient, Put
from controller.cluster.election import Election, NotLeader
from lab.etcd import EtcdCluster
from tests.agents.test_api_helpers import TOKEN, executions, make_host


class StillClock:
    """A's clock while it is paused: it does not see time pass."""

    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.asyncio
async def test_a_resumed_deposed_leader_cannot_make_an_agent_act(etcd3: EtcdCluster, tmp_path: Path) -> None:
    host = make_host(tmp_path)
    host.executor.terms = TermStore(tmp_path / "term.json")
    server = ApiServer(create_app("ipc-a", [TOKEN], host.report.build, host.executor), "127.0.0.1", 0)
    await server.start()
    agent = AgentHttpClient({"ipc-a": server.url}, TOKEN.secret, timeout_s=15)
    etcd = EtcdClient(etcd3.endpoints)
    try:
        a = Election(etcd, "fence", "ctl-a", lease_ttl_s=5, clock=StillClock())
        await a.campaign()
        assert a.term is not None and a.is_acting()
        assert (await agent.action("ipc-a", "p1-0", "start", service="cti", term=a.term)).ok

        assert a.is_acting()  # A decides to stop cti, checks it may act ... and is paused here
        assert a._lease is not None
        await etcd.lease_revoke(a._lease)  # ... long enough for its lease to run out
        b = Election(etcd, "fence", "ctl-b", lease_ttl_s=5)
        await b.campaign()
        assert b.term is not None and b.term > a.term
        assert (await agent.action("ipc-a", "p2-0", "restart", service="cti", term=b.term)).ok
        await b.guarded_txn([Put("/ccfo/fence/plans/p2", "step 0 done")])

        # A resumes and carries out what it had decided: the agent refuses, and so does etcd
        with pytest.raises(TermRefused) as err:
            await agent.action("ipc-a", "p1-1", "stop", service="cti", term=a.term)
        assert (err.value.term, err.value.highest) == (a.term, b.term)
        with pytest.raises(NotLeader):
            await a.guarded_txn([Put("/ccfo/fence/plans/p1", "step 1 done")])
        assert executions(tmp_path / "run", "cti") == ["start", "stop", "start"]  # start, then B's restart only
        assert (await etcd.get("/ccfo/fence/plans/p1")).first is None
        assert host.executor.terms.highest == b.term
    finally:
        await etcd.aclose()
        await agent.aclose()
        await server.stop()
        await host.executor.aclose()
        host.stop_daemons()
