"""Model health where the labels of every partition meet: what the aggregator adds to a window's ``concept``.

:class:`ModelHealth` keeps, per model version, a :class:`detectors.concept.ConceptMonitor` (river's
detectors) and the merged label counts of its recent windows, and for each published window returns:

* ``performance``: :func:`figures` of this window's labels, of the **last labels** (the most recent windows
  that together hold at least ``last_labels`` labels: a rolling horizon at window granularity, exact
  because label counts add) and of the **last seconds** (windows the aggregator closed within
  ``last_seconds`` s of this one), next to the model's own figures on its test slice;
* ``detectors``: the monitor fed this window's labels (:meth:`ConceptMonitor.observe`), with the window of
  each detector's last detection;
* ``estimate``: the label-free estimate of the window's scored events (:mod:`detectors.estimate`), when the
  model has a calibrator and the partials carry binned scores.

State is in memory, bounded by the horizons (the windows older than both are dropped; at most
``max_windows``): an aggregator that restarts begins the rolling figures and the detectors afresh (the
first windows after a restart have shorter horizons, ``windows`` and ``labelled`` say so).

>>> import numpy as np
>>> from detectors.records import LabelCounts
>>> rng = np.random.default_rng(0)
>>> health = ModelHealth(last_labels=3000, last_seconds=60)
>>> for i in range(4):
...     c = LabelCounts()
...     for y in (rng.random(1000) < 0.1).astype(int).tolist():
...         p = rng.uniform(0.6, 1) if y else rng.uniform(0, 0.2)
...         c.add(y, p, int(p >= 0.5))
...     out = health.window("m1", i, [c], [], None, {"recall": 1.0, "precision": 1.0}, 0.5, now=10.0 * i)
>>> perf = out["performance"]
>>> perf["window"]["labelled"], perf["last_labels"]["windows"], perf["last_labels"]["recall"]
(1000, 3, 1.0)
>>> out["detectors"]["drift_detected"], "estimate" in out       # no calibrator, no binned scores
(False, False)
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Mapping

import numpy as np

from detectors.binning import average_precision_bin_error, binned_average_precision, dense
from detectors.concept import ConceptMonitor
from detectors.estimate import calibration_values, estimate_section

__all__ = ["ModelHealth", "figures", "reference_figures", "merged_labels"]

_METRICS = ("precision", "recall", "f1", "auprc")


def merged_labels(counts: Iterable[Any]) -> Any:
    """One :class:`detectors.records.LabelCounts` holding the sum of ``counts`` (structs or mappings)."""
    from detectors.records import LabelCounts

    out = LabelCounts()
    for c in counts:
        out.merge(c if isinstance(c, LabelCounts) else LabelCounts(**dict(c)))
    return out


def _div(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        return None
    return float(x)


def _drops(current: Mapping[str, Any], reference: Mapping[str, Any] | None, labelled: int, positives: int,
           flagged: int, min_labels: int, min_positives: int) -> dict[str, float | None]:
    enough = {"precision": flagged >= min_positives, "recall": positives >= min_positives,
              "auprc": positives >= min_positives}
    enough["f1"] = enough["precision"] and enough["recall"]
    out = {}
    for m in _METRICS:
        ref, cur = _number((reference or {}).get(m)), current.get(m)
        ok = labelled >= min_labels and enough[m] and ref is not None and ref > 0 and cur is not None
        out[m] = (ref - cur) / ref if ok else None
    return out


def figures(counts: Any, values: np.ndarray | None = None, reference: Mapping[str, Any] | None = None,
            windows: int = 1, min_labels: int = 100, min_positives: int = 20) -> dict[str, Any]:
    """A :class:`~detectors.concept_records.Figures` dict of merged label counts; ``values``: the
    calibrator's rate per bin (``None``: no calibrated fraud rate); ``reference``: the test slice's
    metrics, for ``drop``."""
    n, tp, fp, fn = counts.n, counts.tp, counts.fp, counts.fn
    pos, neg = dense(counts.positive_bins), dense(counts.negative_bins)
    binned = int(pos.sum() + neg.sum())
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    out: dict[str, Any] = {
        "labelled": int(n), "positives": int(tp + fn), "flagged": int(tp + fp), "windows": int(windows), "precision": precision,
        "recall": recall, "f1": _f1(precision, recall),
        "auprc": binned_average_precision(pos, neg) if binned == n else None,
        "auprc_bin_error": average_precision_bin_error(pos, neg) if binned == n and tp + fn else None,
        "brier": _div(counts.brier, n), "log_loss": _div(counts.log_loss, n) if binned == n else None,
        "observed_fraud_rate": _div(tp + fn, n), "predicted_fraud_rate": _div(counts.probability, n) if binned == n
        else None,
        "calibrated_fraud_rate": _div(float(np.dot(pos + neg, values)), n) if values is not None and binned == n
        else None}
    out["drop"] = _drops(out, reference, n, tp + fn, tp + fp, min_labels, min_positives)
    return out


def shadow_comparison(champion: str, pairs: Iterable[Any], min_labels: int = 100,
                      min_positives: int = 20) -> dict[str, Any] | None:
    """The window's ``shadow`` section (:class:`detectors.records.ShadowComparison`) from the label join's
    :class:`detectors.records.PairedLabels` folded into it: those whose champion is this window's model
    (labels of rows a former champion scored, still arriving after a promotion, are not its evidence),
    merged per challenger; the challenger with the most labels. ``None``: no label scored by both.

    >>> from detectors.records import LabelCounts, PairedLabels
    >>> a, b = LabelCounts(), LabelCounts()
    >>> for y, pa, pb in ((1, 0.4, 0.9), (0, 0.1, 0.2), (1, 0.7, 0.8)):
    ...     a.add(y, pa, int(pa >= 0.5)); b.add(y, pb, int(pb >= 0.5))
    >>> s = shadow_comparison("v1", [PairedLabels("labels", 0, "v1", "v2", a, b, 0.0)])
    >>> s["challenger_version"], s["labelled"], s["champion"]["recall"], s["challenger"]["recall"]
    ('v2', 3, 0.5, 1.0)
    >>> shadow_comparison("v2", [PairedLabels("labels", 0, "v1", "v2", a, b, 0.0)]) is None   # v1's rows
    True
    """
    import msgspec

    from detectors.records import LabelCounts

    merged: dict[str, tuple[Any, Any]] = {}
    for p in pairs:
        if p.champion_version != champion or not p.champion.n:
            continue
        ours, theirs = merged.setdefault(p.challenger_version, (LabelCounts(), LabelCounts()))
        ours.merge(p.champion)
        theirs.merge(p.challenger)
    if not merged:
        return None
    challenger = max(sorted(merged), key=lambda v: merged[v][0].n)
    ours, theirs = merged[challenger]
    return {"champion_version": champion, "challenger_version": challenger, "labelled": int(ours.n),
            "positives": int(ours.tp + ours.fn),
            "champion": figures(ours, min_labels=min_labels, min_positives=min_positives),
            "challenger": figures(theirs, min_labels=min_labels, min_positives=min_positives),
            "champion_counts": msgspec.structs.asdict(ours), "challenger_counts": msgspec.structs.asdict(theirs)}


def reference_figures(reference: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The test slice's metrics (``metadata.json["metrics"]["test"]``) as a Figures dict (``None``: none)."""
    if not reference:
        return None
    r = {k: _number(reference.get(k)) for k in ("rows", "positives", "flagged", *_METRICS, "brier", "log_loss", "fraud_rate",
                                                "predicted_fraud_rate", "calibrated_fraud_rate")}
    return {"labelled": int(r["rows"] or 0), "positives": int(r["positives"] or 0), "flagged": int(r["flagged"] or 0),
            "windows": 0,
            **{m: r[m] for m in _METRICS}, "auprc_bin_error": None, "brier": r["brier"], "log_loss": r["log_loss"],
            "observed_fraud_rate": r["fraud_rate"], "predicted_fraud_rate": r["predicted_fraud_rate"],
            "calibrated_fraud_rate": r["calibrated_fraud_rate"], "drop": None}


