"""The drift reference profile: what a window is compared with, built once at training time.

A profile is a plain JSON-able dict (models store it as ``profile.json`` beside the model). For each
numeric feature it fixes the PSI bins (interior quantile edges, open outer bins), the reference proportion
of each bin, a sorted reference sample for the two-sample KS test, and the missing ratio; for each
categorical feature the category frequencies; for the fraud score the same as a numeric feature plus the
mean and the predicted-fraud rate at the model threshold.

Bins are right-closed: value ``x`` falls in bin ``i = #{edges < x}``, i.e. ``(-inf, e0], (e0, e1], ...,
(e_last, +inf)``. Edges are ``n_bins - 1`` reference quantiles (``inverted_cdf``, so every edge is a
reference value and no interior bin is empty), deduplicated for discrete and constant features. When the
reference minimum alone holds at least ``1/n_bins`` of the mass, the edge ``nextafter(min, -inf)`` is
prepended, so values below the reference range get a bin of their own (a reference proportion of 0);
when the top edge is the reference maximum the same happens above. A feature therefore has between 1 and
``n_bins + 1`` bins.

Features named in ``exclude`` (default :data:`TIME_FEATURES`: ``hour``, ``day``, ``step``) are left out
and listed under ``"excluded"``: their distribution within a window depends on *when* the window is (a
10,000-event window covers about one simulated hour), not on drift, so testing them would page on every
calm window.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = build_profile({"amount": rng.lognormal(5, 1, 1000), "flag": np.r_[np.zeros(950), np.ones(50)]},
...                   {"type": np.array(["A"] * 700 + ["B"] * 300)}, rng.beta(1, 20, 1000), threshold=0.5)
>>> len(p["numeric"]["amount"]["edges"]), p["numeric"]["amount"]["proportions"][:3]
(9, [0.1, 0.1, 0.1])
>>> p["numeric"]["flag"]["edges"], p["numeric"]["flag"]["proportions"]
([-5e-324, 0.0], [0.0, 0.95, 0.05])
>>> p["categorical"]["type"]["categories"], p["categorical"]["type"]["proportions"]
(['A', 'B'], [0.7, 0.3, 0.0])
>>> p["score"]["threshold"], p["score"]["fraud_rate"]
(0.5, 0.0)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from detectors.errors import ProfileError

__all__ = ["TIME_FEATURES", "PROFILE_FORMAT", "PROFILE_VERSION", "build_profile", "numeric_reference", "categorical_reference",
           "quantile_edges", "check_profile", "MISSING_CATEGORY_VALUES"]

PROFILE_FORMAT = "breeboost.drift-profile"
PROFILE_VERSION = 1
#: Features left out of drift testing by default (functions of event time; see the module docstring).
TIME_FEATURES = ("hour", "day", "step")
#: Categorical values counted as missing rather than as a category.
MISSING_CATEGORY_VALUES = ("", "None", "nan", "NaN", "null")


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior bin edges of finite ``values`` (see the module docstring for the rules).

    >>> quantile_edges(np.arange(1, 101, dtype=float), 4)
    array([25., 50., 75.])
    >>> quantile_edges(np.full(10, 3.0), 10)    # constant: below / equal / above
    array([3., 3.])
    >>> quantile_edges(np.array([]), 10)
    array([], dtype=float64)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0 or n_bins < 2:
        return np.empty(0, dtype=np.float64)
    q = np.quantile(x, np.arange(1, n_bins) / n_bins, method="inverted_cdf")
    edges = np.unique(q)
    if edges[0] == x.min():
        # the minimum is a point mass of >= 1/n_bins: give values below it their own (empty) bin
        edges = np.concatenate([[np.nextafter(edges[0], -np.inf)], edges])
    return edges


def _bin_proportions(x: np.ndarray, edges: np.ndarray) -> list[float]:
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    return (counts / max(x.size, 1)).tolist()


def numeric_reference(values: np.ndarray, n_bins: int = 10, ks_points: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Reference entry of one numeric feature (also used for the score). NaN is missing, +-inf invalid."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(x)
    xf = x[finite]
    edges = quantile_edges(xf, n_bins)
    if xf.size > ks_points:
        sample = np.sort(np.random.default_rng(seed).choice(xf, size=ks_points, replace=False))
    else:
        sample = np.sort(xf)
    return {
        "edges": edges.tolist(),
        "proportions": _bin_proportions(xf, edges) if xf.size else [0.0] * (edges.size + 1),
        "ks_sample": sample.tolist(),
        "count": int(xf.size),
        "rows": int(x.size),
        "missing_ratio": float(np.isnan(x).sum() / x.size) if x.size else 0.0,
        "invalid_ratio": float(np.isinf(x).sum() / x.size) if x.size else 0.0,
        "min": float(xf.min()) if xf.size else 0.0,
        "max": float(xf.max()) if xf.size else 0.0,
        "mean": float(xf.mean()) if xf.size else 0.0,
        "std": float(xf.std()) if xf.size else 0.0,
    }


def categorical_reference(values: np.ndarray, max_categories: int = 50) -> dict[str, Any]:
    """Reference entry of one categorical feature: the ``max_categories`` most frequent categories
    (ties broken by name) and their proportions, then the proportion of "other" (everything else)."""
    v = np.asarray(values).astype(str).ravel()
    missing = np.isin(v, MISSING_CATEGORY_VALUES)
    cats, counts = np.unique(v[~missing], return_counts=True)
    order = np.lexsort((cats, -counts))[:max_categories]
    kept = cats[order]
    n = int((~missing).sum())
    props = (counts[order] / max(n, 1)).tolist()
    other = 1.0 - float(counts[order].sum()) / n if n else 0.0
    return {
        "categories": kept.tolist(),
        "proportions": props + [max(other, 0.0)],
        "count": n,
        "rows": int(v.size),
        "missing_ratio": float(missing.sum() / v.size) if v.size else 0.0,
    }


def build_profile(numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray], scores: np.ndarray,
                  n_bins: int = 10, ks_points: int = 2000, seed: int = 0, threshold: float | None = None,
                  max_categories: int = 50, exclude: tuple[str, ...] = TIME_FEATURES) -> dict[str, Any]:
    """Build the reference profile from training-time features and scores (see the module docstring).

    ``numeric``: name -> float array (NaN = missing); ``categorical``: name -> str array; ``scores``: the
    model's fraud probabilities on the same rows; ``threshold``: the model's decision threshold, used for
    the reference predicted-fraud rate (``None``: not recorded); ``exclude``: feature names not to monitor.
    The result is JSON-able (orjson).
    """
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if not isinstance(ks_points, (int, np.integer)) or ks_points < 1:
        raise ValueError(f"ks_points must be an integer >= 1, got {ks_points!r}")
    if max_categories < 1:
        raise ValueError(f"max_categories must be >= 1, got {max_categories!r}")
    if threshold is not None and not (0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold must be in [0, 1] or None, got {threshold!r}")
    excluded = sorted((set(numeric) | set(categorical)) & set(exclude))
    numeric = {k: v for k, v in numeric.items() if k not in excluded}
    categorical = {k: v for k, v in categorical.items() if k not in excluded}
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ValueError(f"numeric and categorical share feature names: {sorted(overlap)}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    score = numeric_reference(s, n_bins, ks_points, seed)
    finite = s[np.isfinite(s)]
    score["threshold"] = None if threshold is None else float(threshold)
    score["fraud_rate"] = (None if threshold is None
                           else float((finite >= threshold).sum() / finite.size) if finite.size else 0.0)
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "n_bins": int(n_bins),
        "ks_points": int(ks_points),
        "seed": int(seed),
        "numeric": {name: numeric_reference(v, n_bins, ks_points, seed + i)
                    for i, (name, v) in enumerate(numeric.items())},
        "categorical": {name: categorical_reference(v, max_categories) for name, v in categorical.items()},
        "score": score,
        "excluded": excluded,
    }


def check_profile(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    """Raise :class:`ProfileError` unless ``profile`` looks like a profile this version can read.

    >>> check_profile({"format": "x"})
    Traceback (most recent call last):
    ...
    detectors.errors.ProfileError: not a BreeBoost drift profile (format 'x'); rebuild it with detectors.profile.build_profile
    """
    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        fmt = profile.get("format") if isinstance(profile, Mapping) else type(profile).__name__
        raise ProfileError(f"not a BreeBoost drift profile (format {fmt!r}); "
                           "rebuild it with detectors.profile.build_profile")
    if profile.get("version") != PROFILE_VERSION:
        raise ProfileError(f"drift profile version {profile.get('version')!r} is not supported "
                           f"(this BreeBoost reads version {PROFILE_VERSION}); retrain or rebuild the profile")
    return profile
