"""``feature_drift``: an input feature's distribution moved away from the training reference.

Each feature's PSI (numeric and categorical alike) is classified by the bands; the detectors' calibrated
``drifted`` flag alone gives ``flag_only_severity`` (P4 by default: a calm stream never pages on a
borderline PSI). With ``respect_calibrated_threshold``, a PSI below the calibrated ``thresholds.psi``
whose ``drifted`` flag is false is noise for this window size and is skipped.

Each feature's evidence carries its attribution (drift.stats ``attribution``: how its exact TreeSHAP
contribution moved against the training slice) and the summary names what moved the score ("score up 0.31
log-odds, 0.34 of it from errorBalanceDest"). With ``impact_weighted``, a drifted feature whose
contribution did not move - both ``|change|`` and ``|abs_change|``, plus ``impact_z`` standard errors,
below ``impact_min_change`` log-odds - is still reported but at most at ``impact_max_severity`` (P3): the
model barely feels it. Without attribution (no sample, or a model without the reference) nothing is capped.

>>> rule = FeatureDrift({"bands": {"P1": 0.4, "P2": 0.2, "P3": 0.1}})
>>> stats = {"features": {"amount": {"psi": 0.45}, "hour": {"psi": 0.15}, "day": {"psi": 0.01}}}
>>> [(b.severity, b.features, b.value) for b in rule.evaluate(stats)]
[('P1', ('amount', 'hour'), 0.45)]
>>> muted = rule.without(rule.evaluate(stats)[0], {"amount"})    # inhibition recomputes the severity
>>> muted.severity, muted.features
('P3', ('hour',))
>>> weighted = FeatureDrift({"bands": {"P1": 0.4, "P2": 0.2, "P3": 0.1}, "impact_weighted": True})
>>> stats["attribution"] = {"score_change": 0.02, "ranking": ["amount"], "features": {
...     "amount": {"change": 0.01, "abs_change": 0.005, "stderr": 0.004, "share": 0.5}}}
>>> [(b.severity, b.evidence["features"]["amount"]["impact"]) for b in weighted.evaluate(stats)]
[('P3', 'unmoved')]
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from detectors.attribution import describe_change
from incident.rules.base import DEFAULT_OPEN, Rule
from incident.rules.core import Breach, fmt, get_path, most_severe, number, score_movers, severity_rank

__all__ = ["FeatureDrift"]

_EVIDENCE = ("kind", "psi", "ks_d", "ks_pvalue", "chi2", "chi2_pvalue", "missing_ratio", "count", "drifted")


class FeatureDrift(Rule):
    """Per-feature PSI bands, grouped into one breach per type (or per feature with ``group_by``)."""

    name = "feature_drift"
    anchor = "feature-drift"

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        self.flag_only_severity = self.severity_option("flag_only_severity", "P4")
        self.respect_calibrated_threshold = bool(self.config.get("respect_calibrated_threshold", True))
        self.exclude = frozenset(self.list_option("exclude"))
        self.impact_weighted = bool(self.config.get("impact_weighted", False))
        self.impact_min_change = self.number_option("impact_min_change", 0.05)
        self.impact_z = self.number_option("impact_z", 2.0)
        self.impact_max_severity = self.severity_option("impact_max_severity", "P3")

    @property
    def signals(self) -> tuple[str, ...]:
        impact = ("attribution.features.*.change", "attribution.features.*.abs_change",
                  "attribution.features.*.stderr") if self.impact_weighted else ()
        return ("features.*.psi", "features.*.drifted", "thresholds.psi", *impact)

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        features = stats.get("features")
        if not isinstance(features, Mapping):
            return []
        global_thr = number(get_path(stats, "thresholds.psi"))
        attribution = stats.get("attribution") if isinstance(stats.get("attribution"), Mapping) else None
        per: dict[str, dict] = {}
        for name, f in features.items():
            if name not in self.exclude and isinstance(f, Mapping):
                ev = self._feature(f, global_thr, _attribution_of(attribution, name))
                if ev is not None:
                    per[name] = ev
        if not per:
            return []
        groups = [sorted(per)] if self.group_by == "type" else [[n] for n in sorted(per)]
        score = score_movers(attribution)
        return [self.breach({n: per[n] for n in g}, score) for g in groups]

    def _impact(self, sev: str, contribution: Mapping[str, Any] | None) -> tuple[str, str | None]:
        """The severity after impact weighting, and ``"moved"``/``"unmoved"`` (``None``: unknown)."""
        if contribution is None:
            return sev, None
        change, abs_change = number(contribution.get("change")), number(contribution.get("abs_change"))
        if change is None or abs_change is None:
            return sev, None
        bound = max(abs(change), abs(abs_change)) + self.impact_z * (number(contribution.get("stderr")) or 0.0)
        if bound >= self.impact_min_change:
            return sev, "moved"
        if self.impact_weighted and severity_rank(sev) < severity_rank(self.impact_max_severity):
            sev = self.impact_max_severity
        return sev, "unmoved"

    def _feature(self, f: Mapping[str, Any], global_thr: float | None,
                 contribution: Mapping[str, Any] | None = None) -> dict | None:
        """The evidence of one feature with its severity, or ``None`` (not evaluated, noise, or no breach)."""
        psi, drifted = number(f.get("psi")), f.get("drifted")
        drifted = drifted if isinstance(drifted, bool) else None
        if psi is None and drifted is not True:
            return None  # not evaluated
        thr = number(f.get("threshold_psi"))
        thr = global_thr if thr is None else thr
        if (self.respect_calibrated_threshold and drifted is False and thr is not None
                and psi is not None and psi < thr):
            return None  # below the calibrated noise floor for this window size
        sev = self.bands.classify(psi)
        if sev is None and drifted is True:
            sev = self.flag_only_severity
        if sev is None:
            return None
        drift_sev = sev
        sev, impact = self._impact(sev, contribution)
        if not self.opens(sev):
            return None
        ev = {k: f[k] for k in _EVIDENCE if k in f}
        ev["severity"] = sev
        if thr is not None:
            ev["threshold_psi"] = thr
        if impact is not None:
            ev["impact"] = impact
            ev["contribution"] = {k: contribution[k] for k in ("change", "abs_change", "stderr", "share")
                                  if k in contribution}
            if sev != drift_sev:
                ev["drift_severity"] = drift_sev
        return ev

    def breach(self, per: Mapping[str, dict], score: Mapping[str, Any] | None = None) -> Breach:
        """One breach over the features of ``per`` (feature -> evidence with its ``severity``): the worst.
        ``score``: the window's attribution (:func:`incident.rules.core.score_movers`), named in the summary."""
        sev = most_severe(e["severity"] for e in per.values())
        psis = [number(e.get("psi")) for e in per.values()]
        top = max((p for p in psis if p is not None), default=None)
        names = sorted(per)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        bound = self.bands.bound(sev)
        why = f"max PSI {fmt(top)}" + (f" >= {fmt(bound)}" if bound is not None else " (calibrated flag)")
        moved = describe_change(score, names) if score else None
        capped = sorted(n for n, e in per.items() if e.get("drift_severity"))
        summary = (f"{sev} feature drift on {shown} ({why})" + (f"; {moved}" if moved else "")
                   + (f"; capped at {self.impact_max_severity}, the score did not move with "
                      f"{', '.join(capped[:3])}" if capped else ""))
        evidence = {"features": dict(per), "bands": dict(self.bands.bounds)}
        if score:
            evidence["attribution"] = dict(score)
        return Breach(self.name, sev, tuple(names), top, summary, evidence)

    def without(self, breach: Breach, gone: set[str]) -> Breach | None:
        left = [f for f in breach.features if f not in gone]
        if not left or "features" not in breach.evidence:
            return super().without(breach, gone)
        return self.breach({n: breach.evidence["features"][n] for n in left}, breach.evidence.get("attribution"))

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        return cls._where(incident, first) + _impact_words(incident)

    @classmethod
    def _where(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        feats = (incident.get("details") or {}).get("affected_features") or []
        name = first["feature"] if first else (feats[0] if feats else "a feature")
        others = [f for f in feats if f != name]
        step = ""
        if first and first.get("first_psi") is not None and first["first_psi"] >= 0.2:
            step = " It jumped within one window: look for a deploy or an upstream change at that time."
        where = f" in window {first['first_window_index']}" if first and first.get("first_window_index") is not None else ""
        return (f"The distribution of {name} changed first{where}"
                + (f"; {', '.join(others)} followed" if others else "")
                + f". Likely an upstream change in {name} (units, scaling, a new traffic source or type mix) "
                  "or a shift in the population." + step)


def _attribution_of(attribution: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    feats = attribution.get("features") if attribution else None
    f = feats.get(name) if isinstance(feats, Mapping) else None
    return f if isinstance(f, Mapping) else None


def _impact_words(incident: Mapping[str, Any]) -> str:
    """What the incident's last evidence says about the score: what moved it, and which drifted features
    the model does not feel."""
    ev = (incident.get("details") or {}).get("evidence") or {}
    feats = ev.get("features") if isinstance(ev.get("features"), Mapping) else {}
    moved = describe_change(ev.get("attribution"), list(feats) or None)
    unmoved = sorted(n for n, e in feats.items() if isinstance(e, Mapping) and e.get("impact") == "unmoved")
    out = f" Model impact: {moved}." if moved else ""
    if unmoved:
        out += (f" The score did not move with {', '.join(unmoved)}: the model barely uses "
                + ("it" if len(unmoved) == 1 else "them") + " here.")
    return out
