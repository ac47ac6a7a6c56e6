"""The drift report as one self-contained HTML page: inline SVG and CSS, no scripts, fonts or network.

Everything is drawn on one axis, the window index, so an incident (a shaded span, red while it breached,
lighter until it resolved) lines up with the statistics that caused it:

1. incidents: a timeline lane per incident and, per incident, the statistic that opened it over the windows
   and the reference-versus-current histograms of its features in the worst window of its span;
2. window signals (events, missing, dead letters, balance errors, freshness, score drift, predicted fraud);
3. a PSI table (drifted cells red) and, next to it, the attribution table: how each feature's exact
   TreeSHAP contribution to the score moved against the training slice (log-odds; red: significant), with
   the score's change;
4. per feature, PSI and KS D over the windows with their thresholds, its mean |contribution| against the
   training slice's, and the histogram of the feature's worst window.

>>> w = [{"window_id": f"w{i:06d}", "window": {"index": i, "events": 100, "dead_lettered": 0},
...       "model_version": "m", "features": {"amount": {"kind": "numeric", "psi": p, "ks_d": p / 2,
...       "drifted": p > 0.2, "bins": {"edges": [1.0], "reference": [0.5, 0.5], "current": [0.5 - p, 0.5 + p]}}},
...       "thresholds": {"psi": 0.2, "ks_d": 0.1}, "score": {"psi": 0.0, "drifted": False},
...       "drift_detected": p > 0.2} for i, p in enumerate([0.01, 0.3, 0.35, 0.02])]
>>> spans = [{"incident_id": "inc-1", "type": "feature_drift", "severity": "P2", "status": "resolved",
...           "first_index": 1, "last_index": 2, "end_index": 3, "features": ["amount"], "summary": "drift"}]
>>> page = render_page(w, {"windows": 4}, spans)
>>> page.count("<svg") > 3, 'class="span P2"' in page, "http" in page, "Attribution" in page
(True, True, False, False)
>>> for i, x in enumerate(w):
...     x["attribution"] = {"score_change": 0.1 * i, "moved": ["amount"] if i in (1, 2) else [],
...                         "features": {"amount": {"change": 0.1 * i, "mean_abs": 0.5 + 0.1 * i,
...                                                 "reference_mean_abs": 0.5, "z": 5.0 * i}}}
>>> page = render_page(w, {"windows": 4}, spans)
>>> "Attribution per feature and window" in page, "mean |contribution|" in page, "+0.20" in page
(True, True, True)
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from breeboost.report.incidents import INCIDENT_SIGNALS, SEVERITY_COLORS, incident_spans
from breeboost.windows_order import order_windows

__all__ = ["render_html", "render_page"]

esc = html.escape

_SIGNALS = [("window.events", "events per window"), ("missing_ratio", "missing ratio"),
            ("dlq_ratio", "dead-letter ratio"), ("balance_error_ratio", "balance error ratio"),
            ("freshness.lag_p95_s", "event-time lag p95 (s)"), ("score.psi", "score PSI"),
            ("score.predicted_fraud_rate", "predicted fraud rate")]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.drift{background:#f8c9c4}.feat{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}
h3{margin:.2em 0;font-size:14px}.note{color:#666;font-size:12px}.inc{border-left:4px solid #999;padding:.2em 1em;margin:1em 0}
.P1{border-color:#c0392b}.P2{border-color:#e67e22}.P3{border-color:#d4ac0d}.P4{border-color:#7f8c8d}
.sev{color:#fff;padding:0 4px;border-radius:3px;font-size:12px}svg text{font-family:system-ui,sans-serif}"""


def _get(doc: Any, path: str) -> float | None:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    if isinstance(doc, bool) or not isinstance(doc, (int, float)):
        return None
    return float(doc)


