"""``missing_data``: events arrive with missing or null fields (and are dead-lettered for it).

The statistic is the event-level share of events with a missing field (``missing_ratio``); features
whose own ``missing_ratio`` reaches ``feature_missing_ratio`` are named as affected.

>>> rule = MissingData({"statistic": "missing_ratio", "bands": {"P1": 0.25, "P2": 0.10}})
>>> (b,) = rule.evaluate({"missing_ratio": 0.2, "features": {"amount": {"missing_ratio": 0.2}}})
>>> b.severity, b.features, b.summary
('P2', ('amount',), 'P2 missing data in 20% of events (>= 10%); features: amount')
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from incident.rules.base import DEFAULT_OPEN, ScalarRule
from incident.rules.core import Breach, number, percent, share

__all__ = ["MissingData"]


class MissingData(ScalarRule):
    """Bands on ``missing_ratio``; the features missing in at least ``feature_missing_ratio`` are named."""

    name = "missing_data"
    anchor = "missing-data"

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        self.feature_floor = self.number_option("feature_missing_ratio", 0.01)

    @property
    def signals(self) -> tuple[str, ...]:
        return (*super().signals, "features.*.missing_ratio", "dlq_by_reason")

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        feats = stats.get("features") if isinstance(stats.get("features"), Mapping) else {}
        per = {n: number(f.get("missing_ratio")) for n, f in feats.items() if isinstance(f, Mapping)}
        per = {n: v for n, v in per.items() if v is not None and v >= self.feature_floor}
        extra: dict[str, Any] = {"feature_missing_ratio": per}
        if isinstance(stats.get("dlq_by_reason"), Mapping):
            extra["dlq_by_reason"] = dict(stats["dlq_by_reason"])
        return self.scalar_breach(stats, lambda v, b, r: f"missing data in {share(v)} of events (>= {share(b)})"
                                  + (f"; features: {', '.join(sorted(per))}" if per else ""),
                                  features=per, extra=extra)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        d = incident.get("details") or {}
        miss = (d.get("evidence") or {}).get("feature_missing_ratio") or {}
        which = ", ".join(f"{k} ({percent(v)})" for k, v in sorted(miss.items(), key=lambda kv: -kv[1])) or "some fields"
        return (f"{percent(d.get('value'))} of events arrive with missing or null fields: {which}. A producer "
                "release or an upstream join is dropping them; the events are dead-lettered.")
