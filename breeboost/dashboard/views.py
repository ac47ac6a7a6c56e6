"""What each page shows, as plain rows computed from plain records (no Streamlit here, so every page's
numbers are testable on their own).

>>> w = {"window_id": "w000003", "window": {"index": 3, "events": 100},
...      "thresholds": {"psi": 0.1, "ks_d": 0.12},
...      "features": {"amount": {"kind": "numeric", "psi": 0.5, "ks_d": 0.3, "drifted": True,
...                              "bins": {"edges": [10.0, 2000.0], "reference": [0.3, 0.4, 0.3],
...                                       "current": [0.1, 0.2, 0.7]}}}}
>>> drift_rows([w])[0]["psi"], threshold_rows([w])
(0.5, [{'window': 3, 'psi threshold': 0.1, 'KS threshold': 0.12}])
>>> [r["bin"] for r in histogram_rows(w, "amount")][:3]
['< 10', '10 - 2k', '>= 2k']
>>> short(1234567.0), short(0.000123), short(-42.0)
('1.23M', '0.000123', '-42')
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from incident.events import latest_by_incident

__all__ = ["short", "latest_incidents", "open_incidents", "incident_rows", "timeline_rows", "drift_rows",
           "threshold_rows", "histogram_rows", "histogram_features", "concept_rows", "flagged_rows",
           "reasons_text", "window_label", "NO_REASONS"]

NO_REASONS = "no reasons yet"


def short(x: Any) -> str:
    """A number in at most ~4 significant digits with k/M/G suffixes (axis and table labels)."""
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    a = abs(v)
    for bound, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= bound:
            return f"{v / bound:.3g}{suffix}"
    return f"{v:.3g}"


def _ts(iso: str | None) -> dt.datetime | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None


def latest_incidents(events: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """incident_id -> its latest state (notes, acknowledged and closed merged), as ``breeboost rca`` reads it."""
    return latest_by_incident(events)


def open_incidents(events: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Incidents firing and not closed, newest first."""
    return [r for r in incident_rows(events) if r["status"] == "firing" and not r["closed"]]