class _Axis:
    """Window index -> x pixel, shared by every chart of the page."""

    def __init__(self, indices: Sequence[int], width: int, left: int = 40, right: int = 10) -> None:
        self.lo = min(indices, default=0)
        self.hi = max(max(indices, default=0), self.lo + 1)
        self.left, self.width, self.right = left, width, right

    def x(self, index: float) -> float:
        return self.left + (index - self.lo) / (self.hi - self.lo) * (self.width - self.left - self.right)

    def ticks(self, y: float, count: int = 8) -> str:
        step = max(1, round((self.hi - self.lo) / count))
        return "".join(f'<text x="{self.x(i):.1f}" y="{y:.1f}" font-size="9" text-anchor="middle">{i}</text>'
                       for i in range(self.lo, self.hi + 1, step))


def _shade(axis: _Axis, spans: Sequence[Mapping[str, Any]], top: float, bottom: float,
           only: Sequence[str] | None = None) -> str:
    """Incident spans as background bands: solid while breaching, pale until the resolve."""
    out = []
    for s in spans:
        if only is not None and s.get("incident_id") not in only:
            continue
        color = SEVERITY_COLORS.get(s.get("severity"), "#999")
        a, b = axis.x(s["first_index"] - 0.5), axis.x(s["last_index"] + 0.5)
        out.append(f'<rect class="span {esc(str(s.get("severity")))}" x="{a:.1f}" y="{top:.1f}" '
                   f'width="{max(b - a, 1):.1f}" height="{bottom - top:.1f}" fill="{color}" fill-opacity="0.18">'
                   f'<title>{esc(s.get("severity", ""))} {esc(s.get("type", ""))} {esc(s.get("incident_id", ""))}</title></rect>')
        end = s.get("end_index")
        if end is not None and end > s["last_index"]:
            c = axis.x(end + 0.5)
            out.append(f'<rect x="{b:.1f}" y="{top:.1f}" width="{c - b:.1f}" height="{bottom - top:.1f}" '
                       f'fill="{color}" fill-opacity="0.06"/>')
    return "".join(out)


def _chart(axis: _Axis, windows: Sequence[Mapping[str, Any]], series: Sequence[tuple[str, str, str]],
           spans: Sequence[Mapping[str, Any]] = (), thresholds: Sequence[tuple[float, str, str]] = (),
           h: int = 130, title: str = "", only: Sequence[str] | None = None) -> str:
    """Lines of ``(path, label, color)`` over the windows, optional threshold lines, incident spans behind."""
    pts = {path: [(w["window"]["index"], _get(w, path)) for w in windows] for path, _, _ in series}
    vals = [v for p in pts.values() for _, v in p if v is not None] + [t for t, _, _ in thresholds]
    top = (max(vals, default=0.0) * 1.15) or 1.0
    lo_y, hi_y = h - 18, 16

    def y(v: float) -> float:
        return lo_y - v / top * (lo_y - hi_y)

    parts = [f'<svg width="{axis.width}" height="{h}" role="img"><title>{esc(title)}</title>',
             _shade(axis, spans, hi_y, lo_y, only),
             f'<line x1="{axis.left}" y1="{lo_y}" x2="{axis.width - axis.right}" y2="{lo_y}" stroke="#999"/>']
    for t, label, color in thresholds:
        parts.append(f'<line x1="{axis.left}" y1="{y(t):.1f}" x2="{axis.width - axis.right}" y2="{y(t):.1f}" '
                     f'stroke="{color}" stroke-dasharray="4"/><text x="{axis.width - axis.right - 2}" '
                     f'y="{y(t) - 2:.1f}" font-size="9" fill="{color}" text-anchor="end">{esc(label)}</text>')
    legend_x = axis.left
    for (path, label, color), k in zip(series, range(len(series))):
        line = " ".join(f"{axis.x(i):.1f},{y(v):.1f}" for i, v in pts[path] if v is not None)
        dash = ' stroke-dasharray="5 2"' if k % 2 else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{line}"/>')
        parts.append(f'<text x="{legend_x}" y="11" font-size="10" fill="{color}">{esc(label)}</text>')
        legend_x += 7 * len(label) + 16
    parts.append(f'<text x="2" y="{hi_y + 4}" font-size="9">{top:.3g}</text>'
                 f'<text x="2" y="{lo_y}" font-size="9">0</text>{axis.ticks(h - 4)}</svg>')
    return "".join(parts)


