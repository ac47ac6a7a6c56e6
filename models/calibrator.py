"""The model's calibrator: fraud probabilities mapped to observed fraud rates, fitted on the validation slice.

XGBoost trained with ``scale_pos_weight = negatives / positives`` ranks well but over-predicts: its
probabilities are not fraud rates. The label-free estimate (:mod:`detectors.estimate`) needs rates, so
training fits a calibrator on the validation slice (out of sample, the slice the threshold was chosen on)
and stores it in the drift profile (``profile.json``, key ``calibration``), where the aggregator reads it.

Method (``binned_isotonic``): isotonic regression (pool adjacent violators) over the bins of the one
probability grid (:mod:`detectors.binning`): each bin's fraud rate, weighted by its events, pooled until
non-decreasing; empty bins take the value of the nearest fitted bin below (above, below the first). The
result is a step function *on the grid*, so a window's histogram on the same grid gives the exact sum
of its calibrated probabilities (no within-bin approximation). Plain numpy (no scikit-learn: ~40 lines).

Stored as a plain dict (JSON): ``{"method", "grid", "values": [N_BINS floats], "rows", "positives",
"brier_raw", "brier_calibrated"}`` (Brier scores of the test slice before and after). Old artifacts have
none: the estimate is then left out of drift.stats.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.random(50000)
>>> y = (rng.random(50000) < p ** 2).astype(int)              # over-predicted: the true rate is p squared
>>> cal = Calibrator.fit(y, p)
>>> np.round(cal.apply(np.array([0.1, 0.5, 0.9])), 2).tolist(), bool(np.all(np.diff(cal.values) >= 0))
([0.01, 0.26, 0.83], True)
>>> Calibrator.from_dict(cal.to_dict()).values.tolist() == cal.values.tolist()
True
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detectors.binning import GRID, N_BINS, bin_of
from models.errors import ModelError

__all__ = ["Calibrator", "METHOD", "pool_adjacent_violators"]

METHOD = "binned_isotonic"


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares.

    >>> pool_adjacent_violators(np.array([0.1, 0.3, 0.2, 0.5]), np.array([1.0, 1.0, 1.0, 1.0])).tolist()
    [0.1, 0.25, 0.25, 0.5]
    """
    means: list[float] = []
    sizes: list[float] = []
    lengths: list[int] = []
    for v, w in zip(np.asarray(values, dtype=np.float64).tolist(), np.asarray(weights, dtype=np.float64).tolist()):
        means.append(v)
        sizes.append(w)
        lengths.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            w2 = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / w2
            sizes[-2] = w2
            lengths[-2] += lengths[-1]
            del means[-1], sizes[-1], lengths[-1]
    return np.repeat(np.asarray(means), lengths)


class Calibrator:
    """A non-decreasing fraud rate per bin of the probability grid (see the module docstring)."""

    def __init__(self, values: Any, rows: int = 0, positives: int = 0) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (N_BINS,) or not np.all(np.isfinite(v)) or v.min() < 0 or v.max() > 1:
            raise ValueError(f"values must be {N_BINS} rates in [0, 1], got shape {v.shape}")
        self.values = v
        self.rows = int(rows)
        self.positives = int(positives)

    @classmethod
    def fit(cls, labels: Any, probabilities: Any) -> "Calibrator":
        """Fit on labelled scores (the validation slice); ``ValueError`` without any."""
        y = np.asarray(labels, dtype=np.float64).ravel()
        b = bin_of(np.asarray(probabilities, dtype=np.float64).ravel())
        if y.size == 0 or y.size != b.size:
            raise ValueError(f"need labels and probabilities of the same non-zero length, got {y.size} and {b.size}")
        n = np.bincount(b, minlength=N_BINS).astype(np.float64)
        k = np.bincount(b, weights=y, minlength=N_BINS)
        seen = np.flatnonzero(n)
        fitted = pool_adjacent_violators(k[seen] / n[seen], n[seen])
        # every bin takes the value of the nearest fitted bin at or below it (the first fitted one below it)
        at = np.clip(np.searchsorted(seen, np.arange(N_BINS), side="right") - 1, 0, seen.size - 1)
        return cls(fitted[at], rows=y.size, positives=int(y.sum()))

    def apply(self, probabilities: Any) -> np.ndarray:
        """Calibrated probabilities (fraud rates)."""
        return self.values[bin_of(probabilities)]

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {"method": METHOD, "grid": GRID, "values": self.values.tolist(), "rows": self.rows,
                "positives": self.positives, **extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Calibrator":
        """Rebuild a stored calibrator; :class:`ModelError` if it is not one this version reads."""
        if not isinstance(d, Mapping) or d.get("method") != METHOD or d.get("grid") != GRID:
            raise ModelError(f"unsupported calibrator (method {d.get('method') if isinstance(d, Mapping) else d!r}, "
                             f"grid {d.get('grid') if isinstance(d, Mapping) else None!r}); retrain the model")
        try:
            return cls(d["values"], d.get("rows", 0), d.get("positives", 0))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed calibrator: {e}") from None
