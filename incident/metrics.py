"""Prometheus metrics of the incident agent, on an injected registry (names from docs/contracts.md).

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = IncidentMetrics(reg)
>>> m.observe_events([{"status": "firing", "severity": "P2", "type": "missing_data"}])
>>> m.set_open({"P1": 0, "P2": 1, "P3": 0, "P4": 0})
>>> reg.get_sample_value("breeboost_incident_events_total",
...                      {"status": "firing", "severity": "P2", "type": "missing_data"})
1.0
>>> incident_metrics(reg) is incident_metrics(reg)
True
"""
from __future__ import annotations

import weakref
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["IncidentMetrics", "incident_metrics"]


class IncidentMetrics:
    """The incident agent's series: events, open incidents, webhook deliveries, stats processed."""

    def __init__(self, registry: CollectorRegistry) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise ValueError("registry: expected a prometheus_client.CollectorRegistry")
        self.registry = registry
        self.events = Counter("breeboost_incident_events", "Incident events published, by status, severity and type",
                              ["status", "severity", "type"], registry=registry)
        self.open = Gauge("breeboost_incidents_open", "Firing incidents, by severity", ["severity"],
                          registry=registry)
        self.webhook = Counter("breeboost_webhook_deliveries",
                               "Webhook sink outcomes: delivered, failed (gave up), retried, dropped (queue full)",
                               ["sink", "outcome"], registry=registry)
        self.stats_processed = Counter("breeboost_drift_stats_processed",
                                       "drift.stats payloads evaluated by the incident policy", registry=registry)
        _BY_REGISTRY[registry] = self

    def observe_events(self, events: Iterable[Mapping]) -> None:
        for e in events:
            self.events.labels(str(e.get("status")), str(e.get("severity")), str(e.get("type"))).inc()

    def set_open(self, counts: Mapping[str, int]) -> None:
        for sev, n in counts.items():
            self.open.labels(sev).set(n)


_BY_REGISTRY: "weakref.WeakKeyDictionary[CollectorRegistry, IncidentMetrics]" = weakref.WeakKeyDictionary()


def incident_metrics(registry: CollectorRegistry) -> IncidentMetrics:
    """The one :class:`IncidentMetrics` of ``registry`` (created on first use): sinks and agent share it."""
    m = _BY_REGISTRY.get(registry)
    if m is None:
        m = _BY_REGISTRY[registry] = IncidentMetrics(registry)
    return m
