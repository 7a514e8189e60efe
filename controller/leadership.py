"""The leadership of a controller that runs alone: it always acts, with no fencing term.

A controller cluster (site.yaml `cluster:`) gives the engine its etcd election instead
(controller.cluster.election.Election), behind the same port (ccfo.ports.Leadership).
"""

from __future__ import annotations


class SoleController:
    def is_acting(self) -> bool:
        return True

    @property
    def term(self) -> int | None:
        return None

    def describe(self) -> str:
        return "the only controller (no cluster)"

    def valid_until(self) -> float | None:
        return None
