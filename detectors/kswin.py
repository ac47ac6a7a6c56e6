"""KSWIN on a low-rate stream, e.g. the delayed-label error stream (river.drift.KSWIN).

KSWIN runs a KS test between the last ``stat_size`` values and a random sample of the older part of a
sliding window of ``window_size`` values at every update. It costs a scipy KS test per value (~0.2 ms), so
use it where values arrive slowly (labelled errors), not on the full score stream. ``alpha`` is the
per-update test level: with ~1 test per value, keep it small.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> errors = np.r_[rng.beta(1, 20, 600), rng.beta(2, 5, 600)]     # model error jumps at index 600
>>> kswin = KswinDrift(seed=0)
>>> for i, e in enumerate(errors):
...     kswin.update(e)
...     if kswin.drift_detected:
...         print(f"Change detected at index {i}")
...         break
Change detected at index 645
"""
from __future__ import annotations

from detectors.base import StreamDetector

__all__ = ["KswinDrift"]


class KswinDrift(StreamDetector):
    name = "kswin"

    def __init__(self, alpha: float = 1e-5, window_size: int = 300, stat_size: int = 100, seed: int = 0) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if not 0 < stat_size < window_size:
            raise ValueError(f"stat_size must be in (0, window_size), got {stat_size!r}")
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.seed = seed
        super().__init__()

    def _make(self):
        from river.drift import KSWIN

        return KSWIN(alpha=self.alpha, window_size=self.window_size, stat_size=self.stat_size, seed=self.seed)
