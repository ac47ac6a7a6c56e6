"""The dashboard's pages on plain data, through Streamlit's AppTest (no server, no broker, no browser).

Each page renders a :class:`breeboost.dashboard.data.Snapshot` built here; its actions go to a
:class:`StaticSource` that records them. Pages whose data does not exist yet must say so, never fail.
"""
from __future__ import annotations

import copy
import time

import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest  # noqa: E402

from breeboost.dashboard.data import Snapshot, StaticSource  # noqa: E402
from breeboost.dashboard.metrics import MetricsPoint  # noqa: E402
from breeboost.settings import Secret  # noqa: E402
from incident.events import validate_event  # noqa: E402

FEATURES = ("amount", "oldbalanceOrg", "type")


def window(i: int, drifted: bool = False, labelled: int = 0) -> dict:
    """One drift.stats record (the fields the pages read), window ``i``; ``drifted``: amount moved."""
    amount_psi = 0.8 if drifted else 0.01
    feats = {
        "amount": {"kind": "numeric", "psi": amount_psi, "ks_d": 0.3 if drifted else 0.02, "ks_pvalue": 0.0,
                   "missing_ratio": 0.0, "invalid_ratio": 0.0, "count": 1000, "drifted": drifted,
                   "bins": {"edges": [10.0, 100.0, 1000.0], "reference": [0.25, 0.25, 0.25, 0.25],
                            "current": [0.05, 0.1, 0.25, 0.6] if drifted else [0.24, 0.26, 0.25, 0.25]}},
        "oldbalanceOrg": {"kind": "numeric", "psi": 0.02, "ks_d": 0.03, "ks_pvalue": 0.4, "missing_ratio": 0.0,
                          "invalid_ratio": 0.0, "count": 1000, "drifted": False},
        "type": {"kind": "categorical", "psi": 0.001, "chi2": 1.0, "chi2_pvalue": 0.9, "missing_ratio": 0.0,
                 "other_ratio": 0.0, "count": 1000, "drifted": False,
                 "bins": {"categories": ["CASH_OUT", "PAYMENT", "(other)"], "reference": [0.5, 0.5, 0.0],
                          "current": [0.49, 0.51, 0.0]}},
    }
    concept = {"labelled": labelled, "precision": 0.9 if labelled else None, "recall": 0.6 if labelled else None,
               "brier": None, "error_rate": None, "tp": 9 if labelled else 0, "fp": 1 if labelled else 0,
               "fn": 6 if labelled else 0, "tn": max(0, labelled - 16),
               "reference": {"precision": 0.95, "recall": 0.8, "f1": 0.87, "auprc": 0.9},
               "performance_drop": {"precision": 0.05 if labelled else None, "recall": 0.25 if labelled else None}}
    return {"window_id": f"w{i:06d}", "stream": "transactions", "model_version": "m1",
            "window": {"index": i, "events": 1000, "scored": 990, "dead_lettered": 10, "partitions": [0, 1],
                       "first_event_time": 1000.0 + i, "last_event_time": 1001.0 + i, "closed_at": 1002.0 + i},
            "features": feats, "thresholds": {"psi": 0.1, "ks_d": 0.12},
            "dlq_by_reason": {"not_json": 10} if i % 2 else {}, "score": {"psi": 0.05, "predicted_fraud_rate": 0.002,
                                                                         "reference_fraud_rate": 0.0017},
            "concept": concept, "drifted_features": ["amount"] if drifted else [], "drift_detected": drifted}


