"""Concept-drift monitor: ADWIN and Page-Hinkley on the score stream and, once delayed labels arrive, on
the error stream, plus rolling precision/recall/AUPRC; ``summary()`` is the drift.stats ``concept`` object.

River's detectors are sequential and not mergeable, so one monitor runs where the streams meet (the
aggregator / label join), not per partition. The error of a labelled event is ``|label - probability|``
(``error="absolute"``) or the 0/1 mistake at the threshold (``error="zero_one"``). KSWIN runs on the
error stream only (labels are far fewer than events; KSWIN costs a KS test per value).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> monitor = ConceptMonitor(threshold=0.5)
>>> monitor.update_scores(rng.beta(1, 30, 2000))
>>> monitor.update_scores(rng.beta(1, 8, 2000))           # the scores shift
>>> s = monitor.summary()
>>> s["score"]["adwin"]["drift_detected"], s["drift_detected"]
(True, True)
>>> s2 = monitor.summary()                                 # detections are reported once
>>> s2["score"]["adwin"]["detections"], s2["drift_detected"]
(0, False)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from detectors.adwin import AdwinDrift
from detectors.kswin import KswinDrift
from detectors.page_hinkley import PageHinkleyDrift
from detectors.performance import RollingPerformance

__all__ = ["ConceptMonitor"]

_ERRORS = ("absolute", "zero_one")


class ConceptMonitor:
    """Score-stream and error-stream detectors plus rolling performance (see the module docstring)."""

    def __init__(self, threshold: float = 0.5, performance_window: int = 10_000, error: str = "absolute",
                 kswin: bool = True) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        if error not in _ERRORS:
            raise ValueError(f"error must be one of {_ERRORS}, got {error!r}")
        self.threshold = threshold
        self.performance_window = performance_window
        self.error = error
        self.kswin = kswin
        self._reset()

    def _reset(self) -> None:
        self._score = {"adwin": AdwinDrift(), "page_hinkley": PageHinkleyDrift()}
        self._error = {"adwin": AdwinDrift(), "page_hinkley": PageHinkleyDrift()}
        if self.kswin:
            self._error["kswin"] = KswinDrift()
        self._performance = RollingPerformance(self.performance_window, self.threshold)
        self._reported = {("score", k): 0 for k in self._score} | {("error", k): 0 for k in self._error}

    def update_scores(self, probs: np.ndarray) -> None:
        """Feed scored events' fraud probabilities, in event order."""
        for d in self._score.values():
            d.update_many(np.asarray(probs, dtype=np.float64).ravel().tolist())

    def update_labels(self, labels: np.ndarray, probs: np.ndarray) -> None:
        """Feed labelled events (label 0/1 and the probability the model gave them)."""
        y = np.asarray(labels, dtype=np.float64).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        self._performance.update_many(y, p)
        err = np.abs(y - p) if self.error == "absolute" else ((p >= self.threshold) != (y == 1)).astype(float)
        for d in self._error.values():
            d.update_many(err.tolist())

    @property
    def performance(self) -> RollingPerformance:
        return self._performance

    def summary(self) -> dict[str, Any]:
        """JSON-able summary; detections are counted since the previous ``summary()`` call."""
        out: dict[str, Any] = {"score": {}, "error": {}}
        for stream, dets in (("score", self._score), ("error", self._error)):
            for name, d in dets.items():
                out[stream][name] = d.summary(since=self._reported[(stream, name)])
                self._reported[(stream, name)] = d.n_seen
        out["performance"] = self._performance.summary()
        out["drift_detected"] = any(v["drift_detected"] for s in ("score", "error") for v in out[s].values())
        return out
