"""Offline drift report: window statistics over a table, a JSON summary and a self-contained HTML page.

:func:`report_windows` cuts already-scored rows into windows of ``window`` rows (file order) and returns
the drift.stats payload of each, computed exactly as the stream does (same sketch, same statistics).
:func:`summarize` condenses them; :func:`render_html` draws them as inline SVG (no scripts, no network).

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

import html
from typing import Any, Mapping, Sequence

import numpy as np

from detectors.stats import window_statistics
from detectors.window import WindowSketch

__all__ = ["report_windows", "summarize", "render_html"]


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


# -- HTML ---------------------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:right}th{background:#f3f3f3}
.drift{background:#f8c9c4}.feat{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}
h3{margin:.2em 0;font-size:14px}.note{color:#666;font-size:12px}"""


def _line_svg(values: Sequence[float], threshold: float, w: int = 320, h: int = 110) -> str:
    top = max(max(values, default=0.0), threshold) * 1.15 or 1.0
    n = max(len(values) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{30 + i * (w - 40) / n:.1f},{h - 15 - v / top * (h - 25):.1f}"

    pts = " ".join(xy(i, v) for i, v in enumerate(values))
    ty = h - 15 - threshold / top * (h - 25)
    return (f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
            f'<line x1="30" y1="{ty:.1f}" x2="{w - 10}" y2="{ty:.1f}" stroke="#d33" stroke-dasharray="4"/>'
            f'<polyline fill="none" stroke="#246" stroke-width="1.5" points="{pts}"/>'
            f'<text x="2" y="12" font-size="10">{top:.3g}</text><text x="2" y="{h - 15}" font-size="10">0</text>'
            f'<text x="{w - 80}" y="{ty - 3:.1f}" font-size="10" fill="#d33">threshold</text></svg>')


def _bars_svg(ref: Sequence[float], cur: Sequence[float], w: int = 320, h: int = 110) -> str:
    k = max(len(ref), 1)
    top = max(list(ref) + list(cur) + [1e-9])
    bw = (w - 20) / k / 2.2
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    for i, (r, c) in enumerate(zip(ref, cur)):
        x = 10 + i * (w - 20) / k
        for j, (v, color) in enumerate(((r, "#9ab"), (c, "#e73"))):
            bh = v / top * (h - 20)
            parts.append(f'<rect x="{x + j * bw:.1f}" y="{h - 10 - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                         f'fill="{color}"/>')
    parts.append('<text x="10" y="10" font-size="10" fill="#9ab">reference</text>'
                 '<text x="80" y="10" font-size="10" fill="#e73">current</text></svg>')
    return "".join(parts)


def render_html(stats: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], title: str = "BreeBoost drift report") -> str:
    """A self-contained HTML page: PSI per feature and window (table and charts), and reference-vs-current
    histograms of each feature's worst window."""
    esc = html.escape
    names = list(stats[0]["features"]) if stats else []
    th_psi = [s["thresholds"]["psi"] for s in stats]
    rows = []
    for name in names:
        cells = "".join(
            f'<td class="{"drift" if s["features"][name]["drifted"] else ""}">{s["features"][name]["psi"]:.4f}</td>'
            for s in stats)
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    rows.append("<tr><th>(score)</th>" + "".join(
        f'<td class="{"drift" if s["score"]["drifted"] else ""}">{s["score"]["psi"]:.4f}</td>' for s in stats) + "</tr>")
    header = "".join(f"<th>{esc(s['window_id'])}</th>" for s in stats)
    charts = []
    for name in names:
        psis = [s["features"][name]["psi"] for s in stats]
        worst = stats[int(np.argmax(psis))]
        f = worst["features"][name]
        ks = f" · KS D {f['ks_d']:.3f}" if "ks_d" in f else ""
        bins = f.get("bins")
        bars = _bars_svg(bins["reference"], bins["current"]) if bins else ""
        charts.append(f'<div class="feat"><h3>{esc(name)}</h3>{_line_svg(psis, min(th_psi) if th_psi else 0.1)}'
                      f'<div class="note">worst window {esc(worst["window_id"])}: PSI {f["psi"]:.3f}{ks}</div>{bars}</div>')
    drifted = ", ".join(summary.get("drifted_windows", [])) or "none"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{esc(title)}</h1><p>model {esc(str(summary.get('model_version')))} · {summary.get('windows', 0)} "
            f"windows · {summary.get('events', 0)} events ({summary.get('dead_lettered', 0)} dead-lettered) · "
            f"windows with drift: {esc(drifted)}</p>"
            f"<h2>PSI per feature and window</h2><p class='note'>red: drifted (PSI above the calibrated threshold "
            f"or KS D above its threshold)</p><table><tr><th>feature</th>{header}</tr>{''.join(rows)}</table>"
            f"<h2>Features</h2>{''.join(charts)}</body></html>")
