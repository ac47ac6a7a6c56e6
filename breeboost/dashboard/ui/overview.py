"""Overview: throughput, produce-to-score latency, dead-letter rate by reason, open and recent incidents."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from breeboost.dashboard import views
from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.ui import charts
from breeboost.dashboard.ui.common import PageContext, frame, live, show_chart

__all__ = ["render"]


def render(ctx: PageContext) -> None:
    st.header("Overview")
    live(ctx, "overview", _body)


def _body(snap: Snapshot) -> None:
    _tiles(snap)
    left, right = st.columns(2)
    with left:
        _throughput(snap)
    with right:
        _latency(snap)
    left, right = st.columns(2)
    with left:
        _dead_letters(snap)
    with right:
        _drift_summary(snap)
    _incidents(snap)


def _tiles(snap: Snapshot) -> None:
    p = snap.metrics[-1] if snap.metrics else None
    opened = views.open_incidents(snap.incident_events)
    last = snap.windows[-1] if snap.windows else None
    c = st.columns(5)
    c[0].metric("events/s", f"{p.events_per_s:,.0f}" if p else "-")
    c[1].metric("latency p95", f"{p.latency_p95_s * 1000:,.0f} ms" if p and p.latency_p95_s is not None else "-")
    c[2].metric("dead letters/s", f"{p.dead_letters_per_s:,.1f}" if p else "-")
    c[3].metric("open incidents", len(opened))
    c[4].metric("drift windows", len(snap.windows),
                help=f"last: {views.window_label(last)}" if last else "none published yet")


#: Points of the time series drawn (the last 10 minutes at the scraper's 2 s).
SERIES_POINTS = 300


def _series(snap: Snapshot) -> pd.DataFrame:
    return frame([{"time": dt.datetime.fromtimestamp(p.t), "events/s": p.events_per_s, "scored/s": p.scored_per_s,
                   "dead letters/s": p.dead_letters_per_s, "flagged/s": p.flagged_per_s,
                   "p50 ms": None if p.latency_p50_s is None else 1000 * p.latency_p50_s,
                   "p95 ms": None if p.latency_p95_s is None else 1000 * p.latency_p95_s}
                  for p in snap.metrics[-SERIES_POINTS:]])


def _no_metrics(snap: Snapshot) -> bool:
    if snap.metrics:
        return False
    if not snap.metrics_urls:
        st.info("No worker metrics endpoint given: start the dashboard with --metrics-url "
                "http://HOST:PORT/metrics (each worker's --metrics-port).")
    else:
        st.info(f"Waiting for two scrapes of {', '.join(snap.metrics_urls)}.")
    return True


def _throughput(snap: Snapshot) -> None:
    st.subheader("Throughput")
    if _no_metrics(snap):
        return
    df = _series(snap).melt("time", ["events/s", "scored/s", "flagged/s"], "series", "per second")
    show_chart(charts.lines("time", "per second", "series", temporal=True), df)


def _latency(snap: Snapshot) -> None:
    st.subheader("Produce-to-score latency")
    if _no_metrics(snap):
        return
    df = _series(snap).melt("time", ["p50 ms", "p95 ms"], "quantile", "ms").dropna()
    if df.empty:
        st.info("No events scored since the dashboard started.")
        return
    show_chart(charts.lines("time", "ms", "quantile", temporal=True), df)
    st.caption("From the workers' latency histogram: a quantile beyond its largest bucket (30 s) shows as 30 s, "
               "meaning at least that.")


def _dead_letters(snap: Snapshot) -> None:
    st.subheader("Dead letters by reason")
    rows = [{"window": (w.get("window") or {}).get("index"), "reason": r, "dead letters": n}
            for w in snap.windows for r, n in (w.get("dlq_by_reason") or {}).items() if n]
    if snap.metrics:
        rates = snap.metrics[-1].dlq_per_s_by_reason
        st.caption("now: " + (", ".join(f"{r} {v:,.1f}/s" for r, v in sorted(rates.items()) if v) or "none"))
    if not rows:
        st.success("No dead letters in the published windows.")
        return
    show_chart(charts.bars("window", "dead letters", "reason"), frame(rows))


def _drift_summary(snap: Snapshot) -> None:
    st.subheader("Drift: largest feature PSI per window")
    if not snap.windows:
        st.info("No drift window published yet (drift.stats is empty).")
        return
    rows = []
    for w in snap.windows:
        feats = w.get("features") or {}
        name, f = max(feats.items(), key=lambda kv: kv[1].get("psi") or 0.0, default=("-", {}))
        rows.append({"window": (w.get("window") or {}).get("index"), "max PSI": f.get("psi") or 0.0, "feature": name})
    thr = (snap.windows[-1].get("thresholds") or {}).get("psi")
    show_chart(charts.lines("window", "max PSI", rule=thr, rule_label="PSI threshold"), frame(rows))


def _incidents(snap: Snapshot) -> None:
    st.subheader("Incidents")
    rows = views.incident_rows(snap.incident_events)
    if not rows:
        st.success("No incidents.")
        return
    opened = [r for r in rows if r["status"] == "firing" and not r["closed"]]
    st.caption(f"{len(opened)} open, {len(rows)} in all (newest first; see Incidents for evidence and actions)")
    st.table(frame([{"status": r["status"] + (" (closed)" if r["closed"] else "")
                     + (" (acknowledged)" if r["acknowledged"] and not r["closed"] else ""),
                     "severity": r["severity"], "type": r["type"], "features": r["features"],
                     "started": r["started"], "ended": r["ended"] or "-", "incident": r["incident"]}
                    for r in rows[:10]]), hide_index=True)
