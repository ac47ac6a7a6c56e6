"""Root-cause analysis over the incident log and the ``drift.stats`` history.

Per feature: PSI over the windows (max, mean, last), windows over threshold, missing percentages, and the
first window (and partitions) where it crossed; which feature moved first; per incident, where it
started and the likely cause in plain words (its type's rule: :meth:`incident.rules.base.Rule.explain`),
with what moved the model's score. And from the windows' ``attribution`` (exact TreeSHAP on a sample of
each window, against the training slice): which features moved the score, and when
(:func:`attribution_table`).

A feature "crosses" in a window when its calibrated ``drifted`` flag is true or its PSI reaches the
policy's lowest feature-drift band (0.1 by default). When several cross in the same window, an input
feature wins over one the model spec derives from inputs, then the larger PSI.

>>> hist = [{"window_id": f"w{i}", "window": {"index": i, "partitions": [0, 1]},
...          "features": {"amount": {"psi": 0.5 if i >= 3 else 0.01, "missing_ratio": 0.0},
...                       "errorBalanceOrig": {"psi": 0.3 if i >= 4 else 0.02, "missing_ratio": 0.0}}}
...         for i in range(8)]
>>> rows = feature_table(hist)
>>> [(r["feature"], r["max_psi"], r["first_window_index"]) for r in rows]
[('amount', 0.5, 3), ('errorBalanceOrig', 0.3, 4)]
>>> first_changed(hist)["feature"]
'amount'
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from breeboost.windows_order import order_windows
from detectors.attribution import MOVED_Z, describe_change
from incident.events import latest_by_incident
from incident.policy import Policy, number
from incident.rules import RULES

__all__ = ["order_stats", "feature_table", "top_drift", "first_changed", "incident_rows", "summary",
           "likely_cause", "attribution_table", "render_summary", "render_top_drift", "render_attribution"]


def order_stats(stats: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Window history in the one order of :func:`breeboost.windows_order.order_windows`."""
    return order_windows(stats)


def _crossing_bound(policy: Policy | None) -> float:
    policy = policy or Policy.load()
    bands = policy.bands("feature_drift").bounds if "feature_drift" in policy.types else ()
    return min((b for _, b in bands), default=0.1)


def _partition_hint(f: Mapping[str, Any], w: Mapping[str, Any]) -> tuple[list[int], int | None]:
    """Partitions of the window, and the worst one if the payload breaks PSI down by partition."""
    parts = [p for p in w.get("partitions", []) if isinstance(p, int)] if isinstance(w.get("partitions"), list) else []
    by = f.get("by_partition") or f.get("partitions")
    worst = None
    if isinstance(by, Mapping):
        scored = {}
        for p, v in by.items():
            val = number(v.get("psi")) if isinstance(v, Mapping) else number(v)
            if val is not None:
                try:
                    scored[int(p)] = val
                except ValueError:
                    continue
        if scored:
            worst = max(scored, key=scored.get)
    return parts, worst


def feature_table(stats: Iterable[Mapping[str, Any]], policy: Policy | None = None) -> list[dict]:
    """One row per feature, ranked by max PSI (desc), then earliest crossing."""
    return [_public(r) for r in _feature_rows(stats, policy)]


