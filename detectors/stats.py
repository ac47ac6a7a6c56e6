"""The drift.stats payload of one window, computed from a (merged) :class:`WindowSketch`.

:func:`window_statistics` returns a plain dict shaped as :class:`detectors.records.DriftStats` (what
:func:`detectors.records.encode_stats` publishes): the window, each feature's drift, the thresholds, the
data-quality ratios, freshness, the score, the ``concept`` section of the window's delayed labels
(:func:`detectors.concept.concept_section`) and, when the partials carry sampled contributions, the
``attribution`` section (:func:`detectors.attribution.attribution_section`, against the profile's
``attribution`` reference).

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
from typing import Any, Iterable, Mapping

from breeboost.rejections import SCHEMA_REASONS
from detectors.attribution import attribution_section
from detectors.calibration import DetectorConfig, thresholds
from detectors.concept import concept_section
from detectors.errors import SketchError
from detectors.sketch import CategoricalSketch, NumericSketch
from detectors.window import CompiledProfile, WindowSketch, compile_profile

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
                      index: int = 0, stream: str | None = None, model_version: str | None = None,
                      closed_at: float | None = None, labels: Iterable[Mapping[str, Any] | Any] = (),
                      reference: Mapping[str, Any] | None = None, include_bins: bool = True,
                      attribution: Iterable[Any] = ()) -> dict[str, Any]:
    """The drift.stats payload (:class:`detectors.records.DriftStats`) of ``sketch`` against ``profile``.

    ``config``: a :class:`DetectorConfig`, the :class:`breeboost.settings.Settings` (its ``detector_*``
    fields), a mapping of field names, or None (defaults). ``stream``: the input topic (``stream`` of the
    payload, which the incident agent keys on). ``labels``: the label counts of the window's partials
    (:class:`detectors.records.LabelCounts` or mappings); ``reference``: the model's test metrics
    (``metadata.json["metrics"]["test"]``), for the ``concept`` section. ``include_bins``: add reference/current
    bin proportions per feature and for the score (for reports). ``attribution``: the contribution sums of
    the window's partials (:class:`detectors.records.AttributionSums` or mappings; none: no section).
    """
    cfg = DetectorConfig.coerce(config)
    compiled = compile_profile(profile)
    if compiled.fingerprint != sketch.compiled.fingerprint:
        raise SketchError("window_statistics: the sketch was built from another profile")
    th = _thresholds(sketch, compiled, cfg)
    active = sketch.count >= cfg.min_events
    features: dict[str, Any] = {}
    for name, sk in sketch.numeric.items():
        features[name] = _numeric_feature(sk, sketch, name, th, cfg, active, include_bins)
    for name, sk in sketch.categorical.items():
        features[name] = _categorical_feature(sk, sketch, name, th, cfg, active, include_bins)
    score = _score(sketch, profile["score"], th, cfg, active, include_bins)
    drifted = [k for k, v in features.items() if v["drifted"]]
    out = {
        "window_id": window_id(index),
        "stream": stream,
        "window": _window(sketch, index, closed_at),
        "model_version": model_version,
        "features": features,
        "thresholds": th,
        **_quality(sketch),
        "freshness": {"lag_p50_s": sketch.lags.quantile(0.5), "lag_p95_s": sketch.lags.quantile(0.95),
                      "count": sketch.lags.count},
        "score": score,
        "concept": concept_section(labels, reference, cfg.min_labels, cfg.min_positives),
        "drifted_features": drifted,
        "drift_detected": bool(drifted) or score["drifted"],
    }
    section = attribution_section(attribution, profile.get("attribution"), profile.get("excluded", ()))
    if section is not None:
        out["attribution"] = section
    return out


def _thresholds(sketch: WindowSketch, compiled: CompiledProfile, cfg: DetectorConfig) -> dict[str, Any]:
    """One set of thresholds for the window, from its size and the most demanding reference."""
    numeric = list(compiled.numeric.values()) + [compiled.score]
    refs = numeric + list(compiled.categorical.values())
    ref_counts = [r.count for r in refs if r.count > 0] or [0]
    ks_points = [r.cells.m for r in numeric if r.cells.m > 0] or [0]
    tests = 2 * len(compiled.numeric) + len(compiled.categorical) + 2
    return thresholds(sketch.count, min(ref_counts), min(ks_points), max(r.n_bins for r in refs), tests, cfg)


def _numeric_feature(sk: NumericSketch, sketch: WindowSketch, name: str, th: Mapping[str, Any],
                     cfg: DetectorConfig, active: bool, include_bins: bool) -> dict[str, Any]:
    value_psi = sk.psi(cfg.epsilon)
    d, p = sk.ks()
    entry: dict[str, Any] = {
        "kind": "numeric", "psi": _finite(value_psi), "ks_d": _finite(d), "ks_pvalue": _finite(p, 1.0),
        "missing_ratio": _ratio(sk.missing + sketch.missing_fields.get(name, 0), sketch.events),
        "invalid_ratio": _ratio(sk.invalid, sketch.count), "count": sk.count,
        "drifted": bool(active and sk.count > 0 and (value_psi > th["psi"] or d > th["ks_d"])),
    }
    if include_bins:
        entry["bins"] = _numeric_bins(sk)
    return entry


def _numeric_bins(sk: NumericSketch) -> dict[str, list]:
    return {"edges": sk.ref.edges.tolist(), "reference": sk.ref.proportions.tolist(),
            "current": (sk.bins / max(sk.count, 1)).tolist()}


def _categorical_feature(sk: CategoricalSketch, sketch: WindowSketch, name: str, th: Mapping[str, Any],
                         cfg: DetectorConfig, active: bool, include_bins: bool) -> dict[str, Any]:
    value_psi = sk.psi(cfg.epsilon)
    c2, p = sk.chi2()
    entry: dict[str, Any] = {
        "kind": "categorical", "psi": _finite(value_psi), "chi2": _finite(c2), "chi2_pvalue": _finite(p, 1.0),
        "missing_ratio": _ratio(sk.missing + sketch.missing_fields.get(name, 0), sketch.events),
        "other_ratio": _ratio(sk.counts[-1], sk.count), "count": sk.count,
        "drifted": bool(active and sk.count > 0 and value_psi > th["psi"]),
    }
    if include_bins:
        entry["bins"] = {"categories": sk.ref.categories + ["(other)"], "reference": sk.ref.proportions.tolist(),
                         "current": (sk.counts / max(sk.count, 1)).tolist()}
    return entry


def _score(sketch: WindowSketch, ref_score: Mapping[str, Any], th: Mapping[str, Any], cfg: DetectorConfig,
           active: bool, include_bins: bool) -> dict[str, Any]:
    """The fraud scores against the training scores, and the predicted fraud rate against the reference."""
    score_psi = sketch.score.psi(cfg.epsilon)
    sd, sp = sketch.score.ks()
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
        score["bins"] = _numeric_bins(sketch.score)
    return score


def _window(sketch: WindowSketch, index: int, closed_at: float | None) -> dict[str, Any]:
    return {"index": int(index), "events": sketch.events, "scored": sketch.count,
            "dead_lettered": sketch.dead_lettered, "partitions": sketch.partitions,
            "first_event_time": sketch.first_event_time, "last_event_time": sketch.last_event_time,
            "closed_at": float(time.time() if closed_at is None else closed_at)}


def _quality(sketch: WindowSketch) -> dict[str, Any]:
    """Missing data, schema errors (reasons flagged ``schema`` in :data:`breeboost.rejections.REASONS`),
    dead letters and balance errors, as shares of the window's events (balance errors: of those checked)."""
    events = sketch.events
    schema_errors = sum(v for k, v in sketch.rejects.items() if k in SCHEMA_REASONS)
    missing_events = sketch.missing_events + sketch.rejects.get("missing_field", 0)
    return {"missing_ratio": _ratio(missing_events, events),
            "schema_error_ratio": _ratio(schema_errors, events),
            "dlq_ratio": _ratio(sketch.dead_lettered, events),
            "dlq_by_reason": dict(sorted(sketch.rejects.items())),
            "balance_error_ratio": _ratio(sketch.balance_mismatch, sketch.balance_checked)}