def _timeline(axis: _Axis, spans: Sequence[Mapping[str, Any]]) -> str:
    lane = 22
    h = 24 + lane * max(len(spans), 1)
    parts = [f'<svg width="{axis.width}" height="{h}" role="img"><title>incidents over windows</title>']
    for k, s in enumerate(spans):
        y = 4 + k * lane
        color = SEVERITY_COLORS.get(s.get("severity"), "#999")
        a, b = axis.x(s["first_index"] - 0.5), axis.x(s["last_index"] + 0.5)
        end = s.get("end_index")
        parts.append(f'<rect class="span {esc(str(s.get("severity")))}" x="{a:.1f}" y="{y}" width="{max(b - a, 2):.1f}" '
                     f'height="{lane - 6}" fill="{color}"><title>{esc(s.get("summary", ""))}</title></rect>')
        if end is not None and end > s["last_index"]:
            parts.append(f'<rect x="{b:.1f}" y="{y}" width="{axis.x(end + 0.5) - b:.1f}" height="{lane - 6}" '
                         f'fill="{color}" fill-opacity="0.3"/>')
        elif end is None:   # still firing at the end of the history
            parts.append(f'<rect x="{b:.1f}" y="{y}" width="{axis.x(axis.hi + 0.5) - b:.1f}" height="{lane - 6}" '
                         f'fill="{color}" fill-opacity="0.3" stroke="{color}" stroke-dasharray="3"/>')
        feats = ", ".join(s.get("features", [])[:4])
        label = f'{s.get("severity")} {s.get("type")}' + (f" ({feats})" if feats else "")
        parts.append(f'<text x="{a + 3:.1f}" y="{y + lane - 10}" font-size="10" fill="#000">{esc(label)}</text>')
    if not spans:
        parts.append(f'<text x="{axis.left}" y="18" font-size="11" fill="#666">no incidents</text>')
    parts.append(f"{axis.ticks(h - 4)}</svg>")
    return "".join(parts)


_MAX_BIN_LABELS = 12  # rotated 40 degrees, labels 25 pixels apart sit 16 pixels apart across: no overlap


def _short(x: float) -> str:
    """A bin edge in at most 6 characters: 4.8k, 1.7M, 0.25; edges within 1e-300 of 0 print as 0.

    >>> [_short(v) for v in (4759.11, 1677991.09, 0.25, -5e-324, -27436.4, 2.5e9)]
    ['4.76k', '1.68M', '0.25', '0', '-27.4k', '2.5G']
    """
    if abs(x) < 1e-300:
        return "0"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _bin_labels(bins: Mapping[str, Any], k: int) -> list[str]:
    """One short label per bin: the category, or the bin's range as ``≤hi``, ``=x``, ``>lo``.

    >>> _bin_labels({"edges": [-5e-324, 0.0, 1500.0]}, 4)
    ['<0', '=0', '>0', '>1.5k']
    """
    if "categories" in bins:
        return [str(c)[:8] for c in bins["categories"]]
    edges = [float(e) for e in bins.get("edges", [])]
    if not edges:
        return ["all"] * k
    labels = []
    for i in range(k):
        lo = _short(edges[i - 1]) if 0 < i <= len(edges) else None
        hi = _short(edges[i]) if i < len(edges) else None
        if lo is None:
            labels.append(f"<{hi}" if hi == "0" and edges[0] < 0 else f"≤{hi}")
        elif hi == lo:
            labels.append(f"={hi}")
        else:
            labels.append(f">{lo}")
    return labels


