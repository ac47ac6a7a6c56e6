"""Exact precision, recall and AUPRC over the last ``window`` labelled events (delayed labels).

Labels arrive late (the ``labels`` topic); each joined (label, probability) pair is pushed into a ring
buffer of the last ``window`` pairs, and the metrics are recomputed exactly over the buffer on read.
AUPRC is average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in decreasing
order (ties grouped; the same definition as scikit-learn's ``average_precision_score``). A metric that is
undefined (no predicted positives, no actual positives) is ``None``.

>>> perf = RollingPerformance(window=4, threshold=0.5)
>>> for label, prob in [(1, 0.9), (0, 0.8), (1, 0.3), (0, 0.1), (1, 0.7)]:
...     perf.update(label, prob)
>>> perf.n, perf.precision, perf.recall, round(perf.auprc, 4)    # the first pair has left the window
(4, 0.5, 0.5, 0.5833)
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["RollingPerformance", "average_precision"]


def average_precision(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Average precision of ``probs`` for binary ``labels`` (None without positives).

    >>> average_precision(np.array([1, 0, 1]), np.array([0.9, 0.5, 0.5]))
    0.8333333333333333
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]     # last index of each distinct score
    tp = np.cumsum(ys)[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


class RollingPerformance:
    """Precision / recall / AUPRC at ``threshold`` over the last ``window`` labelled events."""

    def __init__(self, window: int = 10_000, threshold: float = 0.5) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window!r}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.window = int(window)
        self.threshold = float(threshold)
        self._reset()

    def _reset(self) -> None:
        self._labels = np.zeros(self.window, dtype=np.int8)
        self._probs = np.zeros(self.window, dtype=np.float64)
        self._next = 0
        self._n = 0

    def update(self, label: int, prob: float) -> None:
        """Add one labelled event."""
        self.update_many(np.array([label]), np.array([prob]))

    def update_many(self, labels: np.ndarray, probs: np.ndarray) -> None:
        """Add labelled events in order (vectorised)."""
        y = np.asarray(labels, dtype=np.int8).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        if y.size != p.size:
            raise ValueError(f"labels and probs differ in length: {y.size} vs {p.size}")
        if y.size > self.window:
            y, p = y[-self.window:], p[-self.window:]
        idx = (self._next + np.arange(y.size)) % self.window
        self._labels[idx], self._probs[idx] = y, p
        self._next = int((self._next + y.size) % self.window)
        self._n = min(self._n + y.size, self.window)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._labels[:self._n] if self._n < self.window else self._labels, \
            self._probs[:self._n] if self._n < self.window else self._probs

    @property
    def n(self) -> int:
        return self._n

    @property
    def positives(self) -> int:
        return int(self._arrays()[0].sum())

    @property
    def precision(self) -> float | None:
        y, p = self._arrays()
        pred = p >= self.threshold
        return float(y[pred].sum() / pred.sum()) if pred.any() else None

    @property
    def recall(self) -> float | None:
        y, p = self._arrays()
        pos = y == 1
        return float((p[pos] >= self.threshold).sum() / pos.sum()) if pos.any() else None

    @property
    def auprc(self) -> float | None:
        y, p = self._arrays()
        return average_precision(y, p) if y.size else None

    def summary(self) -> dict[str, Any]:
        return {"labelled": self.n, "positives": self.positives, "precision": self.precision,
                "recall": self.recall, "auprc": self.auprc, "threshold": self.threshold, "window": self.window}