def _feature_rows(stats: Iterable[Mapping[str, Any]], policy: Policy | None) -> list[dict]:
    hist = order_stats(stats)
    bound = _crossing_bound(policy)
    names = sorted({n for s in hist if isinstance(s.get("features"), Mapping) for n in s["features"]})
    n = len(hist)
    rows = []
    for name in names:
        psi = np.full(n, np.nan)
        miss = np.full(n, np.nan)
        flag = np.zeros(n, dtype=bool)
        kind = None
        for i, s in enumerate(hist):
            f = (s.get("features") or {}).get(name)
            if not isinstance(f, Mapping):
                continue
            kind = kind or f.get("kind")
            p, m = number(f.get("psi")), number(f.get("missing_ratio"))
            psi[i] = np.nan if p is None else p
            miss[i] = np.nan if m is None else m
            flag[i] = f.get("drifted") is True
        seen = ~np.isnan(psi)
        crossed = flag | (np.nan_to_num(psi, nan=-1.0) >= bound)
        first = int(np.argmax(crossed)) if crossed.any() else None
        row = {"feature": name, "kind": kind, "windows": int(seen.sum()),
               "max_psi": float(np.nanmax(psi)) if seen.any() else None,
               "mean_psi": float(np.nanmean(psi)) if seen.any() else None,
               "last_psi": float(psi[seen][-1]) if seen.any() else None,
               "windows_drifted": int(crossed.sum()),
               "max_missing_pct": float(100 * np.nanmax(miss)) if (~np.isnan(miss)).any() else None,
               "mean_missing_pct": float(100 * np.nanmean(miss)) if (~np.isnan(miss)).any() else None,
               "first_window_index": None, "first_window_id": None, "first_psi": None,
               "first_partitions": [], "first_worst_partition": None}
        if first is not None:
            s = hist[first]
            w = s.get("window") if isinstance(s.get("window"), Mapping) else {}
            parts, worst = _partition_hint(s["features"][name], w)
            row.update(first_window_index=w.get("index"), first_window_id=s.get("window_id"),
                       first_psi=None if np.isnan(psi[first]) else float(psi[first]),
                       first_partitions=parts, first_worst_partition=worst, _pos=first)
        rows.append(row)
    rows.sort(key=lambda r: (-(r["max_psi"] if r["max_psi"] is not None else -1.0), r.get("_pos", n)))
    return rows


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def top_drift(stats: Iterable[Mapping[str, Any]], n: int = 10, policy: Policy | None = None) -> list[dict]:
    """The ``n`` features with the highest max PSI."""
    if n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n}")
    return feature_table(stats, policy)[:n]


def first_changed(stats: Iterable[Mapping[str, Any]], policy: Policy | None = None,
                  features: Iterable[str] | None = None, since_index: int | None = None) -> dict | None:
    """The feature that crossed first (ties: the larger PSI in that window), or ``None``.

    ``features`` limits the candidates; ``since_index`` ignores windows before that index.
    """
    hist = order_stats(stats)
    if since_index is not None:
        hist = [s for s in hist if not isinstance((s.get("window") or {}).get("index"), int)
                or s["window"]["index"] >= since_index]
    rows = [r for r in _feature_rows(hist, policy) if "_pos" in r]
    if features is not None:
        keep = set(features)
        rows = [r for r in rows if r["feature"] in keep]
    if not rows:
        return None
    derived = _derived_features()
    # Ties (several features cross in the same window) go to an input feature over a derived one (a
    # derived feature moves because its inputs did), then to the larger PSI.
    best = min(rows, key=lambda r: (r["_pos"], r["feature"] in derived, -(r["first_psi"] or 0.0)))
    return _public(best)


def _derived_features() -> frozenset[str]:
    """Names of the shipped spec's derived features (empty if the models package cannot tell)."""
    try:
        from models.spec import load_spec

        return frozenset(name for name, _ in load_spec().derived)
    except Exception:  # RCA must work on any history, whatever the model package's state
        return frozenset()


