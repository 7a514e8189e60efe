"""The read model of the controller: the site status as JSON, which the API, `ccfo status`, the metrics and
the checklists' checks read (so a check sees what an operator sees). Reads the engine, changes nothing."""

from __future__ import annotations

from typing import Any

from ccfo.domain.capacity import live_channels, max_ivr_calls
from ccfo.domain.health import HostHealth
from ccfo.domain.site import Site
from ccfo.domain.state import Mode, SiteState
from controller.journal import JournalEntry


def site_state_label(site: Site, state: SiteState, faults: int) -> str:
    """The banner: maintenance, failed over, degraded or normal."""
    if state.mode is Mode.MAINTENANCE:
        return "maintenance"
    active = state.active_host
    if active is None:
        return "down"
    if site.host(active).role.value != "primary":
        return "failed over"
    if faults or any(not hs.in_service for hs in state.hosts.values()):
        return "degraded"
    return "normal"


def host_capacity(site: Site, state: SiteState, host_id: str, health: HostHealth | None) -> dict[str, Any]:
    host = site.host(host_id)
    serving = state.serving_channels(site)[host_id]
    if health is not None and serving:
        healthy = live_channels((s.channels for s in health.spans if s.healthy),
                                (t.channels for t in health.trunks if t.healthy))
        serving = min(serving, healthy) if health.ami_connected else 0
    x = health.ivr_calls if health else 0
    y = health.agent_calls if health else 0
    pol = site.capacity
    used = x * pol.channels_per_ivr_call + y * pol.channels_per_agent_call
    more = max(0, serving - pol.reserve_for_transfers - used) // pol.channels_per_ivr_call
    step = max(1, pol.channels_per_agent_call - pol.channels_per_ivr_call)  # what a transfer adds
    return {"channels": serving, "board_channels": host.board.channels,
            "trunk_channels": sum(t.channels for t in host.trunks), "ivr_calls": x, "agent_calls": y,
            "fax_calls": health.fax_calls if health else 0, "fax_channels": host.fax_channels, "used": used,
            "free": max(0, serving - used), "reserve": pol.reserve_for_transfers, "more_ivr_calls": more,
            "more_agent_transfers": min(x, max(0, serving - used) // step),
            "max_ivr_calls_alone": max_ivr_calls(serving, 0, pol) or 0}


def _trunks(host: Any, health: HostHealth | None) -> list[dict[str, Any]]:
    """Every configured trunk with its reported state (unknown when the agent did not report it)."""
    seen = {t.name: t for t in (health.trunks if health else ())}
    return [{"name": t.name, "driver": t.driver.value, "channels": t.channels,
             "state": seen[t.name].state if t.name in seen else "unknown"} for t in host.trunks]


def status(engine: Any) -> dict[str, Any]:
    site, state, snap, decision = engine.site, engine.state, engine.snap, engine.decision
    present = engine.tracker.present()
    active = engine.tracker.active(engine.clock.now(), lambda f: 0.0)
    hosts: dict[str, Any] = {}
    for host in site.hosts:
        hs = state.host(host.id)
        view = snap.hosts.get(host.id) if snap else None
        health = view.health if view else None
        hosts[host.id] = {
            "role": host.role.value, "duty": hs.duty.value, "active": hs.duty.active,
            "board_isolated": hs.board_isolated, "reachable": bool(view and view.reachable),
            "report_age_s": view.age_s if view else None,
            "ami_connected": health.ami_connected if health else None,
            "ami_state": ("up" if health.ami_connected else "hung" if health.ami_hung else "lost") if health else None,
            "driver": health.driver.value if health else "unknown",
            "spans": [{"span": s.span, "alarm": s.alarm, "dchannel_up": s.dchannel_up, "channels": s.channels}
                      for s in (health.spans if health else ())],
            "trunks": _trunks(host, health),
            "services": {n: st.value for n, st in (health.services.items() if health else ())},
            "db_site": health.db_site if health else None,
            "capacity": host_capacity(site, state, host.id, health),
        }
    agents = sum(h["capacity"]["agent_calls"] for h in hosts.values())
    more = sum(h["capacity"]["more_ivr_calls"] for h in hosts.values())
    return {
        "site": site.name,
        "state": site_state_label(site, state, len(present)),
        "mode": state.mode.value,
        "active_host": state.active_host,
        "active_db": state.active_db,
        "hosts": hosts,
        "faults": [{"fault": str(f), "kind": f.kind.value, "host": f.host, "db_site": f.db_site, "since": since,
                    "active": f in active}
                   for f, since in sorted(present.items(), key=lambda kv: kv[1])],
        "flapping": sorted(str(f) for f in engine.tracker.flapping()),
        "decision": decision.to_dict() if decision else None,
        "capacity": {"channels": sum(h["capacity"]["channels"] for h in hosts.values()), "agent_calls": agents,
                     "more_ivr_calls": more,
                     "line": f"with {agents} agent call(s), {more} more IVR call(s) fit"},
        "running_plan": engine.running.to_dict() if engine.running else None,
        "waiting_confirmation": [{"plan_id": p, "host": h} for p, h in engine.executor.waiting_confirmation()],
        "cycles": engine.cycles,
        "datacenters": list(site.datacenters),
        "servers": servers(engine),
    }


def servers(engine: Any) -> dict[str, Any]:
    """The managed servers by name: where and what they are, and their last heartbeat (reachable while it is
    younger than missed_heartbeats heartbeats, like a host)."""
    now, out = engine.clock.now(), {}
    for server in engine.site.servers:
        health, jobs = engine.server_reports.get(server.id, (None, []))
        age = now - health.received_at if health is not None else None
        out[server.id] = {
            "datacenter": server.datacenter, "kind": server.kind.value, "role": server.role.value,
            "reachable": age is not None and age <= engine.missed * engine.heartbeat_s, "report_age_s": age,
            "services": {n: st.value for n, st in (health.services.items() if health else ())},
            "db_site": health.db_site if health else None,
            "jobs": [{k: j.get(k) for k in ("name", "backend", "state", "next_run")} for j in jobs],
        }
    return out


def entry_dict(e: JournalEntry) -> dict[str, Any]:
    """A journal entry as the API, the CLI and the drills read it."""
    return {"id": e.id, "ts": e.ts, "kind": e.kind, "host": e.host, "plan_id": e.plan_id, "step": e.step,
            "actor": e.actor, "reason": e.reason, "status": e.status, "duration_s": e.duration_s, "data": e.data}
