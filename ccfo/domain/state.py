"""The site's operating state as the controller keeps it: duties, isolations, active database, mode.

This is controller bookkeeping (what ccfo has decided and done), not observed health: the health
snapshot says what the agents see; this says which host is meant to serve calls. Plans change it only
through their `set_state` step, so a plan that fails half-way leaves it as it was at that point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from ccfo.domain.site import DbSiteId, Duty, Site


class Mode(StrEnum):
    """Like Patroni's pause: every mode observes and decides; they differ in what they may do."""

    AUTOMATIC = "automatic"  # act on detection (subject to hold-down and per-rule approval)
    SUPERVISED = "supervised"  # detect, propose the plan, wait for an operator's approval (default)
    MANUAL = "manual"  # report; only operator-triggered plans run
    MAINTENANCE = "maintenance"  # detect and report, never act on detection (weekend upgrade)


@dataclass(frozen=True, slots=True)
class HostState:
    duty: Duty
    board_isolated: bool = False

    @property
    def in_service(self) -> bool:
        """True when this host's board carries calls for the site."""
        return self.duty is not Duty.OUT and not self.board_isolated


@dataclass(frozen=True, slots=True)
class SiteState:
    hosts: Mapping[str, HostState]
    active_db: DbSiteId
    mode: Mode = Mode.SUPERVISED
    last_automatic_at: float | None = None
    down_db_sites: frozenset[str] = field(default_factory=frozenset)

    @staticmethod
    def normal(site: Site, mode: Mode = Mode.SUPERVISED) -> SiteState:
        """Every host in its home duty, boards in service, the configured database active."""
        return SiteState({h.id: HostState(Duty(h.role.value)) for h in site.hosts}, site.active_db, mode)

    def host(self, host_id: str) -> HostState:
        return self.hosts[host_id]

    @property
    def active_host(self) -> str | None:
        return next((h for h, s in self.hosts.items() if s.duty.active), None)

    def with_host(self, host_id: str, **changes: object) -> SiteState:
        hosts = dict(self.hosts)
        hosts[host_id] = replace(hosts[host_id], **changes)  # type: ignore[arg-type]
        return replace(self, hosts=hosts)

    def serving_channels(self, site: Site) -> dict[str, int]:
        """Channels per host that count toward capacity: a host counts when its board is in service and
        some host runs CTI/IVR (the active CTI/IVR serves both boards, per the source plan)."""
        if self.active_host is None:
            return {h.id: 0 for h in site.hosts}
        return {h.id: h.channels if self.hosts[h.id].in_service else 0 for h in site.hosts}

    def to_dict(self) -> dict[str, object]:
        return {
            "hosts": {h: {"duty": s.duty.value, "board_isolated": s.board_isolated} for h, s in self.hosts.items()},
            "active_db": self.active_db,
            "mode": self.mode.value,
            "last_automatic_at": self.last_automatic_at,
            "down_db_sites": sorted(self.down_db_sites),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> SiteState:
        hosts = {h: HostState(Duty(v["duty"]), bool(v["board_isolated"])) for h, v in d["hosts"].items()}
        return SiteState(hosts, DbSiteId(d["active_db"]), Mode(d["mode"]), d.get("last_automatic_at"),
                         frozenset(d.get("down_db_sites", ())))

    def apply(self, change: Mapping[str, Any]) -> SiteState:
        """Apply a plan's set_state step."""
        out = self
        for h, duty in change.get("duties", {}).items():
            out = out.with_host(h, duty=Duty(duty))
        for h, iso in change.get("board_isolated", {}).items():
            out = out.with_host(h, board_isolated=bool(iso))
        if "active_db" in change:
            out = replace(out, active_db=DbSiteId(change["active_db"]))
        return out

    def is_normal(self, site: Site) -> bool:
        return self == replace(SiteState.normal(site, self.mode), last_automatic_at=self.last_automatic_at,
                               active_db=self.active_db, down_db_sites=self.down_db_sites)