def _bars(feature: Mapping[str, Any], w: int = 320, h: int = 120) -> str:
    """Reference (grey) and current (orange) bin shares side by side; at most :data:`_MAX_BIN_LABELS`
    labels under the bars (every n-th bin), rotated so that neighbours never overlap."""
    bins = feature.get("bins")
    if not isinstance(bins, Mapping):
        return ""
    ref, cur = list(bins.get("reference", [])), list(bins.get("current", []))
    k = max(len(ref), 1)
    top = max(ref + cur + [1e-9])
    bw = (w - 20) / k / 2.2
    labels = _bin_labels(bins, k)
    every = -(-k // _MAX_BIN_LABELS)
    label_h = 34
    parts = [f'<svg width="{w}" height="{h + label_h}" role="img"><title>reference vs current</title>']
    for i, (r, c) in enumerate(zip(ref, cur)):
        x = 10 + i * (w - 20) / k
        for j, (v, color) in enumerate(((r, "#9ab"), (c, "#e73"))):
            bh = v / top * (h - 22)
            parts.append(f'<rect x="{x + j * bw:.1f}" y="{h - 10 - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                         f'fill="{color}"><title>{esc(labels[i] if i < len(labels) else "")}: {v:.3f}</title></rect>')
        if i < len(labels) and i % every == 0:
            cx, cy = x + bw, h - 2
            parts.append(f'<text x="{cx:.1f}" y="{cy}" font-size="8" text-anchor="end" '
                         f'transform="rotate(-40 {cx:.1f} {cy})">{esc(labels[i])}</text>')
    parts.append('<text x="10" y="10" font-size="10" fill="#9ab">reference</text>'
                 '<text x="80" y="10" font-size="10" fill="#e73">current</text></svg>')
    return "".join(parts)


def _worst(windows: Sequence[Mapping[str, Any]], feature: str, lo: int | None = None, hi: int | None = None):
    inside = [w for w in windows if feature in w.get("features", {})
              and (lo is None or lo <= w["window"]["index"] <= hi)]
    return max(inside, key=lambda w: w["features"][feature].get("psi", 0.0), default=None)


def _feature_panel(axis: _Axis, windows, name: str, spans, title_extra: str = "", lo=None, hi=None) -> str:
    th = [w.get("thresholds", {}) for w in windows]
    psi_t = min((t["psi"] for t in th if "psi" in t), default=None)
    ks_t = min((t["ks_d"] for t in th if "ks_d" in t), default=None)
    thresholds = [(psi_t, "PSI threshold", "#d33")] if psi_t is not None else []
    series = [(f"features.{name}.psi", "PSI", "#246")]
    if any("ks_d" in w["features"].get(name, {}) for w in windows):
        series.append((f"features.{name}.ks_d", "KS D", "#7a4"))
        if ks_t is not None:
            thresholds.append((ks_t, "KS threshold", "#7a4"))
    worst = _worst(windows, name, lo, hi)
    note = ""
    if worst is not None:
        f = worst["features"][name]
        ks = f" · KS D {f['ks_d']:.3f}" if "ks_d" in f else ""
        change = _get(worst, f"attribution.features.{name}.change")
        moved = (f" · contribution {change:+.3f} log-odds (z {_get(worst, f'attribution.features.{name}.z') or 0:.1f})"
                 if change is not None else "")
        note = (f'<div class="note">worst window {esc(worst["window_id"])}{esc(title_extra)}: PSI '
                f'{f.get("psi", 0.0):.3f}{ks}{esc(moved)}</div>{_bars(f)}')
    return (f'<div class="feat"><h3>{esc(name)}</h3>'
            f'{_chart(axis, windows, series, spans, thresholds, title=f"{name}: PSI and KS D over windows")}'
            f"{_contribution_chart(axis, windows, name, spans)}{note}</div>")


def _contribution_chart(axis: _Axis, windows, name: str, spans) -> str:
    """The feature's mean |contribution| over the windows, against the training slice's (a line)."""
    path = f"attribution.features.{name}.mean_abs"
    if not any(_get(w, path) is not None for w in windows):
        return ""
    refs = [r for r in (_get(w, f"attribution.features.{name}.reference_mean_abs") for w in windows) if r is not None]
    ref = [(refs[-1], "training", "#888")] if refs else []
    return _chart(axis, windows, [(path, "mean |contribution| (log-odds)", "#a3c")], spans, ref, h=90,
                  title=f"{name}: mean |contribution| to the score over windows")


def _attribution_table(windows, names: Sequence[str]) -> str:
    """Each feature's contribution change per window (log-odds, against the training slice; red: a
    significant move), and the score's change; empty without attribution."""
    if not any(isinstance(w.get("attribution"), Mapping) for w in windows):
        return ""

    def cell(w: Mapping[str, Any], name: str | None) -> str:
        a = w.get("attribution") if isinstance(w.get("attribution"), Mapping) else {}
        v = _get(a, "score_change" if name is None else f"features.{name}.change")
        red = name is not None and name in (a.get("moved") or [])
        return f'<td class="{"drift" if red else ""}">{"" if v is None else f"{v:+.2f}"}</td>'
    feats = [n for n in names if any(_get(w, f"attribution.features.{n}.change") is not None for w in windows)]
    rows = "".join(f'<tr><th class="l">{esc(n)}</th>{"".join(cell(w, n) for w in windows)}</tr>' for n in feats)
    rows += f'<tr><th class="l">(score)</th>{"".join(cell(w, None) for w in windows)}</tr>'
    header = "".join(f"<th>{w['window']['index']}</th>" for w in windows)
    return ("<h2>Attribution per feature and window</h2><p class='note'>change of each feature's mean exact "
            "TreeSHAP contribution to the score against the training slice, log-odds, on a sample of each "
            "window; red: a significant move; (score): the mean margin's change, the sum of the features' "
            f"</p><table><tr><th class='l'>feature</th>{header}</tr>{rows}</table>")


def _incident_section(axis: _Axis, windows, s: Mapping[str, Any]) -> str:
    color = SEVERITY_COLORS.get(s.get("severity"), "#999")
    end = s.get("end_index")
    when = (f"windows {s['first_index']}–{s['last_index']} breached; "
            + (f"resolved at window {end}" if end is not None else "still firing at the end of the history"))
    head = (f'<div class="inc {esc(str(s.get("severity")))}"><h3><span class="sev" style="background:{color}">'
            f'{esc(str(s.get("severity")))}</span> {esc(str(s.get("type")))} · {esc(str(s.get("incident_id")))}</h3>'
            f'<div>{esc(str(s.get("summary", "")))}</div><div class="note">{esc(when)}'
            + (f"; started {esc(str(s['started_at']))}" if s.get("started_at") else "")
            + (f", ended {esc(str(s['ended_at']))}" if s.get("ended_at") else "") + "</div>")
    only = [s.get("incident_id")]
    body = []
    signals = INCIDENT_SIGNALS.get(str(s.get("type")), [])
    if signals:
        colors = ["#246", "#a3c", "#7a4"]
        series = [(p, label, colors[i % 3]) for i, (p, label) in enumerate(signals)
                  if any(_get(w, p) is not None for w in windows)]
        if series:
            body.append(_chart(axis, windows, series, [s], title=f"{s.get('type')} signal", only=only))
    feats = [f for f in s.get("features", []) if any(f in w.get("features", {}) for w in windows)]
    feats.sort(key=lambda f: -max(w["features"][f].get("psi", 0.0) for w in windows if f in w.get("features", {})))
    for f in feats[:3]:
        body.append(_feature_panel(axis, windows, f, [s], " (inside the incident)", s["first_index"],
                                   end if end is not None else axis.hi))
    return head + "".join(body) + "</div>"


def render_page(windows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                spans: Sequence[Mapping[str, Any]] = (), title: str = "BreeBoost drift report",
                width: int = 900) -> str:
    """The whole page. ``windows``: drift.stats payloads in index order; ``spans``: incident spans as made
    by :func:`breeboost.report.incidents.incident_spans` (window indices ``first_index``, ``last_index``,
    ``end_index`` or ``None`` while firing)."""
    windows = [w for w in windows if isinstance(w.get("window", {}).get("index"), int)]
    axis = _Axis([w["window"]["index"] for w in windows] + [i for s in spans for i in
                                                              (s["first_index"], s.get("end_index") or s["last_index"])],
                 width)
    names = list(windows[0]["features"]) if windows else []
    names.sort(key=lambda n: -max(w["features"].get(n, {}).get("psi", 0.0) for w in windows))
    rows = []
    for name in names:
        cells = "".join(
            f'<td class="{"drift" if w["features"].get(name, {}).get("drifted") else ""}">'
            f'{w["features"].get(name, {}).get("psi", 0.0):.4f}</td>' for w in windows)
        rows.append(f'<tr><th class="l">{esc(name)}</th>{cells}</tr>')
    rows.append('<tr><th class="l">(score)</th>' + "".join(
        f'<td class="{"drift" if w.get("score", {}).get("drifted") else ""}">{w.get("score", {}).get("psi", 0.0):.4f}</td>'
        for w in windows) + "</tr>")
    header = "".join(f"<th>{w['window']['index']}</th>" for w in windows)
    table = "".join(
        f'<tr><td class="l">{esc(str(s.get("incident_id")))}</td><td class="l">{esc(str(s.get("type")))}</td>'
        f'<td>{esc(str(s.get("severity")))}</td><td>{s["first_index"]}–{s["last_index"]}</td>'
        f'<td>{"" if s.get("end_index") is None else s["end_index"]}</td><td class="l">{esc(str(s.get("status")))}</td>'
        f'<td class="l">{esc(", ".join(s.get("features", [])))}</td></tr>' for s in spans)
    inc_html = (f"<h2>Incidents</h2><p class='note'>one lane per incident on the window axis: solid while it "
                f"breached, pale until it resolved (dashed: still firing)</p>{_timeline(axis, spans)}")
    if spans:
        inc_html += ("<table><tr><th class='l'>incident</th><th class='l'>type</th><th>severity</th>"
                     "<th>breached windows</th><th>resolved at</th><th class='l'>status</th>"
                     f"<th class='l'>features</th></tr>{table}</table>"
                     + "".join(_incident_section(axis, windows, s) for s in spans))
    signal_charts = "".join(
        f'<div class="feat"><h3>{esc(label)}</h3>{_chart(axis, windows, [(p, label, "#246")], spans, h=110, title=label)}</div>'
        for p, label in _SIGNALS if any(_get(w, p) is not None for w in windows))
    drifted = ", ".join(summary.get("drifted_windows", [])) or "none"
    charts = "".join(_feature_panel(axis, windows, n, spans) for n in names)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{esc(title)}</h1><p>model {esc(str(summary.get('model_version')))} · {summary.get('windows', 0)} "
            f"windows · {summary.get('events', 0)} events ({summary.get('dead_lettered', 0)} dead-lettered) · "
            f"windows with drift: {esc(drifted)} · {len(spans)} incident(s)</p>{inc_html}"
            f"<h2>Window signals</h2>{signal_charts}"
            f"<h2>PSI per feature and window</h2><p class='note'>columns: window index; red: drifted (PSI above the "
            f"calibrated threshold or KS D above its threshold)</p><table><tr><th class='l'>feature</th>{header}</tr>"
            f"{''.join(rows)}</table>{_attribution_table(windows, names)}"
            f"<h2>Features</h2><p class='note'>PSI (solid) and KS D (dashed) over the windows, incident spans "
            f"behind; the feature's mean |contribution| to the score against the training slice's; bars: "
            f"reference (grey) vs current (orange) bin shares in the feature's worst window</p>"
            f"{charts}</body></html>")


def render_html(stats: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], title: str = "BreeBoost drift report",
                incidents: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page of a window history as read (any order, redeliveries: see
    :func:`breeboost.windows_order.order_windows`) and the incident events on the ``incidents`` topic
    (made into spans by :func:`breeboost.report.incidents.incident_spans`)."""
    return render_page(order_windows(stats), summary, incident_spans(incidents), title)