def attribution_table(stats: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Per feature, how its contribution to the score moved over the windows that carry ``attribution``
    with a reference: the largest change (signed, log-odds) and its window, the last change, and the
    windows where the change was significant (``|z| >= detectors.attribution.MOVED_Z``); ranked by the
    largest ``|change|``. Empty without attribution."""
    rows: dict[str, dict] = {}
    for s in order_stats(stats):
        a = s.get("attribution")
        if not isinstance(a, Mapping) or number(a.get("score_change")) is None:
            continue
        index = (s.get("window") or {}).get("index")
        for name in a.get("ranking") or []:
            f = (a.get("features") or {}).get(name) or {}
            c, z = number(f.get("change")), number(f.get("z"))
            if c is None:
                continue
            r = rows.setdefault(name, {"feature": name, "windows": 0, "windows_moved": 0, "max_change": 0.0,
                                       "max_change_window_index": None, "last_change": None})
            r["windows"] += 1
            r["windows_moved"] += z is not None and abs(z) >= MOVED_Z
            if abs(c) > abs(r["max_change"]):
                r["max_change"], r["max_change_window_index"] = c, index
            r["last_change"] = c
    return sorted(rows.values(), key=lambda r: (-abs(r["max_change"]), r["feature"]))


def likely_cause(incident: Mapping[str, Any], stats: list[dict], policy: Policy | None = None) -> tuple[str, dict | None]:
    """Plain-words cause for one incident (its latest event), and the first-changed feature row if any.

    The words are the incident type's rule's (:meth:`incident.rules.base.Rule.explain`); the feature that
    changed first is looked for among the incident's features from two windows before it started.
    """
    d = incident.get("details") or {}
    feats = d.get("affected_features") or []
    w = d.get("window") or {}
    since = w.get("first_index") - 2 if isinstance(w.get("first_index"), int) else None
    first = first_changed(stats, policy, features=feats or None, since_index=since) if stats else None
    registry = policy.registry if policy is not None else RULES
    rule = registry.get(str(incident.get("type")))
    if rule is None:
        return "No rule for this incident type.", first
    return rule.explain(incident, first), first


def incident_rows(events: Iterable[Mapping[str, Any]], stats: list[dict], policy: Policy | None = None) -> list[dict]:
    """One row per incident (latest state), newest first, with where it started and the likely cause."""
    rows = []
    for iid, e in latest_by_incident(events).items():
        d = e.get("details") or {}
        w = d.get("window") or {}
        cause, first = likely_cause(e, stats, policy)
        rows.append({"incident_id": iid, "type": e.get("type"), "severity": e.get("severity"),
                     "peak_severity": d.get("peak_severity"), "status": e.get("status"),
                     "acknowledged": e.get("acknowledged"), "closed": e.get("closed"),
                     "affected_features": d.get("affected_features", []), "started_at": e.get("started_at"),
                     "ended_at": e.get("ended_at"), "first_window_index": w.get("first_index"),
                     "last_window_index": w.get("last_index"), "first_window_id": w.get("first_window_id"),
                     "partitions": w.get("partitions", []), "summary": e.get("summary"),
                     "first_changed_feature": first["feature"] if first else None,
                     "model_impact": describe_change((d.get("evidence") or {}).get("attribution"),
                                                     d.get("affected_features") or None),
                     "likely_cause": cause, "runbook": e.get("runbook"),
                     "notes": [n.get("text") for n in e.get("notes", [])]})
    rows.sort(key=lambda r: r.get("started_at") or "", reverse=True)
    return rows


def summary(events: Iterable[Mapping[str, Any]], stats: Iterable[Mapping[str, Any]], n: int = 10,
            policy: Policy | None = None) -> dict:
    """Everything ``breeboost rca --mode summary`` prints, as a JSON-able dict."""
    hist = order_stats(stats)
    events = list(events)
    table = feature_table(hist, policy)
    idx = [s["window"]["index"] for s in hist if isinstance((s.get("window") or {}).get("index"), int)]
    miss = [number(s.get("missing_ratio")) for s in hist]
    miss = [m for m in miss if m is not None]
    first = first_changed(hist, policy)
    return {
        "windows": len(hist), "window_range": [min(idx), max(idx)] if idx else None,
        "incidents": incident_rows(events, hist, policy),
        "drifted_features": [r for r in table if r["windows_drifted"] > 0][:n],
        "missing_pct": {r["feature"]: r["max_missing_pct"] for r in table if r["max_missing_pct"]},
        "event_missing_pct": {"max": 100 * max(miss), "mean": 100 * float(np.mean(miss))} if miss else None,
        "first_changed": first,
        "score_movers": [r for r in attribution_table(hist) if r["windows_moved"] > 0][:n],
    }


def _f(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def render_top_drift(rows: list[dict]) -> str:
    head = f"{'#':>2} {'FEATURE':<22} {'MAX PSI':>8} {'MEAN PSI':>8} {'DRIFTED':>7} {'MISS% MAX':>9}  FIRST CROSSED (window, partitions)"
    lines = [head]
    for i, r in enumerate(rows, 1):
        where = "-"
        if r["first_window_index"] is not None or r["first_window_id"]:
            where = f"{r['first_window_index']} ({r['first_window_id']}) partitions {r['first_partitions'] or '-'}"
            if r["first_worst_partition"] is not None:
                where += f", worst {r['first_worst_partition']}"
        lines.append(f"{i:>2} {r['feature']:<22} {_f(r['max_psi']):>8} {_f(r['mean_psi']):>8} "
                     f"{r['windows_drifted']:>3}/{r['windows']:<3} {_f(r['max_missing_pct'], '.2f'):>9}  {where}")
    return "\n".join(lines)


def render_attribution(rows: list[dict]) -> str:
    """The :func:`attribution_table` rows as text."""
    lines = [f"{'#':>2} {'FEATURE':<22} {'MAX CHANGE':>10} {'IN WINDOW':>9} {'MOVED':>7} {'LAST':>8}"]
    for i, r in enumerate(rows, 1):
        lines.append(f"{i:>2} {r['feature']:<22} {r['max_change']:>+10.3f} {str(r['max_change_window_index']):>9} "
                     f"{r['windows_moved']:>3}/{r['windows']:<3} {_f(r['last_change'], '+.3f'):>8}")
    return "\n".join(lines)


def render_summary(s: dict) -> str:
    out = [f"RCA over {s['windows']} drift.stats windows"
           + (f" (index {s['window_range'][0]}..{s['window_range'][1]})" if s["window_range"] else "")
           + f" and {len(s['incidents'])} incidents", ""]
    if s["first_changed"]:
        f = s["first_changed"]
        out.append(f"First change: {f['feature']} crossed in window {f['first_window_index']} "
                   f"({f['first_window_id']}), PSI {_f(f['first_psi'])}, partitions {f['first_partitions'] or '-'}")
        out.append("")
    out.append("Incidents:")
    if not s["incidents"]:
        out.append("  none")
    for r in s["incidents"]:
        flags = "".join([" acked" if r["acknowledged"] else "", " closed" if r["closed"] else ""])
        out.append(f"  {r['incident_id']} {r['severity']} {r['type']} [{r['status']}{flags}] "
                   f"windows {r['first_window_index']}..{r['last_window_index']} partitions {r['partitions'] or '-'}")
        if r["affected_features"]:
            out.append(f"    features: {', '.join(r['affected_features'])}")
        if r.get("model_impact"):
            out.append(f"    model impact: {r['model_impact']}")
        out.append(f"    likely cause: {r['likely_cause']}")
        out.append(f"    runbook: {r['runbook']}")
        for note in r["notes"]:
            out.append(f"    note: {note}")
    out += ["", "Drifted features (ranked by max PSI):",
            render_top_drift(s["drifted_features"]) if s["drifted_features"] else "  none"]
    out += ["", "What moved the score (exact TreeSHAP contribution, window vs training slice, log-odds):",
            render_attribution(s["score_movers"]) if s.get("score_movers") else "  none"]
    out += ["", "Missing values:"]
    if s["event_missing_pct"]:
        out.append(f"  events with a missing field: max {s['event_missing_pct']['max']:.2f}%, "
                   f"mean {s['event_missing_pct']['mean']:.2f}%")
    for name, pct in sorted(s["missing_pct"].items(), key=lambda kv: -kv[1]):
        out.append(f"  {name}: max {pct:.2f}%")
    if not s["event_missing_pct"] and not s["missing_pct"]:
        out.append("  none")
    return "\n".join(out)
