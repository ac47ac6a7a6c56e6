"""Offline window statistics: already-scored rows cut into windows of N rows, and their summary.

:func:`report_windows` computes each window's drift.stats payload exactly as the stream does (same sketch,
same statistics, :func:`detectors.stats.window_statistics`; with ``attribution``, e.g.
:func:`window_attribution`, the ``attribution`` section from the same sample and explainer the stream
uses); :func:`summarize` condenses a history.

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 20000)}, {}, rng.beta(1, 20, 20000), threshold=0.5)
>>> amount = np.r_[rng.lognormal(5, 1, 10000), 3 * rng.lognormal(5, 1, 10000)]
>>> stats = report_windows(profile, {"amount": amount}, {}, rng.beta(1, 20, 20000), window=10000)
>>> summary = summarize(stats)
>>> summary["windows"], summary["drifted_windows"], summary["first_drift"]
(2, ['w000001'], {'amount': 1})
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from breeboost.rejections import count_reasons
from detectors.stats import window_statistics
from detectors.window import WindowSketch

__all__ = ["RejectedRow", "report_windows", "summarize", "window_attribution"]


class RejectedRow(Protocol):
    """A row that could not be scored (e.g. :class:`models.validation.Reject`): its row number in the input,
    the reason code and the missing field (or ``None``)."""
    position: int
    reason: str
    field: str | None


def report_windows(profile: Mapping[str, Any], numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray],
                   scores: np.ndarray, window: int, config: Any = None, *, positions: np.ndarray | None = None,
                   event_times: np.ndarray | None = None, rejects: Sequence[RejectedRow] = (),
                   total_rows: int | None = None, model_version: str | None = None,
                   attribution: Callable[[np.ndarray], Any] | None = None) -> list[dict[str, Any]]:
    """drift.stats payloads of consecutive windows of ``window`` input rows.

    ``numeric``/``categorical``/``scores``/``event_times`` describe the scored rows; ``positions`` their row
    numbers in the input (default ``0..n-1``); ``rejects`` the rows that could not be scored (they count as
    dead-lettered in their window, as in the stream); ``total_rows`` the input's row count;
    ``attribution(rows)``: the :class:`detectors.records.AttributionSums` of a window's scored rows (indices
    into the arrays; :func:`window_attribution`), or ``None`` for no attribution section.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    s = np.asarray(scores, dtype=np.float64)
    pos = np.arange(s.size) if positions is None else np.asarray(positions, dtype=np.int64)
    total = int(total_rows if total_rows is not None else max([s.size] + [r.position + 1 for r in rejects]))
    rej_rows = np.array([r.position for r in rejects], dtype=np.int64)
    times_all = None if event_times is None else np.asarray(event_times, dtype=np.float64)
    out = []
    for k, lo in enumerate(range(0, max(total, 1), window)):
        hi = lo + window
        a, b = np.searchsorted(pos, [lo, hi])
        sk = WindowSketch(profile)
        sl = slice(int(a), int(b))
        sk.update_batch({n: v[sl] for n, v in numeric.items()}, {n: v[sl] for n, v in categorical.items()}, s[sl],
                        None, event_times=None if times_all is None else times_all[sl])
        inside = [rejects[i] for i in np.flatnonzero((rej_rows >= lo) & (rej_rows < hi))]
        if inside:
            sk.add_rejects(count_reasons(inside), _missing_fields(inside), len(inside))
        closed = sk.last_event_time if sk.last_event_time is not None else 0.0
        sums = attribution(np.arange(int(a), int(b))) if attribution is not None and b > a else None
        out.append(window_statistics(sk, profile, config, index=k, model_version=model_version, closed_at=closed,
                                     attribution=[sums] if sums is not None else ()))
    return out


def window_attribution(explainer: Any, matrix: np.ndarray, positions: np.ndarray, size: int
                       ) -> Callable[[np.ndarray], Any]:
    """The ``attribution`` of :func:`report_windows` for a scored table: each window's ``size`` rows of
    smallest position hash (``positions``: the rows' numbers in the input, as offsets of one partition)
    explained by ``explainer`` (a :class:`models.explain.Explainer`), as the stream samples a window."""
    from detectors.records import AttributionSums
    from models.explain import EventSample

    def sums(rows: np.ndarray) -> Any:
        if size < 1:
            return None
        sample = EventSample(size)
        sample.add(np.asarray(positions)[rows], np.full(rows.size, -1), matrix, rows)
        n, total, total_abs, total_sq = sample.sums(explainer)
        return AttributionSums.of(explainer.inputs, n, total, total_abs, total_sq, explainer.base_value)
    return sums


def _missing_fields(rejects: Sequence[RejectedRow]) -> dict[str, int]:
    missing: dict[str, int] = {}
    for r in rejects:
        if r.reason == "missing_field" and r.field:
            missing[r.field] = missing.get(r.field, 0) + 1
    return missing


def summarize(stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Windows, events, which windows drifted, per-feature max PSI / KS D and first drifted window."""
    max_psi: dict[str, float] = {}
    max_ks: dict[str, float] = {}
    first: dict[str, int] = {}
    for s in stats:
        for name, f in s["features"].items():
            max_psi[name] = max(max_psi.get(name, 0.0), f["psi"])
            if "ks_d" in f:
                max_ks[name] = max(max_ks.get(name, 0.0), f["ks_d"])
            if f["drifted"] and name not in first:
                first[name] = s["window"]["index"]
    return {
        "windows": len(stats),
        "events": int(sum(s["window"]["events"] for s in stats)),
        "dead_lettered": int(sum(s["window"]["dead_lettered"] for s in stats)),
        "drifted_windows": [s["window_id"] for s in stats if s["drift_detected"]],
        "max_psi": max_psi,
        "max_ks_d": max_ks,
        "max_score_psi": max((s["score"]["psi"] for s in stats), default=0.0),
        "first_drift": first,
        "model_version": stats[0]["model_version"] if stats else None,
    }
