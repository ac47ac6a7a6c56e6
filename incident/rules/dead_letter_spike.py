"""``dead_letter_spike``: a large share of the window's events was dead-lettered (``dlq_ratio``).

The reasons (``dlq_by_reason``, codes of :data:`breeboost.rejections.REASONS`) are the evidence; the RCA
names the top three with their meaning.

>>> rule = DeadLetterSpike({"statistic": "dlq_ratio", "bands": {"P1": 0.20, "P2": 0.05, "P3": 0.01}})
>>> [(b.severity, b.summary) for b in rule.evaluate({"dlq_ratio": 0.08, "dlq_by_reason": {"invalid_json": 800}})]
[('P2', 'P2 dead-letter spike: 8% of events (>= 5%)')]
"""
from __future__ import annotations

from typing import Any, Mapping

from breeboost.rejections import REASONS
from incident.rules.base import ScalarRule
from incident.rules.core import Breach, percent, share

__all__ = ["DeadLetterSpike"]


class DeadLetterSpike(ScalarRule):
    """Bands on the dead-lettered share of the window's events."""

    name = "dead_letter_spike"
    anchor = "dead-letter-spike"

    @property
    def signals(self) -> tuple[str, ...]:
        return (*super().signals, "dlq_by_reason")

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        reasons = stats.get("dlq_by_reason")
        extra = {"dlq_by_reason": dict(reasons)} if isinstance(reasons, Mapping) else {}
        return self.scalar_breach(stats, lambda v, b, r: f"dead-letter spike: {share(v)} of events (>= {share(b)})",
                                  extra=extra)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        d = incident.get("details") or {}
        reasons = (d.get("evidence") or {}).get("dlq_by_reason") or {}
        top = sorted(((k, v) for k, v in reasons.items() if v), key=lambda kv: -kv[1])[:3]
        named = ", ".join(f"{k} ({v})" for k, v in top) or "unknown reasons"
        meaning = "; ".join(f"{k}: {REASONS[k].meaning}" for k, _ in top if k in REASONS)
        return (f"{percent(d.get('value'))} of events were dead-lettered, mostly {named}: malformed or invalid "
                "payloads from a producer." + (f" ({meaning})" if meaning else ""))
