"""Transactions: the latest flagged ones with their reason codes, and a search by transaction id."""
from __future__ import annotations

import streamlit as st

from breeboost.dashboard import views
from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.ui.common import PageContext, frame, live
from breeboost.errors import BreeBoostError

__all__ = ["render"]


def render(ctx: PageContext) -> None:
    st.header("Transactions")
    _search(ctx)
    live(ctx, "transactions", _flagged, scores=True)


def _search(ctx: PageContext) -> None:
    with st.form("search", border=True):
        c1, c2, c3 = st.columns([4, 2, 1], vertical_alignment="bottom")
        tid = c1.text_input("Transaction id", key="search_tid", placeholder="e.g. tx-7-52094")
        whole = c2.checkbox("search the whole topics (slower)", key="search_whole",
                            help="Otherwise: among the latest records this dashboard has read")
        go = c3.form_submit_button("Search")
    if not (go and tid.strip()):
        return
    try:
        found = ctx.source.find_transaction(tid.strip(), whole_topic=whole)
    except BreeBoostError as e:
        st.error(f"search failed: {e}")
        return
    scores, dead = found.get("scores") or [], found.get("dead_letters") or []
    if not scores and not dead:
        st.warning(f"{tid.strip()}: not found" + ("" if whole else " among the latest records read; "
                                                 "tick 'search the whole topics'"))
        return
    for s in scores:
        verdict = "flagged" if s.get("fraud_label") == 1 else "not flagged"
        st.success(f"{s.get('transaction_id')}: scored {s.get('fraud_probability')} ({verdict}, threshold "
                   f"{s.get('threshold')}), model {s.get('model_version')}; reasons: {views.reasons_text(s)}")
        st.json(s, expanded=False)
    for d in dead:
        st.error(f"{d.get('transaction_id')}: dead-lettered, reason {d.get('reason')}: {d.get('detail')}")
        st.json({k: v for k, v in d.items() if k != "raw_b64"}, expanded=False)


def _flagged(snap: Snapshot) -> None:
    st.subheader("Latest flagged transactions")
    if not snap.flagged:
        st.info(f"No flagged transaction among the {snap.scores_seen:,} latest scores read so far.")
        return
    rows = views.flagged_rows(snap.flagged)
    if all(r["reasons"] == views.NO_REASONS for r in rows):
        st.caption("The score records carry no reason codes (no reasons yet): the worker publishes them once "
                   "its model explains its scores.")
    st.caption(f"{len(rows)} flagged among the {snap.scores_seen:,} latest scores read (newest first).")
    st.dataframe(frame(rows), hide_index=True, width="stretch")
