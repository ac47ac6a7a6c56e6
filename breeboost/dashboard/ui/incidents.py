"""Incidents: the timeline (pending, firing, resolved), one incident's evidence and root-cause summary,
and the acknowledge / close actions (what ``breeboost incidents ack|close`` does, with who did it)."""
from __future__ import annotations

import streamlit as st

from breeboost.dashboard import views
from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.ui import charts
from breeboost.dashboard.ui.common import PageContext, frame, live, show_chart
from breeboost.errors import BreeBoostError

__all__ = ["render", "STATUS_COLOURS"]

STATUS_COLOURS = {"pending": "#f0ad4e", "firing": "#d62728", "resolved": "#2ca02c"}
PICK = "incident_pick"


def render(ctx: PageContext) -> None:
    st.header("Incidents")
    live(ctx, "incidents", _body)
    _actions(ctx)


def _body(snap: Snapshot) -> None:
    rows = views.incident_rows(snap.incident_events)
    _timeline(snap)
    if not rows:
        st.success("No incidents on the incidents topic.")
        return
    st.table(frame([{"status": r["status"], "severity": r["severity"], "type": r["type"], "features": r["features"],
                     "acknowledged": "yes" if r["acknowledged"] else "no", "closed": "yes" if r["closed"] else "no",
                     "started": r["started"], "ended": r["ended"] or "-", "incident": r["incident"]} for r in rows]),
             hide_index=True)
    ids = [r["incident"] for r in rows]
    if st.session_state.get(PICK) not in ids:
        st.session_state[PICK] = ids[0]
    by_id = {r["incident"]: r for r in rows}
    iid = st.selectbox("Incident", ids, key=PICK,
                       format_func=lambda i: f"{by_id[i]['type']} [{by_id[i]['status']}] {i}")
    _detail(snap, iid)


def _timeline(snap: Snapshot) -> None:
    st.subheader("Timeline")
    rows = views.timeline_rows(snap.incident_events, snap.pending or (), snap.taken_at)
    if snap.pending is None:
        st.caption("Pending breaches are not shown: start the dashboard with --incident-state (the agent's --state-dir).")
    if not rows:
        st.info("Nothing pending, firing or resolved yet.")
        return
    show_chart(charts.timeline(STATUS_COLOURS, len(rows)), frame(rows))


def _detail(snap: Snapshot, iid: str) -> None:
    from incident import rca

    e = views.latest_incidents(snap.incident_events).get(iid)
    if e is None:
        return
    d = e.get("details") or {}
    w = d.get("window") or {}
    st.markdown(f"**{e.get('summary')}**  \n{e.get('severity')} {e.get('type')}, {e.get('status')}; windows "
                f"{w.get('first_index')}..{w.get('last_index')}, started {e.get('started_at')}"
                + (f", ended {e.get('ended_at')}" if e.get("ended_at") else "") + f"; runbook `{e.get('runbook')}`")
    cause, first = rca.likely_cause(e, snap.windows)
    st.markdown("**Root cause (RCA)**: " + cause + (
        f"  \nFirst changed: {first['feature']} in window {first.get('first_window_index')} "
        f"(PSI {views.short(first.get('first_psi'))})" if first else ""))
    evidence = d.get("evidence") or {}
    feats = evidence.get("features")
    if isinstance(feats, dict) and feats:
        st.table(frame([{"feature": n, **{k: (views.short(v) if isinstance(v, float) else v) for k, v in f.items()
                                          if k in ("psi", "ks_d", "threshold_psi", "severity", "missing_ratio")}}
                        for n, f in feats.items()]), hide_index=True)
    with st.expander("Evidence (as published)"):
        st.json(evidence, expanded=True)
    for note in views.incident_rows([x for x in snap.incident_events if x.get("incident_id") == iid])[0]["notes"]:
        st.caption("note: " + note)


def _actions(ctx: PageContext) -> None:
    st.subheader("Acknowledge or close the selected incident")
    iid = st.session_state.get(PICK)
    if not iid:
        st.caption("No incident to act on.")
        return
    if not ctx.author:
        st.warning("Give your name in the sidebar first: every acknowledge or close records who did it.")
        return
    with st.form("incident_action", clear_on_submit=True):
        note = st.text_input("Note", placeholder="what you found and did (close needs one)")
        c1, c2 = st.columns(2)
        ack = c1.form_submit_button("Acknowledge")
        close = c2.form_submit_button("Close")
    if not (ack or close):
        return
    action = "ack" if ack else "close"
    iid = st.session_state.get(PICK, iid)
    try:
        ev = ctx.source.annotate(iid, action, note.strip(), f"{ctx.author} (dashboard)")
    except BreeBoostError as e:
        st.error(f"{action} failed: {e}")
        return
    st.success(f"{iid}: {ev.get('event')} by {ctx.author}" + (f" - {note.strip()}" if note.strip() else ""))
