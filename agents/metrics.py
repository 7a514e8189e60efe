"""The agent's Prometheus metrics, served at GET /metrics on the agent's API port (docs/operations.md).

One `AgentMetrics` per agent, with its own `CollectorRegistry` (no global registry: two agents in one
process, as in the tests, never share series). Most values are read at scrape time from the parts that
already count them (the AMI monitor's events by class and connection count, the admission server's
decisions, the SNMP responder's notifications, the AMI snapshot's capacity); the report push latency is
observed by the reporter as each push ends. Label values come from small closed sets (event class names
are capped at `MAX_EVENT_CLASSES`, the rest counted as "other"), so a noisy peer cannot blow up the series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_EVENT_CLASSES = 200
PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

class AgentMetrics:
    """The registry of one agent; `bind()` the live parts once they exist, `render()` on every scrape."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.registry = CollectorRegistry(auto_describe=True)
        self.report_push = Histogram("ccfo_agent_report_push_seconds",
                                     "Time to push one host report to the controller, by result",
                                     ["result"], buckets=PUSH_BUCKETS, registry=self.registry)
        self._sources: dict[str, Callable[[], Any]] = {}
        self.registry.register(_Live(self))

    def bind(self, **sources: Callable[[], Any]) -> None:
        """Name the live parts: ami, admission, responder, services (each a callable returning it or None)."""
        self._sources.update(sources)

    def source(self, name: str) -> Any:
        get = self._sources.get(name)
        return get() if get is not None else None

    def observe_push(self, seconds: float, ok: bool) -> None:
        self.report_push.labels("ok" if ok else "failed").observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Families computed at scrape time from the agent's live parts."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Metric]:
        return []  # computed on collect; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        m, host = self.m, self.m.host
        ami = m.source("ami")
        snap = ami.snapshot() if ami is not None else None
        events = CounterMetricFamily("ccfo_agent_ami_events", "AMI events received from Asterisk, by event class",
                                     labels=["event"])
        for name, n in sorted(_mapping(getattr(ami, "events_by_class", None)).items()):
            events.add_metric([name], n)
        yield events
        link = getattr(ami, "link", None)
        connects = int(getattr(link, "connects", 0) or 0)
        yield CounterMetricFamily("ccfo_agent_ami_reconnects", "AMI logins after the first (reconnections)",
                                  value=max(0, connects - 1))
        connected = GaugeMetricFamily("ccfo_agent_ami_connected", "1 while the AMI session is logged in",
                                      labels=["host"])
        connected.add_metric([host], 1.0 if snap is not None and snap.connected else 0.0)
        yield connected
        yield from _capacity(host, snap)
        admission = m.source("admission")
        admissions = CounterMetricFamily("ccfo_agent_admissions",
                                         "FastAGI admission answers, by result and reason", labels=["result", "reason"])
        by = _mapping(getattr(getattr(admission, "stats", None), "by_result_reason", None))
        for (result, reason), n in sorted(by.items()):
            admissions.add_metric([result, reason], n)
        yield admissions
        responder = m.source("responder")
        notes = CounterMetricFamily("ccfo_agent_snmp_notifications", "SNMP notifications sent, by notification",
                                    labels=["notification"])
        for kind, n in sorted(_mapping(getattr(responder, "notifications_by_kind", None)).items()):
            notes.add_metric([kind], n)
        yield notes
        services = m.source("services")
        active = GaugeMetricFamily("ccfo_agent_service_active", "1 while a managed service is active",
                                   labels=["host", "service"])
        for name, state in sorted(_mapping(services).items()):
            active.add_metric([host, name], 1.0 if str(state) == "active" else 0.0)
        yield active


def _capacity(host: str, snap: Any) -> Iterator[Metric]:
    """C, X, Y and free channels as this host's AMI sees them; spans by health. Empty while AMI is down."""
    live = snap is not None and snap.connected
    for name, help_, value in (
            ("ccfo_agent_channels", "C: channels in service on healthy spans and SIP trunks that are up",
             "channels_available"),
            ("ccfo_agent_free_channels", "Channels free for a new call (C - X - 2Y)", "channels_free")):
        g = GaugeMetricFamily(name, help_ + " (absent while AMI is down)", labels=["host"])
        if live:
            g.add_metric([host], float(getattr(snap, value)))
        yield g
    for name, help_, attr in (("ccfo_agent_ivr_calls", "X: calls in the IVR", "ivr"),
                              ("ccfo_agent_agent_calls", "Y: calls transferred to an agent", "agent")):
        g = GaugeMetricFamily(name, help_ + " (absent while AMI is down)", labels=["host"])
        if live:
            g.add_metric([host], float(getattr(snap.calls, attr)))
        yield g
    spans = GaugeMetricFamily("ccfo_agent_span_healthy", "1 while a span carries calls (no alarm, D-channel up)",
                              labels=["host", "span"])
    for s in snap.spans if live else ():
        spans.add_metric([host, str(s.span)], 1.0 if s.healthy else 0.0)
    yield spans
    trunks = GaugeMetricFamily("ccfo_agent_trunk_up", "1 while Asterisk sees the SIP trunk reachable (absent: unknown)",
                               labels=["host", "trunk"])
    for t in getattr(snap, "trunks", ()) if live else ():
        if t.state in ("up", "down"):
            trunks.add_metric([host, str(t.name)], 1.0 if t.state == "up" else 0.0)
    yield trunks


def _mapping(value: Any) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if callable(value):
        value = value()
    return value if isinstance(value, Mapping) else {}
