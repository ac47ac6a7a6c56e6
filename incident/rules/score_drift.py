"""``score_drift``: the model's scores moved, seen two ways; the worse view is the breach.

1. The PSI of the scores against the training score distribution (``score.psi``, the bands).
2. The predicted fraud rate (share of scores at or above the model threshold) against the rate the model
   was trained at: a fraud wave moves a few percent of the scores to the top, which the score PSI
   (10 bins of 10%) hardly sees. ``fraud_rate_bands`` on the ratio rate / reference; only a rise
   significant for the window's size (binomial z >= ``fraud_rate_min_z``) in windows of at least
   ``fraud_rate_min_count`` scored events counts.

Either way the summary and the evidence name the features that moved the score, from the window's
``attribution`` ("score up 0.8 log-odds, 0.6 of it from orig_emptied"), and RCA points at them.

>>> rule = ScoreDrift({"statistic": "score.psi", "bands": {"P1": 0.4, "P2": 0.2},
...                    "fraud_rate_bands": {"P1": 10.0, "P2": 4.0}, "fraud_rate_min_count": 500})
>>> wave = {"score": {"psi": 0.05, "predicted_fraud_rate": 0.02, "reference_fraud_rate": 0.0013, "count": 10000}}
>>> [(b.severity, round(b.value, 1)) for b in rule.evaluate(wave)]
[('P1', 15.4)]
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from detectors.attribution import describe_change
from incident.rules.base import DEFAULT_OPEN, ScalarRule
from incident.rules.core import Bands, Breach, fmt, get_path, number, score_movers, severity_rank, share

__all__ = ["ScoreDrift"]


class ScoreDrift(ScalarRule):
    """Score PSI bands, or the predicted fraud rate against the reference rate (whichever is worse)."""

    name = "score_drift"
    anchor = "score-drift"

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        fr = self.config.get("fraud_rate_bands")
        self.fraud_rate_bands = None if fr is None else Bands.from_mapping(fr, f"{self.where}.fraud_rate_bands")
        self.fraud_rate = str(self.config.get("fraud_rate", "score.predicted_fraud_rate"))
        self.fraud_rate_reference = str(self.config.get("fraud_rate_reference", "score.reference_fraud_rate"))
        self.fraud_rate_count = str(self.config.get("fraud_rate_count", "score.count"))
        self.fraud_rate_min_z = self.number_option("fraud_rate_min_z", 5.0)
        self.fraud_rate_min_count = self.number_option("fraud_rate_min_count", 0.0)

    @property
    def signals(self) -> tuple[str, ...]:
        rate = (self.fraud_rate, self.fraud_rate_reference, self.fraud_rate_count) if self.fraud_rate_bands else ()
        return (*super().signals, *rate)

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        score = {k: v for k, v in stats["score"].items() if k != "bins"} if isinstance(stats.get("score"), Mapping) else {}
        extra = {"score": score} if score else {}
        movers = score_movers(stats.get("attribution") if isinstance(stats.get("attribution"), Mapping) else None)
        if movers:
            extra["attribution"] = movers
        out = self.scalar_breach(stats, lambda v, b, r: f"score drift: score PSI {v:.3g} (>= {fmt(b)})", extra=extra)
        rate = self._fraud_rate_breach(stats, extra)
        if rate is not None and (not out or severity_rank(rate.severity) < severity_rank(out[0].severity)):
            out = [rate]   # the worse of the two views of the scores; one breach, one incident
        moved = describe_change(movers)
        if out and moved:
            b = out[0]
            out = [Breach(b.type, b.severity, b.features, b.value, f"{b.summary}; {moved}", b.evidence, b.covers_all)]
        return out

    def _fraud_rate_breach(self, stats: Mapping[str, Any], extra: dict) -> Breach | None:
        """The share of events scored as fraud against the model's reference share: a fraud wave (or a model
        gone wrong) moves a few percent of the scores, which barely moves the score PSI but multiplies the
        predicted fraud rate. Severity from the ratio, only when the excess is significant (binomial z)."""
        bands = self.fraud_rate_bands
        if bands is None:
            return None
        rate = number(get_path(stats, self.fraud_rate))
        ref = number(get_path(stats, self.fraud_rate_reference))
        n = number(get_path(stats, self.fraud_rate_count))
        if rate is None or ref is None or not n or ref <= 0 or n < self.fraud_rate_min_count:
            return None
        z = (rate - ref) / math.sqrt(ref * (1 - ref) / n) if ref < 1 else 0.0
        if z < self.fraud_rate_min_z:
            return None
        ratio = rate / ref
        sev = bands.classify(ratio)
        if sev is None:
            return None
        evidence = {"statistic": self.fraud_rate, "value": rate, "reference": ref, "ratio": ratio, "z": z, "count": n,
                    "fraud_rate_bands": dict(bands.bounds), **extra}
        return Breach(self.name, sev, (), ratio,
                      f"{sev} score drift: predicted fraud rate {share(rate)} is {ratio:.3g}x the reference "
                      f"{share(ref)} (>= {fmt(bands.bound(sev))}x)", evidence)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        text = ("The score distribution moved without a matching input drift: a model, threshold or feature-code "
                "change, or a real change in fraud pressure.")
        movers = ((incident.get("details") or {}).get("evidence") or {}).get("attribution")
        moved = describe_change(movers)
        if moved:
            top = (movers.get("ranking") or ["?"])[0]
            text += (f" Model impact: {moved}; start with {top}: what changed in it (its values, or the "
                     "transactions that carry them).")
        return text
