"""Per-feature window sketches: exact counts that merge by addition.

:class:`NumericSketch` keeps, for one numeric feature, the PSI bin counts (bins of the profile), the KS cell
counts against the profile's reference sample (see :mod:`detectors.ks`), and the missing (NaN) and invalid
(+-inf) counts. PSI bins are kept as their own small array rather than derived from the KS cells because
the PSI edges are quantiles of the whole reference, not points of the KS sample. :class:`CategoricalSketch`
keeps counts per reference category, one "other" count and the missing count.

Both are serialised sparsely (only non-zero cells) as plain lists of ints, so partitions can ship partial
windows and the merged result is bit-for-bit the sketch of the concatenated data.

>>> import numpy as np
>>> from detectors.profile import numeric_reference
>>> ref = NumericReference(numeric_reference(np.arange(100.0), n_bins=4))
>>> a, b = NumericSketch(ref), NumericSketch(ref)
>>> a.update(np.array([1.0, 60.0, np.nan])); b.update(np.array([99.0, np.inf]))
>>> a.merge(b)
>>> a.bins.tolist(), a.missing, a.invalid, a.count
([1, 0, 1, 1], 1, 1, 3)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detectors.errors import SketchError
from detectors.ks import ReferenceCells, ks_pvalue
from detectors.profile import MISSING_CATEGORY_VALUES
from detectors.psi import EPSILON, psi

__all__ = ["NumericReference", "CategoricalReference", "NumericSketch", "CategoricalSketch"]


class NumericReference:
    """A profile's numeric entry, compiled once (edges and KS cells as arrays)."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.edges = np.asarray(entry["edges"], dtype=np.float64)
        self.proportions = np.asarray(entry["proportions"], dtype=np.float64)
        if self.proportions.size != self.edges.size + 1:
            raise SketchError("profile entry has len(proportions) != len(edges) + 1")
        self.cells = ReferenceCells(np.asarray(entry["ks_sample"], dtype=np.float64))
        self.count = int(entry["count"])

    @property
    def n_bins(self) -> int:
        return int(self.proportions.size)


class CategoricalReference:
    """A profile's categorical entry, compiled once (category -> index; index K is "other")."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.categories = list(entry["categories"])
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.proportions = np.asarray(entry["proportions"], dtype=np.float64)
        if self.proportions.size != len(self.categories) + 1:
            raise SketchError("profile entry has len(proportions) != len(categories) + 1")
        self.count = int(entry["count"])

    @property
    def n_bins(self) -> int:
        return int(self.proportions.size)


def _sparse(a: np.ndarray) -> dict[str, list[int]]:
    nz = np.flatnonzero(a)
    return {"i": nz.tolist(), "c": a[nz].tolist()}


def _dense(d: Mapping[str, Any], size: int) -> np.ndarray:
    a = np.zeros(size, dtype=np.int64)
    idx = np.asarray(d["i"], dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise SketchError("sketch payload does not fit the profile (cell index out of range)")
    a[idx] = np.asarray(d["c"], dtype=np.int64)
    return a


class NumericSketch:
    """Counts of one numeric feature in a window (``count`` = finite values)."""

    def __init__(self, ref: NumericReference) -> None:
        self.ref = ref
        self.bins = np.zeros(ref.n_bins, dtype=np.int64)
        self.cells = np.zeros(ref.cells.n_cells, dtype=np.int64)
        self.missing = 0
        self.invalid = 0

    @property
    def count(self) -> int:
        return int(self.bins.sum())

    def update(self, values: np.ndarray) -> None:
        """Add a batch of values (NaN = missing, +-inf = invalid)."""
        self.add(values)

    def add(self, values: np.ndarray) -> np.ndarray:
        """Add a batch; returns the boolean mask of the values that were NaN (missing)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        nan = np.isnan(x)
        finite = np.isfinite(x)
        xf = x[finite] if not finite.all() else x
        self.missing += int(nan.sum())
        self.invalid += int(x.size - finite.sum() - nan.sum())
        if xf.size:
            xs = np.sort(xf)
            # bin i is (e_{i-1}, e_i]: its upper boundary is the number of sorted values <= e_i
            upper = np.searchsorted(xs, self.ref.edges, "right")
            self.bins += np.diff(np.concatenate([[0], upper, [xs.size]]))
            self.cells += self.ref.cells.count(xs, presorted=True)
        return nan

    def merge(self, other: "NumericSketch") -> None:
        self.bins += other.bins
        self.cells += other.cells
        self.missing += other.missing
        self.invalid += other.invalid

    def psi(self, epsilon: float = EPSILON) -> float:
        return psi(self.bins, self.ref.proportions, epsilon) if self.ref.count else 0.0

    def ks(self) -> tuple[float, float]:
        """``(D, p-value)`` against the reference sample; ``(0.0, 1.0)`` when either side is empty."""
        d = self.ref.cells.statistic(self.cells)
        return d, ks_pvalue(d, self.count, self.ref.cells.m)

    def to_dict(self) -> dict[str, Any]:
        return {"bins": self.bins.tolist(), "cells": _sparse(self.cells), "missing": self.missing,
                "invalid": self.invalid}

    @classmethod
    def from_dict(cls, ref: NumericReference, d: Mapping[str, Any]) -> "NumericSketch":
        s = cls(ref)
        bins = np.asarray(d["bins"], dtype=np.int64)
        if bins.size != s.bins.size:
            raise SketchError("sketch payload does not fit the profile (bin count differs)")
        s.bins = bins
        s.cells = _dense(d["cells"], s.cells.size)
        s.missing, s.invalid = int(d["missing"]), int(d["invalid"])
        return s


