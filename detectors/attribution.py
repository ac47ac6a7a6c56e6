"""The ``attribution`` section of drift.stats: which features moved the score, against the training slice.

The worker explains a seeded, bounded sample of each window's scored events with exact TreeSHAP
(``models.explain``); each partition's partial carries the sums of those contributions per input feature
(:class:`detectors.records.AttributionSums`, fixed point, merged by adding). This module turns the merged
sums into means and compares them with the model's reference (``profile["attribution"]``: the same means
over a sample of the training slice, stored at training time; an older model has none, and the section
then has no reference figures).

Since a row's margin is the base value plus its contributions, the window's mean margin minus the
reference's is exactly the sum of the features' changes: "score up 0.8 log-odds, 0.6 of it from
errorBalanceDest" reads ``score_change`` and the ``ranking`` of the features by change
(:func:`describe_change`).

>>> from detectors.records import AttributionSums
>>> ref = {"rows": 4000, "base_value": -6.0, "features": {"amount": {"mean": -0.5, "mean_abs": 0.6, "std": 0.3},
...                                                       "type": {"mean": -1.0, "mean_abs": 1.0, "std": 0.0}}}
>>> parts = [AttributionSums.of(["amount", "type"], 100, [20.0, -100.0], [40.0, 100.0], [30.0, 100.0], -6.0),
...          AttributionSums.of(["amount", "type"], 100, [40.0, -100.0], [50.0, 100.0], [40.0, 100.0], -6.0)]
>>> a = attribution_section(parts, ref)
>>> round(a["score_change"], 3), a["moved"], round(a["features"]["amount"]["change"], 3)
(0.8, ['amount'], 0.8)
>>> describe_change(a)
'score up 0.8 log-odds, 0.8 of it from amount'
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from detectors.records import AttributionSums

__all__ = ["attribution_section", "describe_change", "MIN_SHARE_CHANGE", "MOVED_Z"]

#: A score change below this (log-odds) has no meaningful shares.
MIN_SHARE_CHANGE = 1e-9
#: A feature "moved" the score when its change is this many standard errors (the window sample's and the
#: reference sample's, combined): on calm PaySim windows of 200 sampled events single features' changes
#: reach 2.4 standard errors (0.3 log-odds on errorBalanceOrig).
MOVED_Z = 4.0


def _merged(sums: Iterable[AttributionSums | Mapping[str, Any]]) -> AttributionSums | None:
    out: AttributionSums | None = None
    for s in sums:
        if s is None:
            continue
        if isinstance(s, Mapping):
            s = AttributionSums(**s)
        if out is None:
            out = AttributionSums(events=s.events, features=list(s.features), sum=list(s.sum),
                                  sum_abs=list(s.sum_abs), sum_sq=list(s.sum_sq), base_value=s.base_value)
        else:
            out.add(s)
    return out


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _z(change: float, se: float) -> float:
    """``change / se``, capped at +-1e6 (a feature the model never uses has no spread: se 0)."""
    if se <= 0.0:
        return 0.0 if change == 0.0 else math.copysign(1e6, change)
    return max(-1e6, min(1e6, change / se))


def attribution_section(sums: Iterable[AttributionSums | Mapping[str, Any]],
                        reference: Mapping[str, Any] | None = None,
                        exclude: Iterable[str] = ()) -> dict[str, Any] | None:
    """The drift.stats ``attribution`` (:class:`detectors.records.Attribution`) of a window's partial
    sums, against ``reference`` (the profile's ``attribution``, or ``None``); ``None`` without events.
    Features in ``exclude`` (the profile's ``excluded``: functions of event time, whose contribution
    depends on when the window is) are reported but never listed as ``moved``."""
    merged = _merged(sums)
    if merged is None or merged.events == 0:
        return None
    n = merged.events
    means, means_abs, squares = merged.means()
    ref_feats = (reference or {}).get("features") if isinstance(reference, Mapping) else None
    ref_feats = ref_feats if isinstance(ref_feats, Mapping) else {}
    has_ref = bool(ref_feats)
    features: dict[str, dict[str, Any]] = {}
    for name, m, ma, sq in zip(merged.features, means, means_abs, squares):
        r = ref_feats.get(name) if isinstance(ref_feats.get(name), Mapping) else {}
        rm, rma = _finite(r.get("mean")), _finite(r.get("mean_abs"))
        var = max(sq - m * m, 0.0) * n / (n - 1) if n > 1 else 0.0
        se = math.sqrt(var / n)
        ref_se = (_finite(r.get("std")) or 0.0) / math.sqrt(max(int(reference.get("rows") or 1), 1)) if has_ref else 0.0
        change = None if rm is None else m - rm
        se = se if change is None else math.hypot(se, ref_se)
        features[name] = {"mean": m, "mean_abs": ma, "stderr": se, "reference_mean": rm, "reference_mean_abs": rma,
                          "change": change, "abs_change": None if rma is None else ma - rma, "share": None,
                          "z": None if change is None else _z(change, se)}
    margin = merged.base_value + sum(means)
    ref_base = _finite((reference or {}).get("base_value")) if has_ref else None
    ref_margin = None
    if has_ref and ref_base is not None and all(f["reference_mean"] is not None for f in features.values()):
        ref_margin = ref_base + sum(f["reference_mean"] for f in features.values())
    change = None if ref_margin is None else margin - ref_margin
    if change is not None and abs(change) > MIN_SHARE_CHANGE:
        for f in features.values():
            f["share"] = None if f["change"] is None else f["change"] / change
    skip = set(exclude)
    ranking = sorted((k for k, f in features.items() if k not in skip and f["change"] is not None),
                     key=lambda k: (-abs(features[k]["change"]), k))
    ref_rows = (reference or {}).get("rows") if has_ref else None
    return {"events": n, "reference_events": ref_rows if isinstance(ref_rows, int) else None,
            "base_value": merged.base_value, "mean_margin": margin, "reference_mean_margin": ref_margin,
            "score_change": change, "features": features, "ranking": ranking,
            "moved": [k for k in ranking if abs(features[k]["z"]) >= MOVED_Z]}


def describe_change(attribution: Mapping[str, Any] | None, features: Iterable[str] | None = None,
                    top: int = 3) -> str | None:
    """"score up 0.31 log-odds, 0.34 of it from errorBalanceDest (errorBalanceOrig -0.57, errorBalanceDest
    +0.34, amount +0.28)": the score's change, the largest change of the same sign, and the ``top`` largest
    changes (``None`` without a reference). ``features`` limits the features named (e.g. an incident's).
    """
    if not isinstance(attribution, Mapping) or _finite(attribution.get("score_change")) is None:
        return None
    change = float(attribution["score_change"])
    feats = attribution.get("features") or {}
    keep = None if features is None else set(features)
    changes = [(k, _finite((feats.get(k) or {}).get("change"))) for k in attribution.get("ranking") or []
               if keep is None or k in keep]
    changes = [(k, c) for k, c in changes if c is not None and abs(c) >= 0.005]
    words = f"score {'up' if change >= 0 else 'down'} {abs(change):.2g} log-odds"
    same = [(k, c) for k, c in changes if (c >= 0) == (change >= 0)]
    if same:
        words += f", {abs(same[0][1]):.2g} of it from {same[0][0]}"
    if changes[:top] and changes[:top] != same[:1]:
        words += " (" + ", ".join(f"{k} {c:+.2g}" for k, c in changes[:top]) + ")"
    return words
