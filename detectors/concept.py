"""Concept drift: the drift.stats ``concept`` section (:func:`concept_section`, from a window's label counts
and the model's own test metrics) and a monitor of river detectors (:class:`ConceptMonitor`).

:func:`concept_section` is what the worker publishes: the confusion counts of the window's labelled events
(delayed labels joined to their scores), precision, recall, Brier score and error rate, the model's
reference figures (``metadata.json["metrics"]["test"]``) and the relative drop ``(reference - current) /
reference`` of precision and recall. A drop is ``None`` unless the window has ``min_labels`` labelled events
and the metric's own denominator (actual frauds for recall, predicted frauds for precision) reaches
``min_positives``: a few labels give a noisy rate, not a drop.

>>> section = concept_section([{"n": 300, "tp": 20, "fp": 10, "fn": 20, "tn": 250, "brier": 9.0},
...                            {"n": 100, "tp": 5, "fp": 5, "fn": 10, "tn": 80, "brier": 3.0}],
...                           {"precision": 0.8, "recall": 0.9, "f1": 0.85, "auprc": 0.9, "rows": 5000})
>>> section["labelled"], section["precision"], round(section["recall"], 4), section["error_rate"]
(400, 0.625, 0.4545, 0.1125)
>>> section["reference"]["recall"], round(section["performance_drop"]["recall"], 4)
(0.9, 0.4949)
>>> concept_section([])["performance_drop"], "reference" in concept_section([])
({'precision': None, 'recall': None}, False)

:class:`ConceptMonitor` runs river's sequential detectors on the per-label streams of one model version:
ADWIN on the absolute error ``|label - probability|``, Page-Hinkley on the log loss (upward changes only:
a model that gets better is not an incident) and KSWIN on the absolute error of a bounded sample of each
window's labels (KSWIN costs a KS test per value, ~0.4 ms: where labels are few it sees every one).
River's detectors are sequential and not mergeable, so one monitor per model version runs where the
labels of every partition meet: the aggregator (:class:`detectors.health.ModelHealth`).

The partials carry no per-label pairs: a window's labels arrive as binned counts
(:class:`detectors.records.LabelCounts`: the labelled events' probabilities on the grid of
:mod:`detectors.binning`, frauds and genuine apart). :meth:`ConceptMonitor.observe` expands them back into
one (label, bin probability) pair per label, in a seeded random order within the window (the order across
windows is kept), and feeds those. Bounded size on the wire, exact counts, and the detectors see every
label; what is lost is the order inside a window and the exact probability inside a bin (a bin is 3% wide
at p = 0.5), both far below what the detectors resolve.

>>> import numpy as np
>>> from detectors.records import LabelCounts
>>> rng = np.random.default_rng(0)
>>> monitor = ConceptMonitor(seed=0)
>>> def window(miss):                     # 2,000 labels, 5% fraud; the model misses a share of the frauds
...     c = LabelCounts()
...     for y in (rng.random(2000) < 0.05).astype(int).tolist():
...         c.add(y, float(rng.uniform(0.001, 0.3) if y and rng.random() < miss else
...                        rng.uniform(0.7, 1) if y else rng.uniform(0, 0.05)), 0)
...     return c
>>> for i in range(5):
...     monitor.observe(window(0.1), key=i)
>>> monitor.summary()["drift_detected"]
False
>>> for i in range(5, 8):
...     monitor.observe(window(0.8), key=i)        # the model now misses most frauds
>>> s = monitor.summary()
>>> s["adwin"]["drift_detected"], s["page_hinkley"]["drift_detected"], s["labels"]
(True, True, 16000)
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import msgspec
import numpy as np

from detectors.adwin import AdwinDrift
from detectors.binning import bin_centers, dense
from detectors.kswin import KswinDrift
from detectors.page_hinkley import PageHinkleyDrift

__all__ = ["ConceptMonitor", "concept_section", "REFERENCE_METRICS", "LABEL_COUNT_KEYS"]

#: The model's test metrics copied into ``concept.reference``.
REFERENCE_METRICS = ("precision", "recall", "f1", "auprc")
#: The keys of one partition's label counts (``detectors.records.LabelCounts``).
LABEL_COUNT_KEYS = ("n", "tp", "fp", "fn", "tn", "brier", "abs_error")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        return None
    return float(value)


def _drop(reference: float | None, current: float | None, enough: bool) -> float | None:
    if not enough or reference is None or current is None or reference <= 0:
        return None
    return (reference - current) / reference


def concept_section(label_counts: Iterable[Mapping[str, Any] | msgspec.Struct],
                    reference: Mapping[str, Any] | None = None, min_labels: int = 100,
                    min_positives: int = 20) -> dict[str, Any]:
    """The drift.stats ``concept`` object of a window (see the module docstring).

    ``label_counts``: one mapping (or :class:`detectors.records.LabelCounts`) per partition with
    :data:`LABEL_COUNT_KEYS` (absent keys count 0); ``reference``: the model's metrics on its test slice
    (``metadata.json["metrics"]["test"]``) or ``None``; ``concept.reference`` is left out when it holds
    none of :data:`REFERENCE_METRICS`.
    """
    tot = dict.fromkeys(LABEL_COUNT_KEYS, 0.0)
    for counts in label_counts:
        c = msgspec.structs.asdict(counts) if isinstance(counts, msgspec.Struct) else counts
        for k in tot:
            tot[k] += float(c.get(k, 0) or 0)
    n, tp, fp, fn, tn = (int(tot[k]) for k in ("n", "tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    out: dict[str, Any] = {"labelled": n, "precision": precision, "recall": recall,
                           "brier": tot["brier"] / n if n else None, "error_rate": (fp + fn) / n if n else None,
                           "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    ref = {m: _number((reference or {}).get(m)) for m in REFERENCE_METRICS}
    if any(v is not None for v in ref.values()):
        out["reference"] = ref
    enough = n >= min_labels
    out["performance_drop"] = {"precision": _drop(ref["precision"], precision, enough and tp + fp >= min_positives),
                               "recall": _drop(ref["recall"], recall, enough and tp + fn >= min_positives)}
    return out


class ConceptMonitor:
    """River's detectors on the per-label streams of one model version (see the module docstring).

    Parameters
    ----------
    adwin_delta
        ADWIN's confidence on the absolute-error stream.
    ph_threshold, ph_delta
        Page-Hinkley's alarm level and tolerance on the log loss (per label, capped at ``loss_cap``).
    kswin_sample
        Labels of each window fed to KSWIN (all of them when a window has fewer).
    seed
        Seeds the order of a window's labels and KSWIN's sample (with the window's ``key``).

    The defaults are calibrated on 1M calm simulated events with labels (no detection:
    tests/test_concept_calm.py) and docs/detectors.md gives the detection delays.
    """

    def __init__(self, adwin_delta: float = 1e-4, ph_threshold: float = 50.0, ph_delta: float = 0.05,
                 loss_cap: float = 10.0, kswin_sample: int = 64, kswin_alpha: float = 1e-6, seed: int = 0) -> None:
        if kswin_sample < 0:
            raise ValueError(f"kswin_sample must be >= 0, got {kswin_sample!r}")
        if loss_cap <= 0:
            raise ValueError(f"loss_cap must be > 0, got {loss_cap!r}")
        self.adwin_delta = adwin_delta
        self.ph_threshold = ph_threshold
        self.ph_delta = ph_delta
        self.loss_cap = loss_cap
        self.kswin_sample = kswin_sample
        self.kswin_alpha = kswin_alpha
        self.seed = seed
        self._reset()

    def _reset(self) -> None:
        self._detectors = {"adwin": AdwinDrift(delta=self.adwin_delta),
                           "page_hinkley": PageHinkleyDrift(threshold=self.ph_threshold, delta=self.ph_delta,
                                                            min_instances=1000, mode="up"),
                           "kswin": KswinDrift(alpha=self.kswin_alpha, seed=self.seed)}
        self._streams = {"adwin": "abs_error", "page_hinkley": "log_loss", "kswin": "abs_error_sample"}
        self._reported = dict.fromkeys(self._detectors, 0)
        self._labels = 0

    def update_labels(self, labels: np.ndarray, probs: np.ndarray, kswin: np.ndarray | None = None) -> None:
        """Feed labelled events in order (label 0/1, the model's probability); ``kswin``: a mask of those
        KSWIN sees (default: all)."""
        y = np.asarray(labels, dtype=np.float64).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        err = np.abs(y - p)
        q = np.clip(p, 1e-7, 1 - 1e-7)
        loss = np.minimum(-np.where(y == 1, np.log(q), np.log1p(-q)), self.loss_cap)
        self._detectors["adwin"].update_many(err.tolist())
        self._detectors["page_hinkley"].update_many(loss.tolist())
        self._detectors["kswin"].update_many((err if kswin is None else err[kswin]).tolist())
        self._labels += int(y.size)

    def observe(self, counts: Any, key: int = 0) -> None:
        """Feed one window's labels (:class:`detectors.records.LabelCounts`, binned) in a seeded order."""
        pos, neg = dense(counts.positive_bins), dense(counts.negative_bins)
        n = int(pos.sum() + neg.sum())
        if n == 0:
            return
        centers = bin_centers()
        y = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
        p = np.r_[np.repeat(centers, pos), np.repeat(centers, neg)]
        rng = np.random.default_rng([self.seed, int(key)])
        order = rng.permutation(n)
        sample = np.zeros(n, dtype=bool)
        sample[rng.choice(n, size=min(n, self.kswin_sample), replace=False)] = True
        self.update_labels(y[order], p[order], sample)

    def summary(self) -> dict[str, Any]:
        """The drift.stats ``concept.detectors`` object; detections count since the previous call."""
        out: dict[str, Any] = {"labels": self._labels}
        for name, d in self._detectors.items():
            s = d.summary(since=self._reported[name])
            self._reported[name] = d.n_seen
            out[name] = {"detector": name, "stream": self._streams[name], "n": s["n"], "detections": s["detections"],
                         "last_detection": s["last_detection"], "drift_detected": s["drift_detected"]}
        out["drift_detected"] = any(out[k]["drift_detected"] for k in self._detectors)
        return out
