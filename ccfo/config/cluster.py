"""The `cluster:` section of site.yaml (controller HA on etcd) and its cross-field checks.

Absent, the controller runs alone with its SQLite journal (the embedded default). Present, every member
runs with the same site.yaml (which member a process is will be given on its command line, not in this
file); the members elect a leader through a lease on etcd (docs/ha.md).

The checks name file:line: fewer than two members (a cluster of one is no HA: drop the section
instead), duplicate member names, URLs or etcd endpoints, and a lease TTL below etcd's minimum. etcd
raises a shorter TTL to its minimum without saying so, which would break the timing rule silently; the
minimum follows from the etcd cluster's own timing flags, given here as `etcd_heartbeat_ms` and
`etcd_election_timeout_ms` (etcd's defaults 100 and 1000 give 2 s).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ccfo.config.yamlpos import Located, PathKey, Problem

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?(/.*)?$")]


def _range(lo: float, hi: float) -> AfterValidator:
    def check(v: float) -> float:
        if not lo <= v <= hi:
            raise ValueError(f"must be {lo:g}..{hi:g}, got {v:g}")
        return v
    return AfterValidator(check)


def etcd_min_lease_ttl_s(heartbeat_ms: int = 100, election_timeout_ms: int = 1000) -> int:
    """etcd's smallest lease TTL (3.4: `minTTL = (3 * electionTicks / 2) * heartbeat`, rounded up to whole
    seconds), with electionTicks = election timeout / heartbeat."""
    ticks = election_timeout_ms // heartbeat_ms
    return math.ceil((3 * ticks // 2) * heartbeat_ms / 1000)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ClusterMemberModel(_Strict):
    """One controller member."""

    name: Name
    """The member's name (unique in the cluster; `ccfo controller --member NAME`)."""
    url: HttpUrl
    """This member's API and dashboard, as the other members and the CLI reach it."""


class ClusterModel(_Strict):
    """Controller high availability on etcd: one leader acts, the others serve reads and take over."""

    members: list[ClusterMemberModel] = Field(min_length=1)
    """The controller members (at least 2, unique names)."""
    etcd_endpoints: list[HttpUrl] = Field(min_length=1)
    """The etcd members' client URLs (v3 JSON gateway)."""
    lease_ttl_s: Annotated[float, _range(1, 600)] = 5.0
    """The leader key's lease; the leader stops acting before it can expire (at least etcd's minimum)."""
    safety_margin_s: Annotated[float, _range(0.1, 300)] | None = None
    """How long before the lease could expire the leader demotes itself (default max(0.5, ttl/5))."""
    etcd_timeout_s: Annotated[float, _range(0.1, 60)] = 2.0
    """Seconds one etcd call may take, over all endpoints."""
    etcd_heartbeat_ms: Annotated[int, _range(1, 60000)] = 100
    """The etcd cluster's --heartbeat-interval (it sets etcd's minimum lease TTL)."""
    etcd_election_timeout_ms: Annotated[int, _range(1, 600000)] = 1000
    """The etcd cluster's --election-timeout."""
    etcd_ca_file: str | None = None
    """https endpoints are verified against this CA (PEM), relative to the config directory."""


def check_cluster(c: ClusterModel | None, loc: Located) -> list[Problem]:
    if c is None:
        return []
    base: PathKey = ("cluster",)
    problems: list[Problem] = []
    if len(c.members) < 2:
        problems.append(loc.problem((*base, "members"), f"a cluster needs at least two members, got "
                                    f"{len(c.members)} (one controller: remove the cluster section)"))
    problems += _duplicates([m.name for m in c.members], (*base, "members"), "name", "member name", loc)
    problems += _duplicates([m.url for m in c.members], (*base, "members"), "url", "member url", loc)
    problems += _duplicates(list(c.etcd_endpoints), (*base, "etcd_endpoints"), None, "etcd endpoint", loc)
    if c.etcd_election_timeout_ms < 5 * c.etcd_heartbeat_ms:
        problems.append(loc.problem((*base, "etcd_election_timeout_ms"),
                                    f"etcd wants an election timeout of at least 5 heartbeats "
                                    f"({5 * c.etcd_heartbeat_ms} ms), got {c.etcd_election_timeout_ms}"))
    minimum = etcd_min_lease_ttl_s(c.etcd_heartbeat_ms, c.etcd_election_timeout_ms)
    if c.lease_ttl_s < minimum:
        problems.append(loc.problem((*base, "lease_ttl_s"),
                                    f"below etcd's minimum lease TTL of {minimum} s (1.5 x its election timeout of "
                                    f"{c.etcd_election_timeout_ms} ms), got {c.lease_ttl_s:g}: etcd would "
                                    f"silently lengthen it"))
    margin = c.safety_margin_s
    if margin is not None and margin >= c.lease_ttl_s / 2:
        problems.append(loc.problem((*base, "safety_margin_s"),
                                    f"must be less than half the lease TTL ({c.lease_ttl_s / 2:g} s), got {margin:g}"))
    return problems


def _duplicates(values: list[str], path: PathKey, field: str | None, what: str, loc: Located) -> list[Problem]:
    seen = Counter[str]()
    out = []
    for i, v in enumerate(values):
        seen[v] += 1
        if seen[v] == 2:
            where = (*path, i, field) if field else (*path, i)
            out.append(loc.problem(where, f"duplicate {what} {v!r}"))
    return out
