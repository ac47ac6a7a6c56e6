"""The drift.stats payload of one window, computed from a (merged) :class:`WindowSketch`.

Every number in the payload is finite (no NaN/inf; undefined values are documented defaults: PSI 0.0, KS
D 0.0 and p-value 1.0 for empty sides, ratios 0.0 for empty windows, times ``None`` when unknown).
Thresholds live only in the top-level ``thresholds`` object (no feature names there); a feature drifts
when ``psi > thresholds.psi`` or (numeric) ``ks_d > thresholds.ks_d``, and never in a window with fewer
than ``thresholds.min_events`` scored events. See docs/detectors.md for every field.

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> from detectors.window import WindowSketch
>>> rng = np.random.default_rng(1)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 20000)}, {}, rng.beta(1, 20, 20000), threshold=0.3)
>>> calm, shifted = WindowSketch(profile), WindowSketch(profile)
>>> calm.update_batch({"amount": rng.lognormal(5, 1, 10000)}, {}, rng.beta(1, 20, 10000))
>>> shifted.update_batch({"amount": 2 * rng.lognormal(5, 1, 10000)}, {}, rng.beta(1, 20, 10000))
>>> a, b = window_statistics(calm, profile), window_statistics(shifted, profile)
>>> a["features"]["amount"]["drifted"], round(a["features"]["amount"]["psi"], 4)
(False, 0.0024)
>>> b["features"]["amount"]["drifted"], round(b["features"]["amount"]["psi"], 2), b["drifted_features"]
(True, 0.49, ['amount'])
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping


from detectors.calibration import DetectorConfig, thresholds
from detectors.window import SCHEMA_REASONS, WindowSketch, compile_profile

__all__ = ["window_statistics", "window_id"]


def window_id(index: int) -> str:
    """``w000042`` for index 42.

    >>> window_id(42)
    'w000042'
    """
    return f"w{int(index):06d}"


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _finite(x: float, default: float = 0.0) -> float:
    x = float(x)
    return x if math.isfinite(x) else default


def window_statistics(sketch: WindowSketch, profile: Mapping[str, Any], config: Any = None, *,
                      index: int = 0, model_version: str | None = None, closed_at: float | None = None,
                      concept: Mapping[str, Any] | None = None, include_bins: bool = True) -> dict[str, Any]:
    """The drift.stats payload (docs/contracts.md) of ``sketch`` against ``profile``.

    ``config``: a :class:`DetectorConfig`, a dict or any object with some of its attribute names, or None
    (defaults). ``concept``: the concept-drift summary (see :class:`detectors.concept.ConceptMonitor`),
    copied as is. ``include_bins``: add reference/current bin proportions per feature (for reports).
    """
    cfg = DetectorConfig.coerce(config)
    compiled = compile_profile(profile)
    if compiled.fingerprint != sketch.compiled.fingerprint:
        from detectors.errors import SketchError
        raise SketchError("window_statistics: the sketch was built from another profile")
    n = sketch.count
    refs = list(compiled.numeric.values()) + list(compiled.categorical.values()) + [compiled.score]
    ref_counts = [r.count for r in refs if r.count > 0] or [0]
    ks_points = [r.cells.m for r in list(compiled.numeric.values()) + [compiled.score] if r.cells.m > 0] or [0]
    tests = 2 * len(compiled.numeric) + len(compiled.categorical) + 2
    th = thresholds(n, min(ref_counts), min(ks_points), max(r.n_bins for r in refs), tests, cfg)
    active = n >= cfg.min_events
    events = sketch.events

    features: dict[str, Any] = {}
    for name, sk in sketch.numeric.items():
        value_psi = sk.psi(cfg.epsilon)
        d, p = sk.ks()
        entry: dict[str, Any] = {
            "kind": "numeric", "psi": _finite(value_psi), "ks_d": _finite(d), "ks_pvalue": _finite(p, 1.0),
            "missing_ratio": _ratio(sk.missing + sketch.missing_fields.get(name, 0), events),
            "invalid_ratio": _ratio(sk.invalid, n), "count": sk.count,
            "drifted": bool(active and sk.count > 0 and (value_psi > th["psi"] or d > th["ks_d"])),
        }
        if include_bins:
            entry["bins"] = {"edges": sk.ref.edges.tolist(), "reference": sk.ref.proportions.tolist(),
                             "current": (sk.bins / max(sk.count, 1)).tolist()}
        features[name] = entry
    for name, sk in sketch.categorical.items():
        value_psi = sk.psi(cfg.epsilon)
        c2, p = sk.chi2()
        entry = {
            "kind": "categorical", "psi": _finite(value_psi), "chi2": _finite(c2), "chi2_pvalue": _finite(p, 1.0),
            "missing_ratio": _ratio(sk.missing + sketch.missing_fields.get(name, 0), events),
            "other_ratio": _ratio(sk.counts[-1], sk.count), "count": sk.count,
            "drifted": bool(active and sk.count > 0 and value_psi > th["psi"]),
        }
        if include_bins:
            entry["bins"] = {"categories": sk.ref.categories + ["(other)"], "reference": sk.ref.proportions.tolist(),
                             "current": (sk.counts / max(sk.count, 1)).tolist()}
        features[name] = entry

    score_psi = sketch.score.psi(cfg.epsilon)
    sd, sp = sketch.score.ks()
    ref_score = profile["score"]
    predicted = _ratio(sketch.predicted_fraud, sketch.score.count) if sketch.threshold is not None else None
    ref_rate = ref_score.get("fraud_rate")
    score = {
        "psi": _finite(score_psi), "ks_d": _finite(sd), "ks_pvalue": _finite(sp, 1.0),
        "mean": _finite(sketch.score_mean), "reference_mean": _finite(ref_score.get("mean", 0.0)),
        "count": sketch.score.count, "threshold": sketch.threshold,
        "predicted_fraud_rate": predicted, "reference_fraud_rate": ref_rate,
        "fraud_rate_change": (predicted - ref_rate) if predicted is not None and ref_rate is not None else None,
        "drifted": bool(active and sketch.score.count > 0 and (score_psi > th["psi"] or sd > th["ks_d"])),
    }
    if include_bins:
        score["bins"] = {"edges": sketch.score.ref.edges.tolist(), "reference": sketch.score.ref.proportions.tolist(),
                         "current": (sketch.score.bins / max(sketch.score.count, 1)).tolist()}

    schema_errors = sum(v for k, v in sketch.rejects.items() if k in SCHEMA_REASONS)
    missing_events = sketch.missing_events + sketch.rejects.get("missing_field", 0)
    drifted = [k for k, v in features.items() if v["drifted"]]
    return {
        "window_id": window_id(index),
        "window": {"index": int(index), "events": events, "scored": n, "dead_lettered": sketch.dead_lettered,
                   "partitions": sketch.partitions, "first_event_time": sketch.first_event_time,
                   "last_event_time": sketch.last_event_time,
                   "closed_at": float(time.time() if closed_at is None else closed_at)},
        "model_version": model_version,
        "features": features,
        "thresholds": th,
        "missing_ratio": _ratio(missing_events, events),
        "schema_error_ratio": _ratio(schema_errors, events),
        "dlq_ratio": _ratio(sketch.dead_lettered, events),
        "dlq_by_reason": dict(sorted(sketch.rejects.items())),
        "balance_error_ratio": _ratio(sketch.balance_mismatch, sketch.balance_checked),
        "freshness": {"lag_p50_s": sketch.lags.quantile(0.5), "lag_p95_s": sketch.lags.quantile(0.95),
                      "count": sketch.lags.count},
        "score": score,
        "concept": dict(concept or {}),
        "drifted_features": drifted,
        "drift_detected": bool(drifted) or score["drifted"],
    }
