"""One controller member's HA parts, built from the loaded config: the etcd client, the election, the
presence key and the cluster view, with the tasks that run them (the composition root starts and
closes this; nothing here touches the engine).

    node = ClusterNode.from_config(cfg, member="ctl-a")   # ClusterConfigError: no cluster / unknown member
    await node.start()        # logs a clear line naming the endpoints if etcd cannot be reached; keeps trying
    node.election.is_acting() / node.election.term        # what the engine asks before each step
    await node.aclose()       # resigns (revokes the lease) and closes the client

At start-up an unreachable etcd is not fatal: the member serves read-only status while its election
keeps retrying; `start()` returns the probe's error (EtcdUnavailable, naming every endpoint) so the
caller can log or show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ccfo.clients.etcd import EtcdClient, EtcdError
from ccfo.config.loader import LoadedConfig
from controller.cluster.election import Election, Leadership
from controller.cluster.members import ClusterView, MemberInfo, Presence

log = logging.getLogger("ccfo.cluster")


class ClusterConfigError(ValueError):
    """The config has no cluster section, or does not name this member."""


class ClusterNode:
    def __init__(self, client: EtcdClient, site: str, me: MemberInfo, members: list[MemberInfo], *,
                 lease_ttl_s: float, safety_margin_s: float | None = None,
                 on_change: Callable[[Leadership], None] | None = None) -> None:
        self.client = client
        self.me = me
        self.election = Election(client, site, me.name, lease_ttl_s=lease_ttl_s, safety_margin_s=safety_margin_s,
                                 on_change=on_change)
        self.presence = Presence(client, site, me, ttl_s=lease_ttl_s)
        self.view = ClusterView(client, site, self.election, members)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_config(cls, cfg: LoadedConfig, member: str,
                    on_change: Callable[[Leadership], None] | None = None) -> ClusterNode:
        c = cfg.site_model.cluster
        if c is None:
            raise ClusterConfigError("site.yaml has no cluster: section (single-controller mode)")
        members = [MemberInfo(m.name, m.url) for m in c.members]
        me = next((m for m in members if m.name == member), None)
        if me is None:
            raise ClusterConfigError(f"member {member!r} is not in cluster.members "
                                     f"({', '.join(m.name for m in members)})")
        ca = str(cfg.resolve(c.etcd_ca_file)) if c.etcd_ca_file else None
        client = EtcdClient(c.etcd_endpoints, timeout_s=c.etcd_timeout_s, ca_file=ca)
        return cls(client, cfg.site_model.site.name, me, members, lease_ttl_s=c.lease_ttl_s,
                   safety_margin_s=c.safety_margin_s, on_change=on_change)

    async def start(self) -> EtcdError | None:
        """Probe etcd once (a clear log line when it cannot be reached), then run the election and the
        presence key in owned tasks, which keep retrying whatever the probe said."""
        problem: EtcdError | None = None
        try:
            await self.client.get(self.election.key)
        except EtcdError as exc:
            problem = exc
            log.error("%s: %s; serving read-only status and retrying", self.me.name, exc)
        self._tasks = [asyncio.create_task(self.election.run(), name=f"election-{self.me.name}"),
                       asyncio.create_task(self.presence.run(), name=f"presence-{self.me.name}")]
        return problem

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []
        await self.client.aclose()