class CategoricalSketch:
    """Counts of one categorical feature in a window: reference categories, then "other"."""

    def __init__(self, ref: CategoricalReference) -> None:
        self.ref = ref
        self.counts = np.zeros(ref.n_bins, dtype=np.int64)
        self.missing = 0

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def update(self, values: np.ndarray) -> None:
        """Add a batch of values (strings; None/""/"nan" are missing)."""
        self.add(values)

    def add(self, values: np.ndarray) -> np.ndarray:
        """Add a batch; returns the boolean mask of missing values."""
        v = np.asarray(values)
        if v.dtype.kind != "U":
            v = v.astype(str)
        v = v.ravel()
        uniq, inverse = np.unique(v, return_inverse=True)
        other = len(self.ref.categories)
        codes_u = np.array([-1 if u in MISSING_CATEGORY_VALUES else self.ref.index.get(u, other) for u in uniq.tolist()],
                           dtype=np.int64)
        codes = codes_u[inverse.ravel()] if v.size else np.empty(0, dtype=np.int64)
        miss = codes < 0
        self.missing += int(miss.sum())
        self.counts += np.bincount(codes[~miss], minlength=self.counts.size)
        return miss

    def merge(self, other: "CategoricalSketch") -> None:
        self.counts += other.counts
        self.missing += other.missing

    def psi(self, epsilon: float = EPSILON) -> float:
        return psi(self.counts, self.ref.proportions, epsilon) if self.ref.count else 0.0

    def chi2(self) -> tuple[float, float]:
        """Two-sample chi-square (window counts vs reference counts, columns with data only): ``(stat, p)``.

        Using the reference *counts* (not a known distribution) keeps categories that are new in the window
        ("other" with a reference proportion of 0) finite. ``(0.0, 1.0)`` when either side is empty.
        """
        from scipy.special import chdtrc   # = chi2.sf, without rv_continuous's argument checks

        n = self.count
        if n == 0 or self.ref.count == 0:
            return 0.0, 1.0
        table = np.vstack([self.counts.astype(np.float64), self.ref.proportions * self.ref.count])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            return 0.0, 1.0
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        stat = float(((table - expected) ** 2 / expected).sum())
        return stat, float(chdtrc(table.shape[1] - 1, stat))

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "missing": self.missing}

    @classmethod
    def from_dict(cls, ref: CategoricalReference, d: Mapping[str, Any]) -> "CategoricalSketch":
        s = cls(ref)
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.size != s.counts.size:
            raise SketchError("sketch payload does not fit the profile (category count differs)")
        s.counts, s.missing = counts, int(d["missing"])
        return s
