"""Incident lifecycle: pending, firing, updates, hysteresis, de-duplication, inhibition, restart."""
from __future__ import annotations

import itertools
import json

import pytest

from incident.events import validate_event
from incident.lifecycle import IncidentManager
from incident.policy import Policy
from incident.state import StateFile

FEATURES = ["amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest", "errorBalanceOrig",
            "errorBalanceDest", "hour", "day", "is_large_transaction", "type"]


REFERENCE = {"precision": 0.9, "recall": 0.8, "f1": 0.847, "auprc": 0.8}


def concept_stats(tp: int = 80, fp: int = 9, fn: int = 20, tn: int = 9891, reference: dict | None = REFERENCE) -> dict:
    """drift.stats ``concept`` as the label join publishes it, from the window's confusion counts (calm by
    default: precision 0.899 and recall 0.8 against a test slice of 0.9 and 0.8)."""
    labelled = tp + fp + fn + tn
    doc = {"labelled": labelled, "precision": tp / (tp + fp) if tp + fp else None,
           "recall": tp / (tp + fn) if tp + fn else None, "brier": 0.01 if labelled else None,
           "error_rate": (fp + fn) / labelled if labelled else None, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    if reference is not None:
        doc["reference"] = dict(reference)
        if labelled:
            doc["performance_drop"] = {m: None if doc[m] is None else (reference[m] - doc[m]) / reference[m]
                                       for m in ("precision", "recall")}
    return doc


def make_stats(index: int, psi: dict | None = None, drifted: dict | None = None, missing_ratio: float = 0.0,
               feature_missing: dict | None = None, dlq_ratio: float = 0.0, schema_error_ratio: float = 0.0,
               balance_error_ratio: float = 0.02, balance_reference: float | None = 0.02, lag_p95_s: float = 2.0,
               score_psi: float = 0.01, concept: dict | None = None, model_version: str = "m1",
               partitions=(0, 1, 2, 3), events: int = 10000, omit: tuple = (), stream: str | None = None) -> dict:
    """A drift.stats payload shaped as docs/contracts.md says; calm unless told otherwise."""
    psi = psi or {}
    drifted = drifted or {}
    feature_missing = feature_missing or {}
    feats = {}
    for f in FEATURES:
        p = psi.get(f, 0.004)
        feats[f] = {"kind": "categorical" if f == "type" else "numeric", "psi": p, "ks_d": min(1.0, p / 2),
                    "ks_pvalue": 0.5, "missing_ratio": feature_missing.get(f, 0.0), "count": events,
                    "drifted": drifted.get(f, p >= 0.1)}
    doc = {"window_id": f"w{index:06d}",
           "window": {"index": index, "events": events, "scored": int(events * (1 - dlq_ratio)),
                      "dead_lettered": int(events * dlq_ratio), "partitions": list(partitions),
                      "first_event_time": 1000.0 + 60 * index, "last_event_time": 1059.0 + 60 * index,
                      "closed_at": 1060.0 + 60 * index},
           "model_version": model_version, "features": feats,
           "thresholds": {"psi": 0.05, "ks_d": 0.03},
           "missing_ratio": missing_ratio, "schema_error_ratio": schema_error_ratio, "dlq_ratio": dlq_ratio,
           "dlq_by_reason": {"missing_field": int(events * missing_ratio),
                             "wrong_type": int(round(events * schema_error_ratio))},
           "balance_error_ratio": balance_error_ratio,
           "freshness": {"lag_p50_s": lag_p95_s / 2, "lag_p95_s": lag_p95_s},
           "score": {"psi": score_psi, "mean": 0.01, "predicted_fraud_rate": 0.0013, "reference_fraud_rate": 0.0013},
           "concept": concept or concept_stats(),
           "drifted_features": sorted(f for f, v in feats.items() if v["drifted"])}
    if balance_reference is not None:   # the worker publishes none; the incident manager learns one
        doc["reference"] = {"balance_error_ratio": balance_reference}
    if stream is not None:
        doc["stream"] = stream
    for key in omit:
        doc.pop(key, None)
    return doc


def run(manager: IncidentManager, payloads, t0: float = 1_700_000_000.0) -> list[dict]:
    out = []
    for i, s in enumerate(payloads):
        idx = (s.get("window") or {}).get("index", i)
        evs = manager.process(s, now=t0 + (idx if isinstance(idx, int) else i))  # time follows the window
        for e in evs:
            validate_event(e)  # every emitted event matches the JSON Schema
        out.extend(evs)
    return out


@pytest.fixture
def policy() -> Policy:
    return Policy.load()


def scenario(kind: str, start: int = 5, length: int = 6, total: int = 20, **kw) -> list[dict]:
    return [make_stats(i, **(kw if start <= i < start + length else {})) for i in range(total)]


def summary(events):
    return [(e["event"], e["status"], e["type"], e["severity"]) for e in events]


# --- one incident per scenario ---------------------------------------------------------------------
@pytest.mark.parametrize("kw,itype,sev", [
    (dict(psi={"amount": 0.55}), "feature_drift", "P1"),
    (dict(psi={"type": 0.25}), "feature_drift", "P2"),
    (dict(missing_ratio=0.2, dlq_ratio=0.2, feature_missing={"amount": 0.2}), "missing_data", "P2"),
    (dict(missing_ratio=0.3, dlq_ratio=0.3, feature_missing={"amount": 0.3}, psi={"amount": 0.6}), "missing_data", "P1"),
    (dict(schema_error_ratio=0.1, dlq_ratio=0.1, psi={"amount": 0.3}), "schema_mismatch", "P1"),
    # a renamed field: missing from every event, validation says missing_field
    (dict(missing_ratio=1.0, dlq_ratio=1.0, feature_missing={"amount": 1.0}), "schema_mismatch", "P1"),
    (dict(balance_error_ratio=0.5, psi={"errorBalanceOrig": 0.9, "errorBalanceDest": 0.7}), "corrupted_balances", "P1"),
    (dict(lag_p95_s=900.0), "stale_data", "P2"),
    (dict(lag_p95_s=7200.0), "stale_data", "P1"),
    (dict(dlq_ratio=0.08), "dead_letter_spike", "P2"),
    (dict(score_psi=0.45), "score_drift", "P1"),
    (dict(concept=concept_stats(tp=66, fn=34)), "concept_drift", "P3"),
    (dict(concept=concept_stats(tp=40, fp=5, fn=60)), "concept_drift", "P1"),
])
def test_each_scenario_gives_one_firing_then_one_resolved(policy, kw, itype, sev):
    events = run(IncidentManager(policy), scenario("x", **kw))
    assert summary(events) == [("fired", "firing", itype, sev), ("resolved", "resolved", itype, sev)]
    fired, resolved = events
    assert fired["incident_id"] == resolved["incident_id"] and fired["fingerprint"] == resolved["fingerprint"]
    # pending 2 windows: breach from window 5, fires at 6; 3 clean windows after 10: resolves at 13
    assert fired["details"]["window"]["evaluated_index"] == 6
    assert resolved["details"]["window"]["evaluated_index"] == 13
    assert resolved["ended_at"] and fired["ended_at"] is None
    assert fired["pagerduty_severity"] == {"P1": "critical", "P2": "error", "P3": "warning"}[sev]
    assert fired["runbook"].startswith("incident/playbook.md#")


def test_calm_stream_never_opens_an_incident(policy):
    import numpy as np

    rng = np.random.default_rng(7)
    m = IncidentManager(policy)
    payloads = []
    for i in range(500):  # noise on every statistic, below the P3 bands
        psi = {f: float(rng.uniform(0, 0.09)) for f in FEATURES}
        payloads.append(make_stats(i, psi=psi, drifted={f: bool(rng.random() < 0.01) for f in FEATURES},
                                   missing_ratio=float(rng.uniform(0, 0.02)), dlq_ratio=float(rng.uniform(0, 0.009)),
                                   lag_p95_s=float(rng.uniform(0, 200)), score_psi=float(rng.uniform(0, 0.09))))
    assert run(m, payloads) == []
    assert m.processed == 500 and not m.pending() and not m.open_incidents()


def test_pending_resets_when_the_breach_does_not_hold(policy):
    alternating = [make_stats(i, psi={"amount": 0.5} if i % 2 else {}) for i in range(20)]
    assert run(IncidentManager(policy), alternating) == []


def test_pending_and_resolve_counts_follow_the_policy():
    p = Policy.load(overrides={"lifecycle": {"pending_windows": 1, "resolve_windows": 5}})
    events = run(IncidentManager(p), scenario("x", start=3, length=2, psi={"hour": 0.3}))
    assert [(e["event"], e["details"]["window"]["evaluated_index"]) for e in events] == [("fired", 3), ("resolved", 9)]


def test_one_bad_window_inside_an_episode_does_not_resolve(policy):
    payloads = [make_stats(i, missing_ratio=0.0 if i in (8, 9) else (0.2 if 5 <= i < 14 else 0.0)) for i in range(25)]
    assert summary(run(IncidentManager(policy), payloads)) == [
        ("fired", "firing", "missing_data", "P2"), ("resolved", "resolved", "missing_data", "P2")]


def test_update_on_severity_change_and_new_feature_only(policy):
    psis = [{}, {"amount": 0.15}, {"amount": 0.15}, {"amount": 0.16}, {"amount": 0.25}, {"amount": 0.26},
            {"amount": 0.26, "hour": 0.12}, {"amount": 0.26, "hour": 0.12}, {"amount": 0.27}] + [{}] * 4
    events = run(IncidentManager(policy), [make_stats(i, psi=p) for i, p in enumerate(psis)])
    assert [(e["event"], e["severity"], e["details"]["affected_features"]) for e in events] == [
        ("fired", "P3", ["amount"]),
        ("updated", "P2", ["amount"]),
        ("updated", "P2", ["amount", "hour"]),
        ("resolved", "P2", ["amount", "hour"]),
    ]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert len({e["event_id"] for e in events}) == 4


def test_severity_de_escalates_only_after_the_hysteresis_window(policy):
    psis = [{"amount": 0.5}] * 3 + [{"amount": 0.15}] * 5 + [{}] * 3
    events = run(IncidentManager(policy), [make_stats(i, psi=p) for i, p in enumerate(psis)])
    assert [(e["event"], e["severity"], e["details"]["window"]["evaluated_index"]) for e in events] == [
        ("fired", "P1", 1), ("updated", "P3", 5), ("resolved", "P3", 10)]
    assert events[-1]["details"]["peak_severity"] == "P1"


def test_replay_and_redelivery_open_no_second_incident(policy):
    payloads = scenario("x", psi={"amount": 0.5})
    m = IncidentManager(policy)
    first = run(m, payloads)
    assert len(first) == 2
    assert run(m, payloads) == []                              # the whole history again
    assert run(m, [payloads[6], payloads[6], payloads[3]]) == []  # single redeliveries
    assert m.ignored == len(payloads) + 3


def test_replay_mid_episode_does_not_fire_twice(policy):
    payloads = scenario("x", psi={"amount": 0.5})
    m = IncidentManager(policy)
    events = run(m, payloads[:8])
    events += run(m, payloads[4:8])  # at-least-once redelivery of the last windows
    events += run(m, payloads[8:])
    assert summary(events) == [("fired", "firing", "feature_drift", "P1"), ("resolved", "resolved", "feature_drift", "P1")]


def test_fingerprint_is_stable_per_type_and_model_version(policy):
    psis = [{"amount": 0.5}, {"amount": 0.5, "hour": 0.2}, {"hour": 0.2, "day": 0.3}, {"day": 0.3}]
    m = IncidentManager(policy)
    events = run(m, [make_stats(i, psi=p) for i, p in enumerate(psis)])
    assert len({e["fingerprint"] for e in events}) == 1 and events[0]["event"] == "fired"
    events = run(m, [make_stats(10 + i, psi={"day": 0.3}, model_version="m2") for i in range(3)])
    # a new model version is a new incident; the old version's one resolves for want of breaches
    assert [(e["event"], e["model_version"]) for e in events] == [("fired", "m2"), ("resolved", "m1")]


def test_group_by_feature_opens_one_incident_per_feature():
    p = Policy.load(overrides={"types": {"feature_drift": {"group_by": "feature"}}})
    events = run(IncidentManager(p), scenario("x", psi={"amount": 0.5, "hour": 0.2}))
    fired = [e for e in events if e["event"] == "fired"]
    assert sorted((e["details"]["affected_features"][0], e["severity"]) for e in fired) == [("amount", "P1"), ("hour", "P2")]
    assert len({e["fingerprint"] for e in fired}) == 2


def test_missing_data_inhibits_dead_letter_spike_and_drift_on_its_features(policy):
    kw = dict(missing_ratio=0.3, dlq_ratio=0.3, feature_missing={"amount": 0.3}, psi={"amount": 0.6, "hour": 0.15})
    events = run(IncidentManager(policy), scenario("x", **kw))
    fired = {e["type"]: e for e in events if e["event"] == "fired"}
    assert set(fired) == {"missing_data", "feature_drift"}
    assert fired["feature_drift"]["details"]["affected_features"] == ["hour"]
    assert fired["feature_drift"]["severity"] == "P3"
    assert fired["missing_data"]["details"]["affected_features"] == ["amount"]


def test_p1_integrity_incident_inhibits_drift_on_the_same_features_only(policy):
    kw = dict(balance_error_ratio=0.5, psi={"errorBalanceOrig": 0.9, "hour": 0.5})
    events = run(IncidentManager(policy), scenario("x", **kw))
    fired = {e["type"]: e for e in events if e["event"] == "fired"}
    assert set(fired) == {"corrupted_balances", "feature_drift"}
    assert fired["feature_drift"]["details"]["affected_features"] == ["hour"]
    assert fired["feature_drift"]["details"]["inhibited"][0]["features"] == ["errorBalanceOrig"]


def test_firing_integrity_incident_keeps_inhibiting(policy):
    # missing data fires first; later drift on the same feature stays muted while the incident is open
    payloads = [make_stats(i, missing_ratio=0.3 if 2 <= i < 6 else 0.0, feature_missing={"amount": 0.3} if 2 <= i < 6 else None,
                           psi={"amount": 0.6} if 3 <= i < 8 else {}) for i in range(20)]
    types = {e["type"] for e in run(IncidentManager(policy), payloads) if e["event"] == "fired"}
    assert types == {"missing_data"}


def test_missing_fields_are_missing_data_not_schema_mismatch(policy):
    # the detectors' schema_error_ratio counts missing fields too; the policy reads the reasons
    kw = dict(missing_ratio=0.2, dlq_ratio=0.2, feature_missing={"amount": 0.2})
    payloads = scenario("x", **kw)
    for p in payloads:
        p["schema_error_ratio"] = p["missing_ratio"]
    assert {e["type"] for e in run(IncidentManager(policy), payloads)} == {"missing_data"}


def test_missing_fields_are_not_evaluated(policy):
    payloads = [{"window": {"index": i}, "window_id": f"w{i}"} for i in range(10)]
    payloads += [make_stats(10 + i, omit=("features", "score", "freshness", "concept", "missing_ratio")) for i in range(5)]
    payloads += [{"window": {"index": 20 + i}, "features": {"amount": {"psi": "high"}, "hour": None},
                  "freshness": {"lag_p95_s": float("nan")}, "dlq_ratio": True,
                  "concept": {"labelled": "many", "performance_drop": {"recall": "big"}}}
                 for i in range(5)]
    m = IncidentManager(policy)
    assert run(m, payloads) == [] and m.processed == 20


def test_payload_without_index_is_deduplicated_by_window_id(policy):
    bad = {"window_id": "w1", "missing_ratio": 0.3, "model_version": "m1"}
    m = IncidentManager(policy)
    assert run(m, [bad, bad, {**bad, "window_id": "w2"}])[0]["event"] == "fired"
    assert m.ignored == 1


def _split_run(policy, payloads, cut, rebuild):
    m = IncidentManager(policy)
    before = run(m, payloads[:cut])
    m2 = rebuild(m, before)
    return before, run(m2, payloads[cut:])


@pytest.mark.parametrize("cut", [6, 7, 8, 11, 12])
def test_restart_from_state_file_behaves_as_if_never_stopped(policy, tmp_path, cut):
    payloads = scenario("x", psi={"amount": 0.5, "hour": 0.25}, missing_ratio=0.12)
    whole = run(IncidentManager(policy), payloads)

    def via_file(m, _):
        sf = StateFile(tmp_path / "state.json")
        sf.save(m.state_dict())
        json.dumps(m.state_dict())
        return IncidentManager.from_state(policy, sf.load())
    before, after = _split_run(policy, payloads, cut, via_file)
    assert before + after == whole


@pytest.mark.parametrize("cut", [7, 8, 11])
def test_restore_from_topic_events_gives_the_same_incidents(policy, cut):
    """From the topic alone: no second firing, the same resolve (clean counts restart, see docs)."""
    payloads = scenario("x", psi={"amount": 0.5}, missing_ratio=0.12)
    whole = run(IncidentManager(policy), payloads)
    before, after = _split_run(policy, payloads, cut, lambda m, evs: IncidentManager.restore(policy, evs))
    got = before + after
    assert [(e["event"], e["incident_id"], e["severity"]) for e in got] == \
           [(e["event"], e["incident_id"], e["severity"]) for e in whole]
    # redelivery after a topic restore is still ignored
    m = IncidentManager.restore(policy, before)
    assert run(m, payloads[:cut]) == []


def test_restore_from_events_mid_clean_streak_needs_full_clean_streak(policy):
    payloads = scenario("x", psi={"amount": 0.5})
    m = IncidentManager(policy)
    before = run(m, payloads[:12])  # windows 11 was the 1st clean one
    m2 = IncidentManager.restore(policy, before)
    after = run(m2, payloads[12:])
    assert [(e["event"], e["details"]["window"]["evaluated_index"]) for e in after] == [("resolved", 14)]


def test_ack_notes_are_carried_by_later_agent_events(policy):
    from incident.events import note_event

    payloads = scenario("x", psi={"amount": 0.5})
    m = IncidentManager(policy)
    fired = run(m, payloads[:7])[0]
    ack = note_event(fired, "ack", "looking at upstream", 1_700_000_100.0, "alice")
    validate_event(ack)
    assert ack["status"] == "firing" and ack["acknowledged"] and ack["event_id"] != fired["event_id"]
    assert m.observe(ack)
    resolved = run(m, payloads[7:])[-1]
    assert resolved["acknowledged"] and resolved["notes"][0]["text"] == "looking at upstream"
    # and a topic restore merges the CLI note too
    m3 = IncidentManager.restore(policy, [fired, ack])
    assert m3.open_incidents()[0]["acknowledged"]


def test_state_is_bounded_and_json_able(policy):
    m = IncidentManager(policy)
    for i in itertools.count():
        if i == 3000:
            break
        m.process({"window_id": f"w{i}", "missing_ratio": 0.0})
    s = json.dumps(m.state_dict())
    assert len(s) < 64 * 1024


def test_constructor_validates_policy():
    with pytest.raises(ValueError, match="policy"):
        IncidentManager({"lifecycle": {}})


# --- corrupted balances: a learned reference, a significance guard, drift explains it ---------------
def _paysim_balance(i, rate, events=10000, **kw):
    # no reference in the payload (as the detectors ship it): the manager learns one
    return make_stats(i, balance_error_ratio=rate, balance_reference=None, events=events, **kw)


def test_balance_reference_is_learned_and_a_calm_paysim_rate_never_pages(policy):
    import numpy as np

    rng = np.random.default_rng(3)
    calm = [_paysim_balance(i, 0.486 + rng.normal(0, 0.005)) for i in range(60)]
    m = IncidentManager(policy)
    assert run(m, calm) == []
    assert abs(m.state_dict()["baselines"]["corrupted_balances"][-1] - 0.486) < 0.03


def test_balance_corruption_fires_once_over_the_learned_reference(policy):
    rates = [0.486] * 6 + [0.548] * 6 + [0.486] * 6  # balance_corruption:fraction=0.3 on simulator traffic
    events = run(IncidentManager(policy), [_paysim_balance(i, r) for i, r in enumerate(rates)])
    assert summary(events) == [("fired", "firing", "corrupted_balances", "P1"),
                               ("resolved", "resolved", "corrupted_balances", "P1")]
    assert events[0]["details"]["evidence"]["reference"] == pytest.approx(0.486)


def test_balance_rule_waits_for_a_reference_and_for_significance(policy):
    # corrupted from the very first window: no reference yet, nothing evaluated
    assert run(IncidentManager(policy), [_paysim_balance(i, 0.9) for i in range(3)]) == []
    # 500-event windows: a 4-point excess is ~1.8 standard errors, noise
    small = [_paysim_balance(i, 0.486 if i < 5 else 0.526, events=500) for i in range(15)]
    assert run(IncidentManager(policy), small) == []


@pytest.mark.parametrize("drift", [{"amount": 0.8}, {"type": 0.3}])
def test_amount_or_type_drift_explains_the_balance_error_rate(policy, drift):
    # amount_scale on simulator traffic moves the balance-error rate from 0.49 to 0.68: one drift incident
    payloads = [_paysim_balance(i, 0.68 if 5 <= i < 11 else 0.486,
                                psi={**drift, "errorBalanceOrig": 0.5} if 5 <= i < 11 else {}) for i in range(20)]
    events = run(IncidentManager(policy), payloads)
    assert summary(events)[0][:3] == ("fired", "firing", "feature_drift") and len(events) == 2
    assert set(events[0]["details"]["affected_features"]) == set(drift) | {"errorBalanceOrig"}


# --- the stream field, the tracker's state-file entry, the agent ------------------------------------
def test_stream_field_keys_window_indexes_and_defaults_for_old_records(policy):
    m = IncidentManager(policy, default_stream="transactions")
    bad = dict(psi={"amount": 0.5})
    assert run(m, [make_stats(i, **bad) for i in range(3)])[0]["details"]["window"]["stream"] == "transactions"
    assert run(m, [make_stats(2, stream="transactions", **bad)]) == []   # an old record's window, again
    assert m.ignored == 1
    run(m, [make_stats(2, stream="other", **bad)])                        # another stream's window 2 is new
    assert m.processed == 4
    with pytest.raises(ValueError, match="default_stream"):
        IncidentManager(policy, default_stream="")


def test_state_and_events_from_before_the_stream_field_are_read_as_the_default_stream(policy):
    old = IncidentManager(policy)                     # "default", as state files and events said before
    events = run(old, scenario("x", psi={"amount": 0.5})[:8])
    assert events[0]["details"]["window"]["stream"] == "default"
    for rebuilt in (IncidentManager.from_state(policy, old.state_dict(), default_stream="transactions"),
                    IncidentManager.restore(policy, events, default_stream="transactions")):
        assert run(rebuilt, [make_stats(6, stream="transactions", psi={"amount": 0.5})]) == []   # seen before
        later = run(rebuilt, [make_stats(i, stream="transactions") for i in range(8, 14)])
        assert [(e["event"], e["incident_id"], e["details"]["window"]["stream"]) for e in later] == \
               [("resolved", events[0]["incident_id"], "transactions")]


TRACKER_KEYS = ["type", "fingerprint", "model_version", "status", "incident_id", "seq", "pending", "clean", "recent",
                "severity", "features", "peak_severity", "covers_all", "started_at", "updated_at", "stream",
                "first_window", "last_window", "partitions", "counts", "last", "notes", "acknowledged", "closed"]


def test_tracker_entries_keep_the_state_file_format(policy):
    from incident.state import Tracker

    m = IncidentManager(policy)
    run(m, scenario("x", psi={"amount": 0.5}, missing_ratio=0.12)[:8])
    state = json.loads(json.dumps(m.state_dict()))
    assert len(state["trackers"]) == 2
    for doc in state["trackers"].values():
        assert list(doc) == TRACKER_KEYS
        assert Tracker.from_dict(doc).to_dict() == doc
    assert IncidentManager.from_state(policy, state).state_dict() == state
    first = m.open_incidents()[0]
    first["features"].append("nope")                  # open_incidents gives copies
    assert "nope" not in m.open_incidents()[0]["features"]


def test_incident_agent_publishes_then_flushes_then_saves():
    import asyncio
    from types import SimpleNamespace

    from breeboost.settings import Settings
    from incident.agent import install_incident_agent

    calls = []

    class Topic:
        def __init__(self, name, **kw):
            self.name, self.kw = name, kw

        async def send(self, key, value):
            calls.append(("send", self.name, key, value))

    class App:
        def __init__(self):
            self.topics, self.agents = {}, {}
            self.producer = SimpleNamespace(flush=self.flush)

        def topic(self, name, **kw):
            return self.topics.setdefault(name, Topic(name, **kw))

        def agent(self, topic, name):
            return lambda fn: self.agents.setdefault(name, (topic, fn))

        async def flush(self):
            calls.append(("flush",))

    class Service:
        def process(self, values):
            calls.append(("process", values))
            return [(b"fp", v.upper()) for v in values]

        def save_state(self):
            calls.append(("save",))

    class Stream:
        def take_events(self, n, within):
            async def batches():
                for batch in ([b"a", b"b"], [b"c"]):
                    yield [SimpleNamespace(message=SimpleNamespace(value=v)) for v in batch]
            return batches()

    app, s = App(), Settings()
    install_incident_agent(app, Service(), s)
    topic, agent = app.agents["incidents"]
    assert topic.name == s.topic_drift_stats and set(app.topics) == {s.topic_drift_stats, s.topic_incidents}
    assert app.topics[s.topic_incidents].kw == {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
                                                "value_serializer": "raw", "partitions": None}
    asyncio.run(agent(Stream()))
    out = s.topic_incidents
    assert calls == [("process", [b"a", b"b"]), ("send", out, b"fp", b"A"), ("send", out, b"fp", b"B"), ("flush",),
                     ("save",), ("process", [b"c"]), ("send", out, b"fp", b"C"), ("flush",), ("save",)]
