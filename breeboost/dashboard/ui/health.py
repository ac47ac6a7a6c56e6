"""Model health: realised precision and recall (delayed labels joined to scores, drift.stats ``concept``)
against the model's own test figures; the predicted fraud rate against the reference; champion vs
challenger when there is one."""
from __future__ import annotations

import streamlit as st

from breeboost.dashboard import views
from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.ui import charts
from breeboost.dashboard.ui.common import PageContext, frame, live, show_chart

__all__ = ["render"]

NO_LABELS = ("No labels yet: realised precision and recall need delayed labels (the labels topic) joined to "
             "their scores; the windows published so far have none.")
NO_CHALLENGER = ("No challenger: one model serves every score. A challenger appears here once the model registry "
                 "has one (breeboost model retrain) and the workers score it in shadow.")


def render(ctx: PageContext) -> None:
    st.header("Model health")
    live(ctx, "health", _body)


def _body(snap: Snapshot) -> None:
    if not snap.windows:
        st.info("No drift window published yet: model health is computed per window.")
    else:
        _realised(snap)
        _fraud_rate(snap)
    st.subheader("Champion vs challenger")
    versions = sorted({w.get("model_version") for w in snap.windows if w.get("model_version")})
    if versions:
        st.caption(f"Champion: model {versions[-1]}" + (f" (also seen: {', '.join(versions[:-1])})" if len(versions) > 1 else ""))
    rows = views.shadow_rows(snap.windows)
    if not rows:
        st.info(NO_CHALLENGER)
        return
    long = [{"window": r["window"], "series": f"{metric}, {r['model']}", "value": r[metric], "kind": r["role"]}
            for r in rows for metric in ("recall", "auprc")]
    df = frame(long).dropna(subset=["value"])
    if not df.empty:
        show_chart(charts.lines("window", "value", "series", y_domain=[0, 1.05], dash=("kind", ["champion", "challenger"]),
                                height=260), df)
    last = rows[-2:]
    st.caption(f"Window {last[0]['window']}, the same {last[0]['labelled']:,} labelled transactions "
               f"({last[0]['positives']} frauds) scored by both: " +
               "; ".join(f"{r['model']}: recall {views.short(r['recall'])}, precision {views.short(r['precision'])}, "
                         f"AUPRC {views.short(r['auprc'])}" for r in last))


def _realised(snap: Snapshot) -> None:
    st.subheader("Realised vs expected precision and recall")
    rows = views.concept_rows(snap.windows)
    if not rows:
        st.info(NO_LABELS)
        return
    long = []
    for r in rows:
        for metric in ("precision", "recall"):
            long.append({"window": r["window"], "series": f"{metric}, realised", "value": r[metric], "kind": "realised"})
            long.append({"window": r["window"], "series": f"{metric}, expected (test slice)",
                         "value": r[f"reference {metric}"], "kind": "expected"})
    df = frame(long).dropna(subset=["value"])
    if df.empty:
        st.info("Labels arrived, but too few frauds among them to define precision or recall yet.")
    else:
        spec = charts.lines("window", "value", "series", y_domain=[0, 1.05], dash=("kind", ["realised", "expected"]), height=300,
                            colours=["#1f77b4", "#9ecae1", "#d62728", "#f4a6a6"])
        show_chart(spec, df)
    last = rows[-1]
    st.caption(f"Window {last['window']}: {last['labelled']:,} labelled events (tp {last['tp']}, fp {last['fp']}, "
               f"fn {last['fn']}); drop against the test slice: precision {views.short(last['precision drop'])}, "
               f"recall {views.short(last['recall drop'])} (None: too few labels or frauds to tell)")


def _fraud_rate(snap: Snapshot) -> None:
    st.subheader("Predicted fraud rate vs reference")
    rows = []
    for w in snap.windows:
        s = w.get("score") or {}
        idx = (w.get("window") or {}).get("index")
        if s.get("predicted_fraud_rate") is not None:
            rows.append({"window": idx, "rate": s["predicted_fraud_rate"], "series": "predicted (window)"})
        if s.get("reference_fraud_rate") is not None:
            rows.append({"window": idx, "rate": s["reference_fraud_rate"], "series": "reference (training)"})
    if not rows:
        st.info("The windows carry no predicted fraud rate yet.")
        return
    show_chart(charts.lines("window", "rate", "series", y_format="%"), frame(rows))
