"""What a fault-campaign run does, drawn from its seed: the events (faults, repairs, operator actions,
controller kills) and the pauses between them.

With a controller cluster (`Topology.controllers`, `ccfo lab campaign --controllers 3`) the single
controller's kill gives way to the cluster's events (`HA_WEIGHTS`): the leader killed (kill -9) or paused
(SIGSTOP, for less or more than the lease), a named member killed, an etcd member killed, and with
network namespaces (`Topology.partitions`) a partition (link cut) of a controller, of an etcd member or of
an IPC host. A single-controller topology draws exactly what it drew before (replays stay valid).

Pure: no I/O, no clock, no global random state. `draw_run(seed, run, topology)` uses only
`random.Random(f"{seed}:{run}")`, so `ccfo lab campaign --seed S --run I` replays run I's sequence
exactly. The runner (lab.campaign) carries the events out; the checker (lab.campaign_check) judges.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

MODES = ("automatic", "supervised", "manual", "maintenance")
ALARMS = ("red", "yellow", "blue")
MIN_EVENTS, MAX_EVENTS = 3, 8
MAX_GAP_S = 3.0
MAX_BURSTS = 2  # per run: bursts of simultaneous operator requests (issue 19)
BURST_SIZE = (3, 8)


@dataclass(frozen=True, slots=True)
class Topology:
    """What the draw may name: hosts with their spans and services, database sites, the primary."""

    spans: Mapping[str, tuple[int, ...]]
    services: Mapping[str, tuple[str, ...]]
    db_sites: tuple[str, ...]
    primary: str
    controllers: tuple[str, ...] = ()  # cluster members (ctl-a, ...); empty: one controller
    etcd: tuple[str, ...] = ()  # etcd members (etcd1, ...)
    partitions: bool = False  # the lab runs in network namespaces: links can be cut

    @property
    def clustered(self) -> bool:
        return len(self.controllers) > 1

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(self.spans)

    @classmethod
    def from_site(cls, site: Mapping[str, object]) -> Topology:
        hosts: Mapping[str, Mapping[str, object]] = site["hosts"]  # type: ignore[assignment]
        spans = {h: tuple(int(s["span"]) for s in spec["board"]["spans"])  # type: ignore[index]
                 for h, spec in hosts.items()}
        services = {h: tuple(spec["services"]) for h, spec in hosts.items()}  # type: ignore[arg-type]
        primary = next(h for h, spec in hosts.items() if spec["role"] == "primary")
        dbs: Mapping[str, object] = site["databases"]["sites"]  # type: ignore[index]
        cluster: Mapping[str, Any] = site.get("cluster") or {}  # type: ignore[assignment]
        members = tuple(str(m["name"]) for m in cluster.get("members", ()))
        return cls(spans, services, tuple(dbs), primary, members)

    def with_cluster(self, etcd: tuple[str, ...], partitions: bool) -> Topology:
        return replace(self, etcd=etcd, partitions=partitions)


# The example site (config/site.yaml), for tests and for drawing without a lab.
EXAMPLE = Topology({"ipc-a": (1, 2), "ipc-b": (1,)},
                   {h: ("cti", "ivr", "kcxp", "kcbp", "kcxp-replica", "kcbp-replica") for h in ("ipc-a", "ipc-b")},
                   ("shenzhen", "shanghai"), "ipc-a")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the campaign does, then `gap_s` of quiet before the next one."""

    kind: str
    args: tuple[str, ...] = ()
    gap_s: float = 0.0

    def describe(self) -> str:
        return " ".join((self.kind, *self.args)) + f" (+{self.gap_s:.2f}s)"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "args": list(self.args), "gap_s": self.gap_s}


# kind -> weight. Faults and their repairs, process-level faults, operator actions, controller crashes.
WEIGHTS: Mapping[str, float] = {
    "span_alarm": 3.0, "span_clear": 2.0, "board_down": 1.5, "board_up": 1.0,
    "service_crash": 3.0, "service_hang": 1.0, "unreachable": 1.0, "reachable": 1.0,
    "db_down": 1.5, "db_up": 1.0, "controller_kill": 1.5, "agent_restart": 1.0,
    "failover": 1.0, "switchover": 1.0, "failback": 1.0, "approve": 2.0, "reject": 1.0, "mode": 1.0,
}


# With a controller cluster, instead of controller_kill: the cluster's own faults.
HA_WEIGHTS: Mapping[str, float] = {"leader_kill": 1.5, "leader_pause": 1.5, "member_kill": 1.0, "etcd_kill": 1.0}
PARTITION_WEIGHT = 2.0  # `partition`, when the lab runs in network namespaces
LEASE_PAUSES = (1.0, 9.0)  # leader_pause lasts this long: below and above the lab's 5 s lease


def weights_for(topo: Topology) -> dict[str, float]:
    """The event mix of a topology: the historical one for one controller, the cluster's otherwise."""
    if not topo.clustered:
        return dict(WEIGHTS)
    mix = {k: v for k, v in WEIGHTS.items() if k != "controller_kill"}
    mix.update(HA_WEIGHTS)
    if topo.partitions:
        mix["partition"] = PARTITION_WEIGHT
    return mix


@dataclass(frozen=True, slots=True)
class RunPlan:
    seed: str
    run: int
    events: tuple[Event, ...] = field(default_factory=tuple)

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out


def _host(rng: random.Random, topo: Topology) -> str:
    """The primary a little more often: it is the one whose faults move CTI/IVR."""
    hosts = topo.hosts
    return topo.primary if rng.random() < 0.6 else rng.choice([h for h in hosts if h != topo.primary] or hosts)