class _Version:
    """One model version's monitor and recent windows ``(closed_at, merged label counts)``."""

    def __init__(self, monitor: ConceptMonitor, keep: int) -> None:
        self.monitor = monitor
        self.windows: deque = deque(maxlen=keep)
        self.last_detection: dict[str, int] = {}


class ModelHealth:
    """Per model version: rolling performance, river's detectors and the estimate (module docstring)."""

    def __init__(self, last_labels: int = 50_000, last_seconds: float = 3600.0, min_labels: int = 100,
                 min_positives: int = 20, max_windows: int = 10_000, seed: int = 0,
                 monitor: dict[str, Any] | None = None) -> None:
        if last_labels < 1:
            raise ValueError(f"last_labels must be >= 1, got {last_labels!r}")
        if last_seconds <= 0:
            raise ValueError(f"last_seconds must be > 0, got {last_seconds!r}")
        self.last_labels = int(last_labels)
        self.last_seconds = float(last_seconds)
        self.min_labels = int(min_labels)
        self.min_positives = int(min_positives)
        self.max_windows = int(max_windows)
        self.seed = seed
        self.monitor = dict(monitor or {})
        self._versions: dict[str, _Version] = {}

    def _version(self, version: str) -> _Version:
        v = self._versions.get(version)
        if v is None:
            v = self._versions[version] = _Version(ConceptMonitor(seed=self.seed, **self.monitor), self.max_windows)
        return v

    def _rolling(self, state: _Version, now: float, values: np.ndarray | None,
                 reference: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
        by_labels, by_time, n = [], [], 0
        for closed_at, counts in reversed(state.windows):
            if n < self.last_labels:
                by_labels.append(counts)
                n += counts.n
            if now - closed_at <= self.last_seconds:
                by_time.append(counts)
            elif n >= self.last_labels:
                break
        while len(state.windows) > max(len(by_labels), len(by_time), 1):
            state.windows.popleft()          # older than both horizons: never needed again (bounded memory)
        last_labels = merged_labels(by_labels)
        kw = dict(min_labels=self.min_labels, min_positives=self.min_positives)
        return (figures(last_labels, values, reference, len(by_labels), **kw),
                figures(merged_labels(by_time), values, reference, len(by_time), **kw), last_labels)

    def window(self, version: str, index: int, labels: Iterable[Any], scores: Iterable[Any],
               profile: Mapping[str, Any] | None, reference: Mapping[str, Any] | None, threshold: float | None,
               now: float) -> dict[str, Any]:
        """The ``performance``, ``detectors`` and ``estimate`` (left out without a calibrator or binned scores)
        of one published window, to add to its ``concept`` section."""
        state = self._version(version)
        counts = merged_labels(labels)
        state.windows.append((float(now), counts))
        state.monitor.observe(counts, key=index)
        values = calibration_values(profile)
        last_labels, last_seconds, rolling_counts = self._rolling(state, float(now), values, reference)
        performance = {"window": figures(counts, values, reference, 1, self.min_labels, self.min_positives),
                       "last_labels": last_labels, "last_seconds": last_seconds,
                       "reference": reference_figures(reference), "last_labels_target": self.last_labels,
                       "last_seconds_target": self.last_seconds}
        detectors = state.monitor.summary()
        for name in ("adwin", "page_hinkley", "kswin"):
            if detectors[name]["drift_detected"]:
                state.last_detection[name] = int(index)
            detectors[name]["last_detection_window"] = state.last_detection.get(name)
        kept = [s for s in scores if s is not None]
        merged = None
        if kept:
            from detectors.concept_records import ScoreBins

            merged = ScoreBins()
            for s in kept:
                merged.merge(s)
        out = {"performance": performance, "detectors": detectors}
        estimate = estimate_section(merged, counts, rolling_counts, values, threshold)
        if estimate is not None:
            out["estimate"] = estimate
        return out

