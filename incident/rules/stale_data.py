"""``stale_data``: events reach the worker long after they happened (``freshness.lag_p95_s``).

What the lag is measured against is the worker's ``freshness_clock`` (:func:`detectors.freshness.lag_clock`):
the wall clock by default (a source that is hours behind, or a consumer backlog), or with ``stream`` each
partition's newest event time (a ``breeboost replay`` of old data then has lag 0, and only events that
arrive far behind the stream's own clock breach). The rule reads the same statistic either way.

>>> rule = StaleData({"statistic": "freshness.lag_p95_s", "bands": {"P1": 3600.0, "P2": 300.0}})
>>> [(b.severity, b.summary) for b in rule.evaluate({"freshness": {"lag_p95_s": 900.0}})]
[('P2', 'P2 stale data: event-time lag p95 900 s (>= 300 s)')]
"""
from __future__ import annotations

from typing import Any, Mapping

from incident.rules.base import ScalarRule
from incident.rules.core import Breach, fmt, number

__all__ = ["StaleData"]


class StaleData(ScalarRule):
    """Bands on the event-time lag (seconds, p95 of the window)."""

    name = "stale_data"
    anchor = "stale-data"

    @property
    def signals(self) -> tuple[str, ...]:
        return (*super().signals, "freshness")

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        extra = {"freshness": dict(stats["freshness"])} if isinstance(stats.get("freshness"), Mapping) else {}
        return self.scalar_breach(stats, lambda v, b, r: f"stale data: event-time lag p95 {v:.0f} s (>= {fmt(b)} s)",
                                  extra=extra)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        lag = number((incident.get("details") or {}).get("value"))
        if lag is None:
            return "Events arrive late: a consumer backlog or a wrong source clock."
        return (f"Event time lags processing by {lag:.0f} s at p95: a consumer backlog (workers down or too few) "
                "or a wrong clock/timezone at the source; or a replay/backfill of old data measured against the "
                "wall clock (run its workers with --freshness-clock stream).")