def incident_events() -> list[dict]:
    """A feature_drift incident that fired and resolved (valid against the incident event schema)."""
    fired = {"schema_version": 1, "event_id": "inc-b32a2caf18db:1", "event": "fired", "seq": 1,
             "incident_id": "inc-b32a2caf18db", "fingerprint": "6f9eb8d9654b438d", "status": "firing",
             "severity": "P1", "pagerduty_severity": "critical", "type": "feature_drift",
             "summary": "P1 feature drift on amount (max PSI 0.8 >= 0.4)",
             "details": {"affected_features": ["amount"], "covers_all_features": False, "value": 0.8,
                         "evidence": {"features": {"amount": {"psi": 0.8, "ks_d": 0.3, "severity": "P1",
                                                              "threshold_psi": 0.1}}},
                         "window": {"stream": "transactions", "first_index": 2, "last_index": 3,
                                    "evaluated_index": 3, "first_window_id": "w000002", "last_window_id": "w000003"},
                         "counts": {"windows_breached": 2}, "peak_severity": "P1"},
             "model_version": "m1", "started_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:05.000Z",
             "ended_at": None, "runbook": "incident/playbook.md#feature-drift", "acknowledged": False,
             "closed": False, "notes": [], "source": "agent"}
    resolved = copy.deepcopy(fired)
    resolved.update(event_id="inc-b32a2caf18db:2", event="resolved", seq=2, status="resolved",
                    summary="resolved after 3 clean windows: P1 feature drift on amount",
                    updated_at="2026-01-01T00:01:00.000Z", ended_at="2026-01-01T00:01:00.000Z")
    for e in (fired, resolved):
        validate_event(e)
    return [fired, resolved]


def points(n: int = 5) -> list[MetricsPoint]:
    now = time.time()
    return [MetricsPoint(now - (n - i), 1000.0 + i, 990.0, 10.0, 2.0, {"not_json": 10.0}, 0.05, 0.2)
            for i in range(n)]


def flagged(with_reasons: bool) -> list[dict]:
    s = {"transaction_id": "tx-7-42", "fraud_probability": 0.97, "fraud_label": 1, "threshold": 0.5,
         "model_version": "m1", "latency_ms": 12.5, "partition": 1, "offset": 42, "item": None, "scored_at": 1000.0}
    if with_reasons:
        s["reasons"] = [{"feature": "amount", "value": 250000.0, "contribution": 2.5}]
    return [s]


def full_snapshot() -> Snapshot:
    wins = [window(i, drifted=i in (2, 3), labelled=500) for i in range(6)]
    pending = [{"type": "score_drift", "status": "pending", "severity": "P2", "started_at": "2026-01-01T00:01:30.000Z"}]
    return Snapshot(incident_events=incident_events(), windows=wins, pending=pending, metrics=points(),
                    metrics_urls=["http://127.0.0.1:1/metrics"], flagged=flagged(True), scores_seen=5000)


