"""Offline drift report: window statistics over a table, a JSON summary and a self-contained HTML page.

:func:`report_windows` cuts already-scored rows into windows of ``window`` rows (file order) and returns
the drift.stats payload of each, computed exactly as the stream does (same sketch, same statistics).
:func:`summarize` condenses them; :func:`render_html` draws them as inline SVG (no scripts, no network), with the incidents
(:func:`incident_spans`) on the same window axis when the history comes from the topics.

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 20000)}, {}, rng.beta(1, 20, 20000), threshold=0.5)
>>> amount = np.r_[rng.lognormal(5, 1, 10000), 3 * rng.lognormal(5, 1, 10000)]
>>> stats = report_windows(profile, {"amount": amount}, {}, rng.beta(1, 20, 20000), window=10000)
>>> summary = summarize(stats)
>>> summary["windows"], summary["drifted_windows"], summary["first_drift"]
(2, ['w000001'], {'amount': 1})
>>> "<svg" in render_html(stats, summary)
True
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from detectors.stats import window_statistics
from detectors.window import WindowSketch

__all__ = ["report_windows", "summarize", "render_html", "order_windows", "incident_spans"]


def report_windows(profile: Mapping[str, Any], numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray],
                   scores: np.ndarray, window: int, config: Any = None, *, positions: np.ndarray | None = None,
                   event_times: np.ndarray | None = None, rejects: Sequence[tuple[int, str, str | None]] = (),
                   total_rows: int | None = None, model_version: str | None = None) -> list[dict[str, Any]]:
    """drift.stats payloads of consecutive windows of ``window`` input rows.

    ``numeric``/``categorical``/``scores``/``event_times`` describe the scored rows; ``positions`` their row
    numbers in the input (default ``0..n-1``); ``rejects`` the rows that could not be scored as
    ``(row, reason, missing field or None)``; ``total_rows`` the input's row count.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    s = np.asarray(scores, dtype=np.float64)
    pos = np.arange(s.size) if positions is None else np.asarray(positions, dtype=np.int64)
    total = int(total_rows if total_rows is not None else max([s.size] + [r[0] + 1 for r in rejects]))
    rej_rows = np.array([r[0] for r in rejects], dtype=np.int64)
    out = []
    for k, lo in enumerate(range(0, max(total, 1), window)):
        hi = lo + window
        a, b = np.searchsorted(pos, [lo, hi])
        sk = WindowSketch(profile)
        sl = slice(int(a), int(b))
        times = None if event_times is None else np.asarray(event_times, dtype=np.float64)[sl]
        sk.update_batch({n: v[sl] for n, v in numeric.items()}, {n: v[sl] for n, v in categorical.items()}, s[sl],
                        None, event_times=times)
        idx = np.flatnonzero((rej_rows >= lo) & (rej_rows < hi))
        if idx.size:
            reasons: dict[str, int] = {}
            missing: dict[str, int] = {}
            for i in idx:
                _, reason, field = rejects[i]
                reasons[reason] = reasons.get(reason, 0) + 1
                if reason == "missing_field" and field:
                    missing[field] = missing.get(field, 0) + 1
            sk.add_rejects(reasons, missing, int(idx.size))
        closed = sk.last_event_time if sk.last_event_time is not None else 0.0
        out.append(window_statistics(sk, profile, config, index=k, model_version=model_version, closed_at=closed))
    return out


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


