"""The label-free estimate: a window's precision, recall and fraud rate from calibrated probabilities, before
its labels arrive (confidence-based performance estimation, NannyML's CBPE).

If the calibrated probability ``q`` of an event is its chance of being fraud, then over a window's scored
events the expected true positives are the sum of ``q`` over the flagged events (``probability >=
threshold``), the expected false negatives the sum over the others, and so on::

    TP = sum_flagged q     FP = flagged - TP     FN = sum_not_flagged q     fraud rate = sum q / events
    precision = TP / flagged      recall = TP / (TP + FN)      F1 = 2 P R / (P + R)

and an expected AUPRC comes from the binned curve with ``q * count`` frauds and ``(1 - q) * count``
genuine events in each bin. The calibrator (:class:`models.calibrator.Calibrator`, fitted on the
validation slice, in the profile under ``calibration``) is a step function on the probability grid of
:mod:`detectors.binning`, and each partial carries its window's scores binned on that grid
(:class:`detectors.concept_records.ScoreBins`), so the sums above are exact for the calibrator: the error
of the estimate is the calibrator's (and the assumption that the fraud pattern did not change, which is
what concept drift breaks: the estimate does not see first-party fraud the model scores low).

When labels arrive, the same estimate is made on the labelled events (their bins travel in the label
counts; the flagged ones are the bins above the threshold's bin plus the rest of ``tp + fp`` in that
bin) and set next to the realised figures (``window_check``, ``rolling_check``: ``error = estimated -
realised``). Measured on calm simulated traffic: tests/test_estimate.py and docs/detectors.md.

>>> import numpy as np
>>> from detectors.concept_records import ScoreBins
>>> values = np.linspace(0.0, 1.0, 256)                        # a made-up calibrator
>>> est = estimate_rates(ScoreBins.of([0.001, 0.002, 0.9, 0.95], threshold=0.5), values)
>>> est["events"], est["flagged"], round(est["precision"], 3), round(est["fraud_rate"], 3)
(4, 2, 0.58, 0.437)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detectors.binning import GRID, N_BINS, bin_of, binned_average_precision, dense

__all__ = ["calibration_values", "estimate_rates", "labelled_estimate", "estimate_section", "METHOD"]

METHOD = "cbpe"


def calibration_values(profile: Mapping[str, Any] | None) -> np.ndarray | None:
    """The calibrator's rate per bin from a profile (``None``: no calibrator, or one of another grid)."""
    cal = (profile or {}).get("calibration")
    if not isinstance(cal, Mapping) or cal.get("grid") != GRID:
        return None
    values = np.asarray(cal.get("values", ()), dtype=np.float64)
    return values if values.shape == (N_BINS,) and np.all(np.isfinite(values)) else None


def _div(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def _rates(counts: np.ndarray, flagged: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    tp = float(np.dot(flagged, values))
    fn = float(np.dot(counts - flagged, values))
    n_flagged, events = float(flagged.sum()), float(counts.sum())
    precision, recall = _div(tp, n_flagged), _div(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (
        0.0 if precision is not None and recall is not None else None)
    return {"events": int(events), "flagged": int(n_flagged), "precision": precision, "recall": recall, "f1": f1,
            "fraud_rate": _div(tp + fn, events)}


def estimate_rates(scores: Any, values: np.ndarray) -> dict[str, Any]:
    """Expected figures of a window's binned scores (:class:`~detectors.concept_records.ScoreBins`)."""
    counts, flagged = dense(scores.bins), dense(scores.flagged)
    out = _rates(counts, flagged, values)
    expected = counts * values
    out["auprc"] = binned_average_precision(expected, counts - expected)
    return out


def _flagged_labelled(pos: np.ndarray, neg: np.ndarray, flagged: int, threshold: float | None) -> np.ndarray:
    """Flagged labelled events per bin: every one above the threshold's bin, the rest of ``flagged`` in it."""
    counts = pos + neg
    out = np.zeros(N_BINS, dtype=np.int64)
    if threshold is None:
        return out
    tb = int(bin_of(np.array([threshold]))[0])
    out[tb + 1:] = counts[tb + 1:]
    out[tb] = min(max(int(flagged) - int(out.sum()), 0), int(counts[tb]))
    return out


def labelled_estimate(labels: Any, values: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """The estimate on a set of labelled events (merged :class:`detectors.records.LabelCounts`) next to the
    realised figures: an :class:`~detectors.concept_records.EstimateCheck` dict."""
    pos, neg = dense(labels.positive_bins), dense(labels.negative_bins)
    est = _rates(pos + neg, _flagged_labelled(pos, neg, labels.tp + labels.fp, threshold), values)
    tp, fp, fn, n = labels.tp, labels.fp, labels.fn, labels.n
    binned = int((pos + neg).sum())          # labels of older partials carry no bins: no estimate for them
    realised = {"precision": _div(tp, tp + fp), "recall": _div(tp, tp + fn), "fraud_rate": _div(tp + fn, n)}
    estimated = {k: est[k] for k in realised} if binned == n and n else dict.fromkeys(realised)
    error = {k: (estimated[k] - realised[k]) if estimated[k] is not None and realised[k] is not None else None
             for k in realised}
    return {"labelled": int(n), "estimated": estimated, "realised": realised, "error": error}


def estimate_section(scores: Any, window_labels: Any, rolling_labels: Any, values: np.ndarray | None,
                     threshold: float | None) -> dict[str, Any] | None:
    """The drift.stats ``concept.estimate`` object (:class:`~detectors.concept_records.Estimate`), or
    ``None`` without a calibrator or without binned scores (partials of an older worker)."""
    if values is None or scores is None:
        return None
    return {"method": METHOD, "calibrator": "binned_isotonic on the validation slice",
            **estimate_rates(scores, values),
            "window_check": labelled_estimate(window_labels, values, threshold),
            "rolling_check": labelled_estimate(rolling_labels, values, threshold)}