def run_page(page: str, source: StaticSource, author: str | None = "alice") -> AppTest:
    def script(page: str, source, author) -> None:
        from breeboost.dashboard.app import render_page

        render_page(page, source, author=author)

    at = AppTest.from_function(script, args=(page, source, author), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Every text the page shows (markdown, captions, alerts, headers, metrics, tables)."""
    out = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "header", "subheader", "metric"):
        for el in getattr(at, kind):
            out.append(str(getattr(el, "value", "")) + " " + str(getattr(el, "label", "")))
    for t in at.table:
        out.append(t.value.to_string())
    for d in at.dataframe:
        out.append(d.value.to_string())
    return "\n".join(out)


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


# --- pages with data ----------------------------------------------------------------------------------
def test_overview_shows_throughput_latency_dead_letters_and_incidents():
    at = run_page("overview", StaticSource(full_snapshot()))
    t = texts(at)
    assert "1,004" in t                       # events/s of the last point
    assert "200 ms" in t                      # latency p95
    assert "feature_drift" in t and "resolved" in t and "0 open, 1 in all" in t
    assert "not_json 10.0/s" in t
    assert charts(at) == 4                    # throughput, latency, dead letters by window, max PSI


def test_transactions_shows_flagged_with_reasons_and_finds_by_id():
    found = {"tx-7-42": {"scores": flagged(True), "dead_letters": []},
             "tx-bad": {"scores": [], "dead_letters": [{"transaction_id": "tx-bad", "reason": "not_json",
                                                        "detail": "not JSON", "raw_b64": "eA=="}]}}
    src = StaticSource(full_snapshot(), transactions=found)
    at = run_page("transactions", src)
    assert "amount=250k (+2.5)" in texts(at)
    at.text_input(key="search_tid").input("tx-7-42")
    at.button[0].click()
    at.run()
    assert ("find_transaction", "tx-7-42", False) in src.calls
    assert "tx-7-42: scored 0.97 (flagged" in texts(at)
    at.text_input(key="search_tid").input("tx-bad")
    at.checkbox(key="search_whole").check()
    at.button[0].click()
    at.run()
    assert ("find_transaction", "tx-bad", True) in src.calls
    assert "dead-lettered, reason not_json" in texts(at)


def test_transactions_without_reason_codes_says_no_reasons_yet():
    at = run_page("transactions", StaticSource(Snapshot(flagged=flagged(False), scores_seen=10)))
    t = texts(at)
    assert "no reasons yet" in t


def test_drift_draws_psi_ks_with_thresholds_and_a_histogram():
    at = run_page("drift", StaticSource(full_snapshot()))
    t = texts(at)
    assert charts(at) == 3                    # PSI, KS, histogram
    assert "calibrated psi threshold" in t and "calibrated KS threshold" in t
    assert "amount: PSI 0.8 (threshold 0.1)" in t     # the last drifted window is chosen by default
    assert at.selectbox(key="drift_hist_feature").value == "amount"
    at.selectbox(key="drift_hist_feature").select("type")
    at.run()
    assert "type: PSI 0.001" in texts(at)


def test_model_health_realised_vs_expected_and_no_challenger():
    at = run_page("model-health", StaticSource(full_snapshot()))
    t = texts(at)
    assert "500 labelled events" in t and "No challenger" in t
    assert charts(at) == 2


def test_incidents_timeline_evidence_rca_and_pending():
    at = run_page("incidents", StaticSource(full_snapshot()))
    t = texts(at)
    assert charts(at) == 1
    assert "feature_drift" in t and "resolved" in t
    assert "Root cause (RCA)" in t and "amount" in t
    assert "Pending breaches are not shown" not in t


def test_acknowledge_and_close_record_who_did_it():
    src = StaticSource(full_snapshot())
    at = run_page("incidents", src, author="alice")
    at.text_input[0].input("looking at the producer")
    next(b for b in at.button if b.label == "Acknowledge").click()
    at.run()
    assert src.calls[-1] == ("annotate", "inc-b32a2caf18db", "ack", "looking at the producer", "alice (dashboard)")
    assert "acknowledged by alice" in texts(at)
    at.text_input[0].input("root cause: amounts in cents")
    next(b for b in at.button if b.label == "Close").click()
    at.run()
    assert src.calls[-1][2:] == ("close", "root cause: amounts in cents", "alice (dashboard)")


def test_no_action_without_a_name():
    src = StaticSource(full_snapshot())
    at = run_page("incidents", src, author=None)
    assert "Give your name" in texts(at)
    assert not [b for b in at.button if b.label in ("Acknowledge", "Close")]


def test_simulator_starts_a_scenario_at_a_rate_and_rejects_a_bad_one():
    src = StaticSource(Snapshot(simulations=[{"scenario": "amount_scale:factor=3", "count": 1000, "rate": 500.0,
                                              "running": True, "started_at": time.time()}]))
    at = run_page("simulator", src)
    assert "running" in texts(at)
    at.number_input[0].set_value(750.0)
    next(b for b in at.button if b.label == "Start simulation").click()
    at.run()
    spec = src.calls[-1][1]
    assert (spec.scenario, spec.rate, spec.scenario_start, spec.scenario_end) == ("amount_scale:factor=3", 750.0, 20000, 40000)
    at.text_input[0].input("no_such_scenario")
    next(b for b in at.button if b.label == "Start simulation").click()
    at.run()
    assert "not started: scenario: unknown scenario 'no_such_scenario'" in texts(at)


# --- pages without data say so ------------------------------------------------------------------------
@pytest.mark.parametrize("page,expected", [
    ("overview", "No worker metrics endpoint given"),
    ("transactions", "No flagged transaction"),
    ("drift", "No drift window published yet"),
    ("model-health", "No drift window published yet"),
    ("incidents", "Nothing pending, firing or resolved yet"),
    ("simulator", "No simulation started"),
])
def test_empty_system_pages_say_what_is_missing(page, expected):
    at = run_page(page, StaticSource(Snapshot()))
    assert expected in texts(at)


def test_no_labels_yet_and_problems_are_shown():
    snap = Snapshot(windows=[window(0), window(1)], problems={"scores": "cannot read 'scores'"})
    at = run_page("model-health", StaticSource(snap))
    t = texts(at)
    assert "No labels yet" in t and "No challenger" in t
    assert "scores: cannot read 'scores'" in t


# --- the token gate -----------------------------------------------------------------------------------
def _gate_script(token: str) -> None:
    import streamlit as st

    from breeboost.dashboard.app import _gate
    from breeboost.settings import Secret

    if _gate(Secret(token)):
        st.markdown(f"inside as {st.session_state['operator']}")


def test_beyond_loopback_the_token_and_a_name_are_asked_for():
    at = AppTest.from_function(_gate_script, args=("s3cret",), default_timeout=30)
    at.run()
    assert "inside" not in texts(at)
    at.text_input[0].input("wrong")
    at.text_input[1].input("bob")
    at.button[0].click()
    at.run()
    assert "Wrong token" in texts(at) and "inside" not in texts(at)
    at.text_input[0].input("s3cret")
    at.text_input[1].input("bob")
    at.button[0].click()
    at.run()
    assert "inside as bob" in texts(at)


def test_without_a_token_beyond_loopback_nothing_is_shown():
    at = AppTest.from_function(_gate_script, args=("",), default_timeout=30)
    at.run()
    assert "refusing to show it" in texts(at)
    assert not at.text_input


def test_the_command_refuses_beyond_loopback_without_a_token(monkeypatch, capsys):
    from breeboost.cli import main

    monkeypatch.delenv("BREEBOOST_DASHBOARD_TOKEN", raising=False)
    assert main(["dashboard", "--host", "0.0.0.0", "--port", "0"]) == 1
    assert "set BREEBOOST_DASHBOARD_TOKEN" in capsys.readouterr().err


def test_the_token_never_prints():
    from breeboost.commands.dashboard import dashboard_token

    tok = dashboard_token({"BREEBOOST_DASHBOARD_TOKEN": "hunter2"})
    assert tok.reveal() == "hunter2" and "hunter2" not in f"{tok} {tok!r}"
    assert isinstance(tok, Secret)


def test_model_health_shows_the_challenger_in_shadow():
    """A window with a shadow section: champion vs challenger on the same labelled transactions."""
    snap = full_snapshot()
    last = dict(snap.windows[-1])
    last["shadow"] = {"champion_version": "champ1", "challenger_version": "chall2", "labelled": 1234, "positives": 40,
                      "champion": {"recall": 0.25, "precision": 0.5, "auprc": 0.3},
                      "challenger": {"recall": 0.95, "precision": 0.9, "auprc": 0.97}}
    snap.windows[-1] = last
    at = run_page("model-health", StaticSource(snap))
    t = texts(at)
    assert "No challenger" not in t and "the same 1,234 labelled transactions (40 frauds)" in t
    assert "challenger chall2: recall 0.95" in t and "champion champ1: recall 0.25" in t
    assert charts(at) == 3