# -- history from the topics ----------------------------------------------------------------------------
def order_windows(stats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """drift.stats payloads in window-index order, one per index (a redelivered window keeps the copy with
    the most events), payloads without an index dropped.

    >>> ws = [{"window": {"index": 1, "events": 5}}, {"window": {"index": 0, "events": 3}},
    ...       {"window": {"index": 1, "events": 9}}, {"window": {}}]
    >>> [w["window"]["events"] for w in order_windows([{**w, "features": {}} for w in ws])]
    [3, 9]
    """
    best: dict[int, Mapping[str, Any]] = {}
    for s in stats:
        w = s.get("window") if isinstance(s, Mapping) else None
        k = w.get("index") if isinstance(w, Mapping) else None
        if not isinstance(k, int) or isinstance(k, bool) or not isinstance(s.get("features"), Mapping):
            continue
        if k not in best or (w.get("events") or 0) >= (best[k]["window"].get("events") or 0):
            best[k] = s
    return [dict(best[k]) for k in sorted(best)]


def incident_spans(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One span per incident from its events on the ``incidents`` topic: the breached windows
    (``first_index``..``last_index``), the window it resolved at (``end_index``, ``None`` while firing),
    peak severity, type, features, summary. Acknowledge/close events only add their flags.

    >>> ev = lambda kind, seq, first, last, at, sev="P2": {"incident_id": "inc-1", "event": kind, "seq": seq,
    ...     "type": "missing_data", "severity": sev, "status": "resolved" if kind == "resolved" else "firing",
    ...     "summary": kind, "details": {"affected_features": ["amount"], "peak_severity": sev,
    ...     "window": {"first_index": first, "last_index": last, "evaluated_index": at}}}
    >>> [(s["first_index"], s["last_index"], s["end_index"], s["severity"], s["status"])
    ...  for s in incident_spans([ev("fired", 1, 5, 6, 6), ev("updated", 2, 5, 7, 7, "P1"), ev("resolved", 3, 5, 9, 12)])]
    [(5, 9, 12, 'P1', 'resolved')]
    """
    order = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if isinstance(e, Mapping) and isinstance(e.get("incident_id"), str):
            by_id.setdefault(e["incident_id"], []).append(e)
    spans = []
    for iid, evs in by_id.items():
        agent = sorted((e for e in evs if e.get("source") != "cli"), key=lambda e: e.get("seq") or 0)
        windows = [(e.get("details") or {}).get("window") or {} for e in agent]
        firsts = [w["first_index"] for w in windows if isinstance(w.get("first_index"), int)]
        lasts = [w[k] for w in windows for k in ("last_index", "first_index") if isinstance(w.get(k), int)]
        if not agent or not firsts:
            continue
        last = agent[-1]
        resolved = [e for e in agent if e.get("status") == "resolved"]
        sevs = [s for e in agent for s in (e.get("severity"), (e.get("details") or {}).get("peak_severity"))
                if s in order]
        end = ((resolved[-1].get("details") or {}).get("window") or {}).get("evaluated_index") if resolved else None
        spans.append({
            "incident_id": iid, "type": last.get("type"), "severity": min(sevs, key=order.get, default=None),
            "status": "resolved" if resolved else "firing", "first_index": min(firsts), "last_index": max(lasts),
            "end_index": end if isinstance(end, int) else None,
            "features": list((last.get("details") or {}).get("affected_features") or []),
            "summary": next((e.get("summary") for e in agent if e.get("severity") == min(sevs, key=order.get, default=None)
                             and e.get("status") != "resolved"), agent[0].get("summary")),
            "started_at": last.get("started_at"),
            "ended_at": last.get("ended_at"), "acknowledged": any(e.get("acknowledged") for e in evs),
            "closed": any(e.get("closed") for e in evs)})
    return sorted(spans, key=lambda s: (s["first_index"], s["incident_id"]))


# -- HTML ---------------------------------------------------------------------------------------------------
def render_html(stats: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], title: str = "BreeBoost drift report",
                incidents: Sequence[Mapping[str, Any]] = ()) -> str:
    """A self-contained HTML page (inline SVG, no scripts or network): incidents on the window axis, window
    signals, PSI per feature and window (table), PSI/KS per feature over the windows and reference-vs-current
    histograms of each feature's worst window. ``incidents``: incident events (see :func:`incident_spans`)."""
    from detectors.report_html import render_page

    return render_page(order_windows(stats), summary, incident_spans(incidents), title)
