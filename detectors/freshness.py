"""Event-time lag quantiles from a fixed, log-spaced, mergeable histogram.

Lags (seconds between an event's time and its processing) are counted in fixed bins: ``(-inf, 1e-3]``,
then 20 bins per decade up to ``1e6`` s, then ``(1e6, +inf)``. Merging is adding counts. A quantile is
reported as the geometric middle of the bin holding the ``ceil(q * n)``-th smallest lag (the
``inverted_cdf`` quantile), so for lags in ``[1e-3, 1e6]`` s the relative error is at most
``10**(1/40) - 1`` (5.9%); lags <= 1 ms (including negative lags from clock skew) report 0.0 and lags
above 1e6 s report 1e6.

>>> h = LagHistogram()
>>> h.update(np.array([0.5, 1.0, 2.0, 4.0, 100.0]))
>>> h.count, round(h.quantile(0.5), 3), round(h.quantile(0.95), 1)
(5, 2.113, 94.4)
>>> LagHistogram().quantile(0.5)
0.0
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["LagHistogram", "LAG_EDGES", "LAG_RELATIVE_ERROR"]

LAG_EDGES = 10.0 ** (np.arange(-3 * 20, 6 * 20 + 1) / 20)
#: Largest relative error of a reported quantile inside [1e-3, 1e6] seconds.
LAG_RELATIVE_ERROR = float(10 ** (1 / 40) - 1)
_MIDDLES = np.concatenate([[0.0], np.sqrt(LAG_EDGES[:-1] * LAG_EDGES[1:]), [LAG_EDGES[-1]]])


class LagHistogram:
    """Counts of lags in :data:`LAG_EDGES` bins (NaN lags are ignored)."""

    def __init__(self) -> None:
        self._counts = np.zeros(LAG_EDGES.size + 1, dtype=np.int64)

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    @property
    def counts(self) -> np.ndarray:
        return self._counts.copy()

    def update(self, lags: np.ndarray) -> None:
        x = np.asarray(lags, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if x.size:
            self._counts += np.bincount(np.searchsorted(LAG_EDGES, x, "left"), minlength=self._counts.size)

    def merge(self, other: "LagHistogram") -> None:
        self._counts += other._counts

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0.0 for an empty histogram)."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        n = self.count
        if n == 0:
            return 0.0
        rank = max(int(np.ceil(q * n)), 1)
        return float(_MIDDLES[int(np.searchsorted(np.cumsum(self._counts), rank, "left"))])

    def to_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero(self._counts)
        return {"i": nz.tolist(), "c": self._counts[nz].tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LagHistogram":
        h = cls()
        h._counts[np.asarray(d["i"], dtype=np.int64)] = np.asarray(d["c"], dtype=np.int64)
        return h
