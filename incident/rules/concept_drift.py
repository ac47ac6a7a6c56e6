"""``concept_drift``: delayed labels say the model got worse than on its test slice.

It reads only what the worker publishes in drift.stats ``concept`` (the label join's window)::

    {"labelled": int, "precision": float|None, "recall": float|None, "brier": float|None,
     "error_rate": float|None, "tp": int, "fp": int, "fn": int, "tn": int,
     "reference": {"precision": f, "recall": f, "f1": f, "auprc": f},   # the model's test slice; absent if unknown
     "performance_drop": {"precision": f|None, "recall": f|None}}        # (reference - current) / reference

Two ways to breach; the more severe wins:

* **This window's labels**: at least ``min_labels`` labels joined in it and the worst drop of ``metrics``
  reaches a band. A drop counts only when it is significant for the labels behind it (``min_z`` binomial
  standard errors of the reference, over ``tp + fn`` actual frauds for recall, ``tp + fp`` flagged ones for
  precision): fraud is rare, so a window of 10,000 labelled events holds a dozen frauds, and one missed
  fraud more moves recall by 8%.
* **River's detectors** (the aggregator's ``concept.detectors``: ADWIN on the per-label error, Page-Hinkley
  on the loss, KSWIN on a sample): one of ``detectors`` flagged a change within the last
  ``detector_memory`` windows *and* the performance over the last labels (``concept.performance.
  last_labels``, tens of thousands of labels) dropped significantly against the test slice; the severity is
  the band of that drop, as long as this window's own figure is still below the reference by the lowest
  band (the drop goes on). A detection alone opens nothing (a detector also flags a model that got better,
  and a calm stream of a million labels flags none with the defaults, but a flag says *that* the error
  changed, the drop says *how much*); the latch keeps the incident open while the drop lasts, and it
  resolves once the window's labels recover (not only when the last labels' horizon forgot the bad ones).

The detector path reads fields the aggregator adds (:attr:`ConceptDrift.aggregator_signals`);
``window_statistics`` alone (the report from a file) publishes only the window's labels.
>>> rule = ConceptDrift({"bands": {"P1": 0.5, "P2": 0.25, "P3": 0.1}, "min_labels": 50, "min_z": 3.0})
>>> concept = {"labelled": 5000, "precision": 0.85, "recall": 0.4, "tp": 40, "fp": 7, "fn": 60, "tn": 4893,
...            "reference": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "auprc": 0.8},
...            "performance_drop": {"precision": 0.0556, "recall": 0.5}}
>>> [(b.severity, b.value) for b in rule.evaluate({"concept": concept})]
[('P1', 0.5)]
>>> rule.evaluate({"concept": {**concept, "labelled": 20}})        # too few labels in the window
[]
>>> last = {"labelled": 60000, "positives": 80, "flagged": 70, "precision": 0.9, "recall": 0.55,
...         "auprc": 0.6, "drop": {"precision": 0.0, "recall": 0.3125, "f1": 0.2, "auprc": 0.25}}
>>> now = {"precision": 0.9, "recall": 0.3, "auprc": 0.5}
>>> flagged = {"concept": {**concept, "labelled": 20, "performance": {"last_labels": last, "window": now},
...            "detectors": {"adwin": {"last_detection_window": 8}}}, "window": {"index": 10}}
>>> [(b.severity, round(b.value, 4)) for b in rule.evaluate(flagged)]
[('P2', 0.3125)]
>>> flagged["concept"]["performance"]["window"] = {"precision": 0.9, "recall": 0.8, "auprc": 0.8}
>>> rule.evaluate(flagged)                                         # the window's labels recovered
[]
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from incident.rules.base import DEFAULT_OPEN, Rule
from incident.rules.core import Breach, get_path, number, severity_rank, share

__all__ = ["ConceptDrift", "METRICS", "DETECTORS", "ROLLING_METRICS"]

#: The metrics whose drop drift.stats publishes, and the confusion counts behind each one.
METRICS = {"precision": ("tp", "fp"), "recall": ("tp", "fn")}
#: River's detectors in ``concept.detectors``.
DETECTORS = ("adwin", "page_hinkley", "kswin")
#: The last labels' metrics the detector path judges, and the count behind each one's standard error.
ROLLING_METRICS = {"precision": "flagged", "recall": "positives", "f1": "positives", "auprc": "positives"}


class ConceptDrift(Rule):
    """Relative drop of precision/recall against the model's test slice, over enough labels."""

    name = "concept_drift"
    anchor = "concept-drift"

    def __init__(self, config: Mapping[str, Any], open_severities: Iterable[str] = DEFAULT_OPEN) -> None:
        super().__init__(config, open_severities)
        self.metrics = self.list_option("metrics", tuple(METRICS), allowed=METRICS)
        self.min_labels = self.number_option("min_labels", 50.0, minimum=1.0)
        self.min_z = self.number_option("min_z", 3.0)
        self.detectors = self.list_option("detectors", DETECTORS, allowed=DETECTORS)
        self.detector_memory = self.number_option("detector_memory", 10.0)
        self.rolling_metrics = self.list_option("rolling_metrics", ("precision", "recall", "auprc"),
                                                allowed=ROLLING_METRICS)

    @property
    def aggregator_signals(self) -> tuple[str, ...]:
        """What the detector path reads: fields the aggregator adds to ``concept`` (not in
        ``window_statistics``' own payload, which :attr:`signals` lists)."""
        out = [f"concept.detectors.{d}.last_detection_window" for d in self.detectors]
        out += ["concept.performance.last_labels.labelled", "window.index"]
        out += [f"concept.performance.window.{m}" for m in self.rolling_metrics]
        for m in self.rolling_metrics:
            out += [f"concept.performance.last_labels.drop.{m}", f"concept.performance.last_labels.{m}",
                    f"concept.performance.last_labels.{ROLLING_METRICS[m]}"]
        return tuple(dict.fromkeys(out))

    @property
    def signals(self) -> tuple[str, ...]:
        out = ["concept.labelled"]
        for m in self.metrics:
            out += [f"concept.performance_drop.{m}"]
            if self.min_z:
                out += [f"concept.{m}", f"concept.reference.{m}", *(f"concept.{c}" for c in METRICS[m])]
        return tuple(dict.fromkeys(out))

    def evaluate(self, stats: Mapping[str, Any]) -> list[Breach]:
        concept = stats.get("concept")
        if not isinstance(concept, Mapping):
            return []
        found = [b for b in (self._window(concept), self._detected(stats, concept)) if b is not None]
        return [min(found, key=lambda b: (severity_rank(b.severity), -b.value))] if found else []

    def _detected(self, stats: Mapping[str, Any], concept: Mapping[str, Any]) -> Breach | None:
        """River's detectors flagged recently and the last labels' performance dropped significantly."""
        index = number(get_path(stats, "window.index"))
        seen = {d: number(get_path(concept, f"detectors.{d}.last_detection_window")) for d in self.detectors}
        recent = sorted(d for d, w in seen.items()
                        if w is not None and index is not None and index - w <= self.detector_memory)
        last = get_path(concept, "performance.last_labels")
        if not recent or not isinstance(last, Mapping) or (number(last.get("labelled")) or 0) < self.min_labels:
            return None
        drops = {m: d for m in self.rolling_metrics if (d := number(get_path(last, f"drop.{m}"))) is not None}
        z = {m: self._rolling_z(last, concept, m) for m in drops}
        counted = {m: d for m, d in drops.items() if not self.min_z or (z[m] is not None and z[m] >= self.min_z)}
        if not counted:
            return None
        worst = max(counted, key=counted.get)
        sev = self.bands.classify(counted[worst])
        if sev is None or not self._still_low(concept, worst):
            return None
        summary = (f"{sev} concept drift: {', '.join(recent)} flagged a change in the error of the labels; {worst} "
                   f"down {share(counted[worst])} against the model's test slice over the last "
                   f"{number(last.get('labelled')):.0f} labels")
        evidence = {"detected_by": {d: seen[d] for d in recent}, "last_labels": dict(last), "z": z,
                    "performance_drop": drops, "bands": dict(self.bands.bounds)}
        return Breach(self.name, sev, (), counted[worst], summary, evidence)

    def _still_low(self, concept: Mapping[str, Any], metric: str) -> bool:
        """This window's own labels are below the reference by at least the lowest band too (no significance
        asked: it only tells that the drop is still going on, so that the incident resolves once the labels
        recover instead of waiting until the last labels' horizon has forgotten the bad windows)."""
        cur = number(get_path(concept, f"performance.window.{metric}"))
        ref = number(get_path(concept, f"reference.{metric}"))
        if cur is None or ref is None or ref <= 0:
            return False
        return (ref - cur) / ref >= min(dict(self.bands.bounds).values())

    @staticmethod
    def _rolling_z(last: Mapping[str, Any], concept: Mapping[str, Any], metric: str) -> float | None:
        cur = number(last.get(metric))
        ref = number(get_path(concept, f"reference.{metric}"))
        n = number(last.get(ROLLING_METRICS[metric]))
        if cur is None or ref is None or n is None or n <= 0:
            return None
        p = min(max(ref, 1.0 / n), 1 - 1.0 / n) if n > 1 else 0.5
        return (ref - cur) / math.sqrt(p * (1 - p) / n)

    def _window(self, concept: Mapping[str, Any]) -> Breach | None:
        """This window's own labels dropped significantly."""
        labelled = number(concept.get("labelled"))
        if labelled is None or labelled < self.min_labels:
            return None   # too few labels in this window to judge the model
        drops = {m: d for m in self.metrics if (d := number(get_path(concept, f"performance_drop.{m}"))) is not None}
        z = {m: self._z(concept, m) for m in drops}
        counted = {m: d for m, d in drops.items() if not self.min_z or (z[m] is not None and z[m] >= self.min_z)}
        if not counted:
            return None
        worst = max(counted, key=counted.get)
        sev = self.bands.classify(counted[worst])
        if sev is None:
            return None
        cur, ref = number(concept.get(worst)), number(get_path(concept, f"reference.{worst}"))
        summary = (f"{sev} concept drift: {worst} down {share(counted[worst])} against the model's test slice"
                   + (f" ({ref:.3g} -> {cur:.3g})" if cur is not None and ref is not None else "")
                   + f" over {labelled:.0f} labelled events")
        evidence = {"labelled": int(labelled), "performance_drop": drops, "z": z,
                    "current": {m: concept.get(m) for m in self.metrics},
                    "reference": dict(concept["reference"]) if isinstance(concept.get("reference"), Mapping) else {},
                    "counts": {c: concept.get(c) for c in ("tp", "fp", "fn", "tn")}, "bands": dict(self.bands.bounds)}
        return Breach(self.name, sev, (), counted[worst], summary, evidence)

    @staticmethod
    def _z(concept: Mapping[str, Any], metric: str) -> float | None:
        """Standard errors between the reference and the current value, for the events behind the metric."""
        cur, ref = number(concept.get(metric)), number(get_path(concept, f"reference.{metric}"))
        counts = [number(concept.get(c)) for c in METRICS[metric]]
        if cur is None or ref is None or any(c is None for c in counts):
            return None
        n = sum(counts)
        if n <= 0:
            return None
        p = min(max(ref, 1.0 / n), 1 - 1.0 / n) if n > 1 else 0.5   # a reference of 0 or 1 has no spread
        return (ref - cur) / math.sqrt(p * (1 - p) / n)

    @classmethod
    def explain(cls, incident: Mapping[str, Any], first: Mapping[str, Any] | None) -> str:
        ev = (incident.get("details") or {}).get("evidence") or {}
        drops = {m: d for m, d in (ev.get("performance_drop") or {}).items() if number(d) is not None}
        which = ", ".join(f"{m} down {share(d)}" for m, d in sorted(drops.items(), key=lambda kv: -kv[1]))
        return ("Labels disagree with predictions more than before" + (f" ({which})" if which else "")
                + ": the fraud pattern changed (or labels are late or wrong); plan retraining on recent labels.")
