"""Drift: PSI and KS per feature over the windows with their thresholds, and the reference vs current
histogram of a chosen feature in a chosen window."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from breeboost.dashboard import views
from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.ui import charts
from breeboost.dashboard.ui.common import PageContext, frame, live, show_chart

__all__ = ["render"]


def render(ctx: PageContext) -> None:
    st.header("Drift")
    live(ctx, "drift", _body)


def _body(snap: Snapshot) -> None:
    if not snap.windows:
        st.info("No drift window published yet: drift.stats is empty until the workers close their first "
                "window (BREEBOOST_WINDOW_SIZE events).")
        return
    rows = views.drift_rows(snap.windows)
    features = sorted({r["feature"] for r in rows})
    worst = sorted(features, key=lambda n: -max((r["psi"] or 0.0) for r in rows if r["feature"] == n))
    chosen = st.multiselect("Features", features, default=worst[:4], key="drift_features")
    df = frame([r for r in rows if r["feature"] in chosen])
    thresholds = frame(views.threshold_rows(snap.windows))
    left, right = st.columns(2)
    with left:
        st.subheader("PSI per window")
        _stat_chart(df, thresholds, "psi", "psi threshold")
    with right:
        st.subheader("KS D per window (numeric features)")
        _stat_chart(df, thresholds, "ks_d", "KS threshold")
    _histogram(snap)
    _drifted_table(snap)


def _stat_chart(df: pd.DataFrame, thresholds: pd.DataFrame, stat: str, threshold: str) -> None:
    if df.empty or df[stat].dropna().empty:
        st.info("Choose a feature with this statistic.")
        return
    thr = thresholds.dropna(subset=[threshold])[["window", threshold]].to_dict("records")
    spec = charts.lines("window", stat, "feature", thresholds=thr, threshold_field=threshold, height=300)
    show_chart(spec, df.dropna(subset=[stat]))
    st.caption(f"Dashed black: the calibrated {threshold} of each window (a feature drifts above it).")


def _histogram(snap: Snapshot) -> None:
    st.subheader("Reference vs current, one window")
    with_bins = [w for w in snap.windows if views.histogram_features(w)]
    if not with_bins:
        st.info("These windows carry no histogram bins (workers of an older version).")
        return
    labels = [views.window_label(w) for w in with_bins]
    drifted = [i for i, w in enumerate(with_bins) if w.get("drifted_features")]
    c1, c2 = st.columns(2)
    pick = c1.selectbox("Window", range(len(with_bins)), index=drifted[-1] if drifted else len(with_bins) - 1,
                        format_func=labels.__getitem__, key="drift_window")
    w = with_bins[pick]
    feats = views.histogram_features(w)
    first = (w.get("drifted_features") or feats)[0]
    feature = c2.selectbox("Feature", feats, index=feats.index(first) if first in feats else 0, key="drift_hist_feature")
    rows = views.histogram_rows(w, feature)
    f = (w.get("features") or {}).get(feature) or {}
    spec = charts.bars("bin", "share", "series", x_ordinal=False, sort_field="order", offset=True, y_format="%",
                       colours={"reference": "#9ecae1", "current": "#e6550d"}, x_title=f"{feature} bin", height=300)
    show_chart(spec, frame(rows))
    thr = w.get("thresholds") or {}
    st.caption(f"{feature}: PSI {views.short(f.get('psi'))} (threshold {views.short(thr.get('psi'))}), "
               f"KS D {views.short(f.get('ks_d'))} (threshold {views.short(thr.get('ks_d'))}), "
               f"{'drifted' if f.get('drifted') else 'no drift'} in window {views.window_label(w)}")


def _drifted_table(snap: Snapshot) -> None:
    rows = [{"window": views.window_label(w), "drifted features": ", ".join(w.get("drifted_features") or []),
             "score PSI": views.short((w.get("score") or {}).get("psi"))}
            for w in snap.windows if w.get("drifted_features")]
    st.subheader("Windows with drift")
    if rows:
        st.table(frame(rows[-15:]), hide_index=True)
    else:
        st.success("No window has drifted.")