def incident_rows(events: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One row per incident (its latest state), newest first."""
    rows = []
    for iid, e in latest_incidents(events).items():
        d = e.get("details") or {}
        notes = e.get("notes") or []
        rows.append({"incident": iid, "type": e.get("type"), "severity": e.get("severity"),
                     "status": e.get("status"), "acknowledged": bool(e.get("acknowledged")),
                     "closed": bool(e.get("closed")), "started": e.get("started_at"), "ended": e.get("ended_at"),
                     "updated": e.get("updated_at"), "features": ", ".join(d.get("affected_features") or []),
                     "summary": e.get("summary"), "runbook": e.get("runbook"),
                     "notes": [f"{n.get('at', '')} {n.get('action')} by {n.get('author') or '?'}: {n.get('text', '')}"
                               for n in notes]})
    rows.sort(key=lambda r: r["started"] or "", reverse=True)
    return rows


def timeline_rows(events: Iterable[Mapping[str, Any]], pending: Iterable[Mapping[str, Any]] = (),
                  now: float | None = None) -> list[dict]:
    """Bars of the incident timeline: each incident from its start to its end (or now), with its status;
    breaches the agent holds as pending (not published yet) from when they were first seen to now.

    >>> ev = {"incident_id": "inc-1", "type": "missing_data", "status": "resolved", "seq": 2,
    ...       "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z", "updated_at": "x"}
    >>> [(r["label"], r["status"], (r["end"] - r["start"]).seconds) for r in timeline_rows([ev])]
    [('missing_data inc-1', 'resolved', 60)]
    """
    end_now = dt.datetime.fromtimestamp(now, dt.timezone.utc) if now is not None else dt.datetime.now(dt.timezone.utc)
    rows = []
    for r in incident_rows(events):
        start = _ts(r["started"])
        if start is None:
            continue
        end = _ts(r["ended"]) if r["status"] == "resolved" else end_now
        rows.append({"label": f"{r['type']} {r['incident']}", "type": r["type"], "status": r["status"],
                     "start": start, "end": max(end or end_now, start), "severity": r["severity"]})
    for t in pending:
        start = _ts(t.get("started_at"))
        if start is not None:
            rows.append({"label": f"{t.get('type')} (pending)", "type": t.get("type"), "status": "pending",
                         "start": start, "end": max(end_now, start), "severity": t.get("severity")})
    return rows


def window_label(w: Mapping[str, Any]) -> str:
    win = w.get("window") or {}
    return f"{win.get('index')} ({w.get('window_id')}, {win.get('events', '?')} events)"


def drift_rows(windows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One row per window and feature: PSI, KS D (numeric features) and the calibrated drift flag."""
    rows = []
    for w in windows:
        idx = (w.get("window") or {}).get("index")
        for name, f in (w.get("features") or {}).items():
            rows.append({"window": idx, "feature": name, "psi": f.get("psi"), "ks_d": f.get("ks_d"),
                         "drifted": bool(f.get("drifted"))})
    return rows


def threshold_rows(windows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Each window's calibrated thresholds (a feature drifts above either)."""
    out = []
    for w in windows:
        t = w.get("thresholds") or {}
        out.append({"window": (w.get("window") or {}).get("index"), "psi threshold": t.get("psi"),
                    "KS threshold": t.get("ks_d")})
    return out


def histogram_features(window: Mapping[str, Any]) -> list[str]:
    """Features of ``window`` that carry reference/current bins."""
    return [n for n, f in (window.get("features") or {}).items() if isinstance(f.get("bins"), Mapping)]


def _bin_labels(bins: Mapping[str, Any]) -> list[str]:
    if "categories" in bins:
        return [str(c) for c in bins["categories"]]
    edges = [short(e) for e in bins.get("edges") or []]
    if not edges:
        return ["all"]
    return [f"< {edges[0]}"] + [f"{a} - {b}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]}"]


def histogram_rows(window: Mapping[str, Any], feature: str) -> list[dict]:
    """Reference and current share of each bin of ``feature`` in ``window`` (long form: one row per bin and
    series); ``[]`` when the window has no bins for it."""
    f = (window.get("features") or {}).get(feature) or {}
    bins = f.get("bins")
    if not isinstance(bins, Mapping):
        return []
    labels = _bin_labels(bins)
    rows = []
    for series in ("reference", "current"):
        for i, (label, share) in enumerate(zip(labels, bins.get(series) or [])):
            rows.append({"bin": label, "order": i, "series": series, "share": share})
    return rows


def concept_rows(windows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Realised precision and recall per window (delayed labels joined to scores) next to the model's own
    test figures; only windows with labelled events. ``[]``: no labels yet."""
    rows = []
    for w in windows:
        c = w.get("concept")
        if not isinstance(c, Mapping) or not c.get("labelled"):
            continue
        ref = c.get("reference") or {}
        drop = c.get("performance_drop") or {}
        rows.append({"window": (w.get("window") or {}).get("index"), "labelled": c.get("labelled"),
                     "precision": c.get("precision"), "recall": c.get("recall"),
                     "reference precision": ref.get("precision"), "reference recall": ref.get("recall"),
                     "precision drop": drop.get("precision"), "recall drop": drop.get("recall"),
                     "tp": c.get("tp"), "fp": c.get("fp"), "fn": c.get("fn")})
    return rows


def shadow_rows(windows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Champion vs challenger per window: both models' recall, precision and AUPRC on the same labelled
    transactions (the window's ``shadow`` section); only windows that have one.

    >>> w = {"window": {"index": 3}, "shadow": {"champion_version": "a", "challenger_version": "b",
    ...      "labelled": 900, "positives": 30, "champion": {"recall": 0.2, "precision": 0.5, "auprc": 0.3},
    ...      "challenger": {"recall": 0.9, "precision": 0.8, "auprc": 0.95}}}
    >>> [(r["model"], r["recall"]) for r in shadow_rows([w, {"window": {"index": 4}}])]
    [('champion a', 0.2), ('challenger b', 0.9)]
    """
    rows = []
    for w in windows:
        sh = w.get("shadow")
        if not isinstance(sh, Mapping):
            continue
        for role in ("champion", "challenger"):
            f = sh.get(role) or {}
            rows.append({"window": (w.get("window") or {}).get("index"), "model": f"{role} {sh.get(f'{role}_version')}",
                         "role": role, "labelled": sh.get("labelled"), "positives": sh.get("positives"),
                         "recall": f.get("recall"), "precision": f.get("precision"), "auprc": f.get("auprc")})
    return rows


def reasons_text(score: Mapping[str, Any]) -> str:
    """A score's reason codes as ``feature=value (+contribution)``, or :data:`NO_REASONS`.

    >>> reasons_text({"reasons": [{"feature": "amount", "value": 9500.0, "contribution": 1.25}]})
    'amount=9.5k (+1.25)'
    >>> reasons_text({})
    'no reasons yet'
    """
    reasons = score.get("reasons")
    if not reasons:
        return NO_REASONS
    parts = []
    for r in reasons:
        if isinstance(r, Mapping):
            c = r.get("contribution")
            parts.append(f"{r.get('feature')}={short(r.get('value'))}" + (f" ({c:+.3g})" if isinstance(c, (int, float)) else ""))
        else:
            parts.append(str(r))
    return "; ".join(parts)


def flagged_rows(scores: Iterable[Mapping[str, Any]]) -> list[dict]:
    """The flagged transactions as table rows (newest first, as given)."""
    rows = []
    for s in scores:
        at = s.get("scored_at")
        rows.append({"transaction": s.get("transaction_id"), "fraud probability": s.get("fraud_probability"),
                     "threshold": s.get("threshold"), "reasons": reasons_text(s),
                     "model": s.get("model_version"), "latency ms": s.get("latency_ms"),
                     "scored at": dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%H:%M:%S")
                     if isinstance(at, (int, float)) else None,
                     "partition/offset": f"{s.get('partition')}/{s.get('offset')}"})
    return rows