def _args(kind: str, rng: random.Random, topo: Topology) -> tuple[str, ...]:
    if kind in ("span_alarm", "span_clear"):
        host = _host(rng, topo)
        span = str(rng.choice(topo.spans[host]))
        return (host, span, rng.choice(ALARMS)) if kind == "span_alarm" else (host, span)
    if kind in ("board_down", "board_up", "unreachable", "reachable", "agent_restart"):
        return (_host(rng, topo),)
    if kind in ("service_crash", "service_hang"):
        host = _host(rng, topo)
        # CTI and IVR most often: their faults are the ones that move the site.
        svc = rng.choice(("cti", "ivr")) if rng.random() < 0.6 else rng.choice(topo.services[host])
        return host, svc
    if kind in ("db_down", "db_up"):
        return (rng.choice(topo.db_sites),)
    if kind == "controller_kill":
        # when: now, or as soon as a plan runs (mid-plan); then how long it stays dead before the restart
        return rng.choice(("now", "mid-plan")), f"{rng.uniform(0.0, 1.0):.2f}"
    if kind in ("leader_kill", "leader_pause"):
        # when: now, or as soon as a plan runs; then how long it stays dead or frozen
        when = rng.choice(("now", "mid-plan"))
        if kind == "leader_kill":
            return when, f"{rng.uniform(0.0, 3.0):.2f}"
        return when, f"{rng.uniform(*LEASE_PAUSES):.2f}"
    if kind == "member_kill":
        return rng.choice(topo.controllers), f"{rng.uniform(0.0, 3.0):.2f}"
    if kind == "etcd_kill":
        return rng.choice(topo.etcd), f"{rng.uniform(0.0, 5.0):.2f}"
    if kind == "partition":
        # what is cut off: the leader, a named controller, an etcd member or an IPC host (the primary more
        # often); then for how long (below and above the lease)
        what = rng.choices(("leader", "controller", "etcd", "host"), (2.0, 1.0, 1.0, 2.0))[0]
        target = ("leader" if what == "leader" else f"controller:{rng.choice(topo.controllers)}"
                  if what == "controller" else f"etcd:{rng.choice(topo.etcd)}" if what == "etcd"
                  else f"host:{_host(rng, topo)}")
        return target, f"{rng.uniform(1.0, 12.0):.2f}"
    if kind == "failover":
        return (rng.choice(topo.hosts),)
    if kind == "switchover":
        return rng.choice(topo.hosts), f"{rng.uniform(0.0, 2.0):.1f}"
    if kind == "failback":
        return (f"{rng.uniform(0.0, 2.0):.1f}",)
    if kind == "mode":
        return (rng.choice(MODES),)
    return ()  # approve, reject: the first proposal the controller shows at that moment


def burst_requests(rng: random.Random, topo: Topology) -> tuple[str, ...]:
    """Several operators at once: 3-8 requests sent in the same instant ("KIND[:ARG[:ARG]]": failover:HOST,
    switchover:HOST:DRAIN_S, failback:DRAIN_S, approve), with plans in opposite directions among them."""
    out: list[str] = []
    for _ in range(rng.randint(*BURST_SIZE)):
        kind = rng.choice(("failover", "switchover", "failback", "approve"))
        if kind == "failover":
            out.append(f"failover:{rng.choice(topo.hosts)}")
        elif kind == "switchover":
            out.append(f"switchover:{rng.choice(topo.hosts)}:{rng.uniform(0.0, 2.0):.1f}")
        elif kind == "failback":
            out.append(f"failback:{rng.uniform(0.0, 2.0):.1f}")
        else:
            out.append("approve")
    targets = {r.split(":")[1] for r in out if r.startswith(("failover:", "switchover:"))}
    for host in topo.hosts:  # both directions, always
        if host not in targets:
            out.insert(rng.randint(0, len(out)), f"switchover:{host}:{rng.uniform(0.0, 2.0):.1f}")
    return tuple(out)


def draw_run(seed: str | int, run: int, topo: Topology = EXAMPLE,
             weights: Mapping[str, float] | None = None) -> RunPlan:
    """Run `run` of campaign `seed`: 3-8 events, each followed by a 0-3 s pause (mean 0.75 s), and 0-2
    bursts of simultaneous operator requests. The bursts come from a random stream of their own, so the
    other events of a run are the ones it drew before bursts existed (older reports replay). `weights`
    overrides some kinds' weights (`--weight service_hang=6`): another campaign, with its own draws."""
    rng = random.Random(f"{seed}:{run}")
    mix = {**weights_for(topo), **(weights or {})}
    kinds, weights_ = list(mix), list(mix.values())
    events = []
    for _ in range(rng.randint(MIN_EVENTS, MAX_EVENTS)):
        kind = rng.choices(kinds, weights_)[0]
        args = _args(kind, rng, topo)
        gap = round(MAX_GAP_S * rng.random() ** 3, 2)
        events.append(Event(kind, args, gap))
    bursts = random.Random(f"{seed}:{run}:burst")
    for _ in range(bursts.randint(0, MAX_BURSTS)):
        at = bursts.randint(0, len(events))
        events.insert(at, Event("burst", burst_requests(bursts, topo), round(MAX_GAP_S * bursts.random() ** 3, 2)))
    return RunPlan(str(seed), run, tuple(events))


def replay_command(seed: str | int, run: int, weights: Mapping[str, float] | None = None) -> str:
    extra = "".join(f" --weight {k}={v:g}" for k, v in sorted((weights or {}).items()))
    return f"ccfo lab campaign --seed {seed}{extra} --run {run}"
