"""Page-Hinkley on a score or error stream (river.drift.PageHinkley).

Page-Hinkley accumulates deviations from the running mean (minus a tolerance ``delta``) and flags drift
when the cumulative sum leaves its extreme by more than ``threshold``. Unlike river's default (threshold
50, for unscaled data) the defaults here suit values in [0, 1] such as fraud probabilities or errors:
measured 2 alarms per 100,000 calm ``Beta(1, 30)`` scores with threshold 5 and delta 0.01.

Parameters
----------
threshold
    Cumulative deviation that raises drift.
delta
    Tolerated deviation per value.
min_instances
    Values seen before drift can be raised.
mode
    ``"up"``, ``"down"`` or ``"both"``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(42)
>>> stream = np.r_[rng.beta(1, 30, 1000), rng.beta(1, 10, 1000)]   # mean score 0.03 -> 0.09 at index 1000
>>> ph = PageHinkleyDrift(mode="up")
>>> for i, x in enumerate(stream):
...     ph.update(x)
...     if ph.drift_detected:
...         print(f"Change detected at index {i}")
Change detected at index 1121
"""
from __future__ import annotations

from detectors.base import StreamDetector

__all__ = ["PageHinkleyDrift"]

_MODES = ("up", "down", "both")


class PageHinkleyDrift(StreamDetector):
    name = "page_hinkley"

    def __init__(self, threshold: float = 5.0, delta: float = 0.01, min_instances: int = 30,
                 mode: str = "both") -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if delta < 0:
            raise ValueError(f"delta must be >= 0, got {delta!r}")
        if min_instances < 1:
            raise ValueError(f"min_instances must be >= 1, got {min_instances!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.threshold = threshold
        self.delta = delta
        self.min_instances = min_instances
        self.mode = mode
        super().__init__()

    def _make(self):
        from river.drift import PageHinkley

        return PageHinkley(min_instances=self.min_instances, delta=self.delta, threshold=self.threshold,
                           mode=self.mode)
