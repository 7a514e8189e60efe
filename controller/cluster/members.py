"""Who is in the cluster: each member's presence key on etcd, and the cluster view the API shows.

Every member keeps `/ccfo/<site>/members/<name>` (its API URL) alive under a lease of its own, as
Patroni keeps its member keys: a member whose key is gone (its process died, or it is cut from etcd's
quorum) is shown "unreachable". The leader is the holder of the leader key as this member's election
last saw it. Reading the view costs one range on etcd, under a short timeout; when etcd cannot be read,
the view says so (`etcd_reachable: false`) and shows only what this member knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ccfo.clients.etcd import EtcdClient, EtcdError, LeaseNotFound
from controller.cluster.election import Election

log = logging.getLogger("ccfo.cluster")


def members_prefix(site: str) -> str:
    return f"/ccfo/{site}/members/"


@dataclass(frozen=True, slots=True)
class MemberInfo:
    name: str
    url: str


class Presence:
    """Keeps this member's presence key alive (re-created after a lease loss) until cancelled."""

    def __init__(self, client: EtcdClient, site: str, me: MemberInfo, *, ttl_s: float = 5.0) -> None:
        self.client = client
        self.key = members_prefix(site) + me.name
        self.value = json.dumps({"name": me.name, "url": me.url})
        self.ttl_s = ttl_s
        self._lease: int | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    if self._lease is None:
                        lease = await self.client.lease_grant(math.ceil(self.ttl_s))
                        await self.client.put(self.key, self.value, lease=lease.id)
                        self._lease = lease.id
                    else:
                        await self.client.lease_keepalive(self._lease)
                except LeaseNotFound:
                    self._lease = None
                    continue
                except EtcdError as exc:
                    log.info("presence of %s not renewed: %s", self.key, exc)
                await asyncio.sleep(self.ttl_s / 3)  # the renewal period of the presence lease
        finally:
            if self._lease is not None:
                with contextlib.suppress(EtcdError):
                    await asyncio.shield(self.client.lease_revoke(self._lease, timeout_s=1.0))


class ClusterView:
    """The `GET /api/v1/cluster` answer for one member."""

    def __init__(self, client: EtcdClient, site: str, election: Election, members: Sequence[MemberInfo], *,
                 read_timeout_s: float = 1.0) -> None:
        self.client = client
        self.site = site
        self.election = election
        self.members = tuple(members)
        self.read_timeout_s = read_timeout_s
        # the engine's leadership (service.py sets it): acting only once the site state is taken over
        self.acting: Callable[[], bool] = election.is_acting

    def is_leader(self) -> bool:
        """What `GET /leader` answers: this member is the leader and acts now, its lease alive and the site
        state taken over from etcd. Answering 200 from election to takeover sent the load balancer's (and
        the CLI's) changes to a member that refused them with 409 "taking the site state over"; the
        campaign's repair hit it after a leader kill."""
        return self.acting()

    async def read(self) -> dict[str, Any]:
        present: set[str] | None
        try:
            got = await self.client.get(members_prefix(self.site), prefix=True, timeout_s=self.read_timeout_s)
            present = {kv.key.rsplit("/", 1)[-1] for kv in got.kvs}
        except EtcdError as exc:
            log.info("cluster view: etcd not readable: %s", exc)
            present = None
        snap = self.election.snapshot()
        roles = []
        for m in self.members:
            if m.name == snap.leader and (present is None or m.name in present or m.name == self.election.name):
                role = "leader"
            elif m.name == self.election.name or (present is not None and m.name in present):
                role = "follower"
            else:
                role = "unreachable"
            roles.append({"name": m.name, "url": m.url, "role": role})
        return {"leader": snap.leader, "term": snap.term, "lease_ttl_s": self.election.timing.lease_ttl_s,
                "me": self.election.name, "acting": self.acting(), "etcd_reachable": present is not None,
                "members": roles}
