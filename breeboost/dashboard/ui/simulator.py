"""Simulator: start a scenario at a rate (``breeboost simulate`` as a child process), watch it, stop it."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from breeboost.dashboard.data import Snapshot
from breeboost.dashboard.simulation import SimulationSpec
from breeboost.dashboard.ui.common import PageContext, frame, live

__all__ = ["render", "EXAMPLES"]

#: One example spec per scenario (docs/simulator.md has every parameter).
EXAMPLES = {
    "(calm traffic)": "", "amount_scale": "amount_scale:factor=3", "type_mix": "type_mix:TRANSFER=0.5",
    "missing_fields": "missing_fields:fraction=0.2", "schema_break": "schema_break:field=amount,mode=string",
    "stale_clock": "stale_clock:lag=600", "fraud_burst": "fraud_burst:factor=5",
    "balance_corruption": "balance_corruption:fraction=0.3", "malformed": "malformed:fraction=0.05",
}


def render(ctx: PageContext) -> None:
    st.header("Simulator")
    st.caption("Publishes PaySim-like transactions (and their delayed labels) to the transactions topic, with "
               "a drift or bad-input scenario, exactly as `breeboost simulate` does.")
    _form(ctx)
    live(ctx, "simulator", _runs)


def _form(ctx: PageContext) -> None:
    kind = st.selectbox("Scenario", list(EXAMPLES), index=1, key="sim_kind")
    with st.form("simulate"):
        spec_text = st.text_input("Scenario spec NAME[:k=v,...]", value=EXAMPLES[kind], key=f"sim_spec_{kind}")
        c = st.columns(5)
        rate = c[0].number_input("events/s", min_value=1.0, max_value=100_000.0, value=2000.0, step=500.0)
        count = c[1].number_input("events", min_value=1, max_value=10_000_000, value=60_000, step=10_000)
        start = c[2].number_input("scenario from event", min_value=0, value=20_000, step=1000)
        end = c[3].number_input("scenario until event (0: the end)", min_value=0, value=40_000, step=1000)
        seed = c[4].number_input("seed", min_value=0, value=0, step=1)
        go = st.form_submit_button("Start simulation", type="primary")
    if st.button("Stop the running simulation"):
        st.info("stopped" if ctx.source.stop_simulation() else "no simulation was running")
    if not go:
        return
    spec = SimulationSpec(scenario=spec_text.strip(), rate=float(rate), count=int(count), seed=int(seed),
                          scenario_start=int(start), scenario_end=int(end) or None)
    try:
        run = ctx.source.start_simulation(spec)
    except ValueError as e:
        st.error(f"not started: {e}")
        return
    st.success(f"started {run.get('scenario') or '(calm)'}: {spec.count:,} events at {spec.rate:,.0f}/s")


def _runs(snap: Snapshot) -> None:
    st.subheader("Runs")
    if not snap.simulations:
        st.info("No simulation started from this dashboard yet.")
        return
    st.table(frame([{"scenario": r.get("scenario"), "events": r.get("count"), "events/s": r.get("rate"),
                     "state": "running" if r.get("running") else f"exited {r.get('exit_code')}",
                     "acknowledged": r.get("acked"), "failed": r.get("failed"),
                     "started": dt.datetime.fromtimestamp(r["started_at"]).strftime("%H:%M:%S")
                     if r.get("started_at") else None} for r in snap.simulations]), hide_index=True)
