"""``schema_mismatch``: events no longer match the contract (a renamed, retyped or dropped field).

The statistic is the share of the window's events dead-lettered for a schema reason: the catalogue's
schema reasons (:data:`breeboost.rejections.SCHEMA_REASONS`) except ``exclude_reasons``, which other
types own (``missing_field`` is missing_data's; ``invalid_json`` bytes are a dead-letter spike, not a
contract change; ``not_finite`` is a bad value, not a new shape). ``reasons`` in the table replaces the
derived list. Without ``dlq_by_reason`` the detectors' ``schema_error_ratio`` is the fallback. A field
missing from at least ``vanished_field_ratio`` of the events is a schema change too (renamed or dropped),
and the incident covers it.

>>> rule = SchemaMismatch({"statistic": "schema_error_ratio", "bands": {"P1": 0.01},
...                        "exclude_reasons": ["missing_field", "invalid_json", "not_finite"]})
>>> rule.reasons
('not_an_object', 'wrong_type', 'unknown_category')
>>> (b,) = rule.evaluate({"window": {"events": 1000}, "dlq_by_reason": {"wrong_type": 30, "missing_field": 500}})
>>> b.severity, b.value, b.covers_all
('P1', 0.03, True)
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from breeboost.rejections import REASONS, SCHEMA_REASONS
from incident.rules.base import DEFAULT_OPEN, Rule
from incident.rules.core import Breach, get_path, number, percent, share

__all__ = ["SchemaMismatch"]


class SchemaMismatch(Rule):
    """Share of schema rejects (by reason), or a field vanished from (nearly) every event."""

    name = "schema_mismatch"
    anchor = "schema-mismatch"

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        self.statistic = str(self.config.get("statistic", "schema_error_ratio"))
        excluded = set(self.list_option("exclude_reasons", allowed=REASONS))
        derived = [code for code in REASONS if code in SCHEMA_REASONS and code not in excluded]  # catalogue order
        self.reasons = self.list_option("reasons", derived, allowed=REASONS)
        self.vanished_floor = self.number_option("vanished_field_ratio", None)

    @property
    def signals(self) -> tuple[str, ...]:
        return ("dlq_by_reason", "window.events", self.statistic, "features.*.missing_ratio")

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        reasons = stats.get("dlq_by_reason")
        events = number(get_path(stats, "window.events"))
        by_reason = bool(self.reasons) and isinstance(reasons, Mapping) and bool(events)
        if by_reason:
            value = sum(number(reasons.get(r)) or 0.0 for r in self.reasons) / events
        else:
            value = number(get_path(stats, self.statistic))
        vanished = self._vanished(stats)
        if vanished:
            value = max(value or 0.0, max(vanished.values()))
        sev = self.bands.classify(value)
        if value is None or sev is None:
            return []
        text = f"{sev} schema mismatch in {share(value)} of events (>= {share(self.bands.bound(sev))})"
        if vanished:
            text += f"; field(s) gone from nearly every event: {', '.join(sorted(vanished))}"
        evidence = {"statistic": "dlq_by_reason" if by_reason else self.statistic, "value": value,
                    "reasons": list(self.reasons), "vanished_fields": vanished, "bands": dict(self.bands.bounds)}
        if isinstance(reasons, Mapping):
            evidence["dlq_by_reason"] = dict(reasons)
        return [Breach(self.name, sev, tuple(sorted(vanished)), value, text, evidence, True)]

    def _vanished(self, stats: Mapping[str, Any]) -> dict[str, float]:
        """Features missing from at least ``vanished_field_ratio`` of the events: renamed or dropped."""
        feats = stats.get("features") if isinstance(stats.get("features"), Mapping) else {}
        if self.vanished_floor is None:
            return {}
        return {n: m for n, f in feats.items() if isinstance(f, Mapping)
                and (m := number(f.get("missing_ratio"))) is not None and m >= self.vanished_floor}

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        value = (incident.get("details") or {}).get("value")
        return (f"{percent(value)} of events no longer match the schema (a renamed or retyped field): a "
                "producer changed the contract. Compare a dead-lettered record with the spec.")
