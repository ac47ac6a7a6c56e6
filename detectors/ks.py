"""Exact two-sample Kolmogorov-Smirnov statistic from mergeable cell counts.

The reference sample ``R`` (sorted, ``m`` points, ``d`` distinct values ``u_1 < ... < u_d``) cuts the line
into ``2d + 1`` cells: ``(-inf, u_1), {u_1}, (u_1, u_2), {u_2}, ..., {u_d}, (u_d, +inf)``. A window is kept
as the count of its values in each cell (``cell = searchsorted(u, x, 'left') + searchsorted(u, x, 'right')``),
so merging windows is adding counts.

Why D is exact: ``F_R`` is constant inside each open cell and ``F_W`` is non-decreasing, so on an open cell
``|F_W - F_R|`` is largest at its left end (the previous cell's end) or at its last window point, whose
``F_W`` is the cumulative count through the cell. Evaluating ``C_k / n - G_k / m`` after every cell ``k``
(``C`` cumulative window counts, ``G`` reference counts ``< u_j`` for open cells and ``<= u_j`` for point
cells) therefore visits every value scipy's ``ks_2samp`` evaluates (``searchsorted(..., 'right') / n``
at all pooled points) plus repeats, with the same floating-point operations: ``D`` is bit-for-bit equal to ``ks_2samp(window, R).statistic``
(default method; like scipy, when ``max(n, m) <= 10000`` D is snapped to the rational ``h / lcm(n, m)``
it equals, removing the rounding of the subtraction).

p-value: ``scipy.stats.kstwo.sf(D, round(n*m/(n+m)))``, exactly what ``ks_2samp(..., method='asymp')``
returns for the two-sided test.

>>> import numpy as np
>>> from scipy.stats import ks_2samp
>>> ref = ReferenceCells(np.array([1.0, 2.0, 2.0, 3.0]))
>>> w = np.array([0.5, 2.0, 2.5, 9.0])
>>> counts = ref.count(w)
>>> counts.tolist()
[1, 0, 0, 1, 1, 0, 1]
>>> d = ref.statistic(counts)
>>> bool(d == ks_2samp(w, ref.sample).statistic)
True
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ReferenceCells", "ks_pvalue", "ks_critical"]


class ReferenceCells:
    """The cell structure of a sorted reference sample; counts windows and computes D from cell counts."""

    def __init__(self, sample: np.ndarray) -> None:
        s = np.sort(np.asarray(sample, dtype=np.float64).ravel())
        if s.size and not np.all(np.isfinite(s)):
            raise ValueError("sample must hold finite values only")
        self.sample = s
        self.m = int(s.size)
        self.values, counts = np.unique(s, return_counts=True)
        le = np.cumsum(counts)                       # #R <= u_j
        lt = le - counts                             # #R <  u_j
        # reference cumulative count after each cell: open cell 2j -> #R < u_j, point cell 2j+1 -> #R <= u_j
        g = np.empty(2 * self.values.size + 1, dtype=np.int64)
        g[0:-1:2] = lt
        g[1::2] = le
        g[-1] = self.m
        self.ref_cum = g

    @property
    def n_cells(self) -> int:
        return int(self.ref_cum.size)

    def cells(self, x: np.ndarray) -> np.ndarray:
        """Cell index of each finite value of ``x``."""
        return np.searchsorted(self.values, x, "left") + np.searchsorted(self.values, x, "right")

    def count(self, x: np.ndarray, presorted: bool = False) -> np.ndarray:
        """Cell counts (int64, length ``2d + 1``) of the finite values ``x``.

        Sorting the batch and locating the reference points in it (``O(n log n + d log n)``) beats locating
        every value among the reference points: the boundaries of cell ``k`` are positions in the sorted batch.
        """
        xs = np.asarray(x, dtype=np.float64) if presorted else np.sort(np.asarray(x, dtype=np.float64))
        bounds = np.empty(2 * self.values.size + 2, dtype=np.int64)
        bounds[0], bounds[-1] = 0, xs.size
        bounds[1:-1:2] = np.searchsorted(xs, self.values, "left")
        bounds[2:-1:2] = np.searchsorted(xs, self.values, "right")
        return np.diff(bounds)

    def statistic(self, counts: np.ndarray) -> float:
        """Two-sided KS ``D`` between the window given by ``counts`` and the reference (0.0 if either is empty)."""
        counts = np.asarray(counts)
        n = int(counts.sum())
        if n == 0 or self.m == 0:
            return 0.0
        diffs = np.cumsum(counts) / n - self.ref_cum / self.m
        d = float(max(diffs.max(), np.clip(-diffs.min(), 0, 1)))
        # As ks_2samp's default mode: when its 'exact' method applies, D is snapped to the rational h / lcm(n, m)
        # it really is (removing the subtraction's rounding); otherwise the float difference is kept.
        g = math.gcd(n, self.m)
        if max(n, self.m) <= 10000 and n // g < np.iinfo(np.int32).max / (self.m // g):
            lcm = (n // g) * self.m
            d = int(np.round(d * lcm)) * 1.0 / lcm
        return d


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided asymptotic p-value as ``scipy.stats.ks_2samp(..., method='asymp')``; 1.0 if undefined.

    >>> round(ks_pvalue(0.1, 10000, 2000), 6)
    0.0
    >>> ks_pvalue(0.0, 0, 100)
    1.0
    """
    from scipy.stats import kstwo

    if n <= 0 or m <= 0:
        return 1.0
    big, small = sorted([float(n), float(m)], reverse=True)
    en = np.round(big * small / (big + small))
    if en < 1:
        return 1.0
    return float(np.clip(kstwo.sf(d, en), 0, 1))


def ks_critical(n: int, m: int, alpha: float) -> float:
    """The D above which ``ks_pvalue(D, n, m) < alpha`` (1.0 when the test cannot reject at this size).

    >>> round(ks_critical(10000, 2000, 0.001), 4)
    0.0476
    """
    from scipy.stats import kstwo

    if n <= 0 or m <= 0:
        return 1.0
    big, small = sorted([float(n), float(m)], reverse=True)
    en = np.round(big * small / (big + small))
    if en < 1:
        return 1.0
    value = float(kstwo.isf(alpha, en))
    return min(value, 1.0) if math.isfinite(value) else 1.0
