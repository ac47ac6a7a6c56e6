"""One fixed grid of fraud probabilities, shared by everything that bins a score: the label counts' AUPRC
histograms, the window's score histogram for the label-free estimate and the model's calibrator.

The grid is uniform in log-odds: :data:`N_BINS` bins of :data:`LOGIT_WIDTH` between ``-LOGIT_LIMIT`` and
``+LOGIT_LIMIT`` (probabilities 1.1e-7 to 1 - 1.1e-7; values outside fall in the end bins). Fraud scores
crowd both ends of [0, 1]; in log-odds a bin is 3% wide at p = 0.5 and 0.0125% at p = 0.001, so both the
mass of genuine scores near 0 and the frauds near 1 are resolved. Because every worker, every partition
and every model uses the same grid, histograms merge by adding counts, in any order.

Histograms travel sparse, as ``{bin: count}`` dicts (:func:`sparse`, :func:`dense`).

:func:`binned_average_precision` is average precision (scikit-learn's ``average_precision_score``) of the
scores replaced by their bin: each bin is one group of tied scores. Its error against the exact figure
comes only from the order of scores inside a bin; :func:`average_precision_bin_error` bounds it for a
given histogram (tests/test_concept_performance.py checks the figure against scikit-learn's definition
on the same data, within that bound).

>>> import numpy as np
>>> bin_of(np.array([0.5, 1e-9, 0.999]))
array([128,   0, 183])
>>> pos, neg = np.zeros(N_BINS, np.int64), np.zeros(N_BINS, np.int64)
>>> np.add.at(pos, bin_of(np.array([0.9, 0.8, 0.3])), 1); np.add.at(neg, bin_of(np.array([0.85, 0.1])), 1)
>>> round(binned_average_precision(pos, neg), 4)
0.8056
>>> dense(sparse(pos)).tolist() == pos.tolist(), sparse(pos)
(True, {121: 1, 139: 1, 145: 1})
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["N_BINS", "LOGIT_LIMIT", "LOGIT_WIDTH", "bin_of", "bin_edges", "bin_centers", "sparse", "dense",
           "binned_average_precision", "average_precision_bin_error", "GRID"]

LOGIT_LIMIT = 16.0
LOGIT_WIDTH = 0.125
N_BINS = int(2 * LOGIT_LIMIT / LOGIT_WIDTH)      # 256
#: The grid's name, stored with every calibrator so a reader can tell it was fitted on this grid.
GRID = f"logit[-{LOGIT_LIMIT:g},{LOGIT_LIMIT:g}]/{LOGIT_WIDTH:g}"
_P_LO = 1.0 / (1.0 + np.exp(LOGIT_LIMIT))         # the grid's ends as probabilities
_P_HI = 1.0 / (1.0 + np.exp(-LOGIT_LIMIT))


def bin_of(probabilities: Any) -> np.ndarray:
    """The bin (0 .. N_BINS-1) of each probability (finite scores; NaN has no bin). Probabilities are clipped
    to the grid's ends first (the same bins: everything beyond falls in an end bin), so no log sees 0 or 1:
    ~25 us for 500 scores."""
    p = np.maximum(np.minimum(np.asarray(probabilities, dtype=np.float64), _P_HI), _P_LO)
    z = np.log(p)
    z -= np.log1p(-p)
    z += LOGIT_LIMIT
    z *= 1.0 / LOGIT_WIDTH                        # a power of two: exact, equal to the division
    idx = z.astype(np.int64)                      # truncation = floor here (z >= -1 ulp after the clip)
    return np.minimum(idx, N_BINS - 1, out=idx)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def bin_edges() -> np.ndarray:
    """The N_BINS + 1 bin edges as probabilities (the end bins reach 0 and 1)."""
    e = _sigmoid(np.linspace(-LOGIT_LIMIT, LOGIT_LIMIT, N_BINS + 1))
    e[0], e[-1] = 0.0, 1.0
    return e


def bin_centers() -> np.ndarray:
    """Each bin's probability at its log-odds midpoint (what a binned score stands for)."""
    return _sigmoid(-LOGIT_LIMIT + LOGIT_WIDTH * (np.arange(N_BINS) + 0.5))


def sparse(counts: np.ndarray) -> dict[int, int]:
    """``{bin: count}`` of the non-zero bins."""
    nz = np.flatnonzero(counts)
    return dict(zip(nz.tolist(), np.asarray(counts)[nz].tolist()))


def dense(bins: Mapping[Any, Any] | None) -> np.ndarray:
    """The N_BINS counts of a sparse histogram (keys may be str after JSON); bins outside the grid are
    refused with a ``ValueError``."""
    out = np.zeros(N_BINS, dtype=np.int64)
    for k, v in (bins or {}).items():
        i = int(k)
        if not 0 <= i < N_BINS:
            raise ValueError(f"histogram bin {k!r} is outside the grid (0..{N_BINS - 1})")
        out[i] += int(v)
    return out


def binned_average_precision(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Average precision with each bin one group of tied scores (None without positives)."""
    pos = np.asarray(positives, dtype=np.float64)[::-1]
    neg = np.asarray(negatives, dtype=np.float64)[::-1]
    total = pos.sum()
    if total <= 0:
        return None
    keep = (pos + neg) > 0
    tp, fp = np.cumsum(pos[keep]), np.cumsum(neg[keep])
    return float(np.sum(pos[keep] / total * tp / (tp + fp)))


def average_precision_bin_error(positives: np.ndarray, negatives: np.ndarray) -> float:
    """An upper bound of |binned - exact| average precision for any scores with these bin counts.

    Inside a bin holding ``p`` positives and ``n`` negatives below ``a`` positives and ``b`` negatives, a
    positive's precision lies between ``(a + 1) / (a + b + n + 1)`` (every negative of the bin first) and
    ``(a + p) / (a + b + p)`` (it is the last positive, no negative before it); the binned figure gives
    each one ``(a + p) / (a + b + p + n)``, which lies in the same range. The bound adds each positive's
    range, weighted by its recall step ``1 / positives``."""
    pos = np.asarray(positives, dtype=np.float64)[::-1]
    neg = np.asarray(negatives, dtype=np.float64)[::-1]
    total = pos.sum()
    if total <= 0:
        return 0.0
    a = np.cumsum(pos) - pos
    b = np.cumsum(neg) - neg
    has = pos > 0
    hi = (a + pos)[has] / (a + b + pos)[has]
    lo = (a + 1)[has] / (a + b + neg + 1)[has]
    return float(np.sum(pos[has] / total * (hi - lo)))
