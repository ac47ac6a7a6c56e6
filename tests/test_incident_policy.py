"""Incident policy: every band of every statistic, defaults, overrides and validation."""
from __future__ import annotations

import pytest

from incident.errors import PolicyError
from incident.policy import Policy
from incident.rules import RULES
from tests.test_incident_lifecycle import concept_stats, make_stats


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


def types_and_severities(policy, stats):
    return {(b.type, b.severity) for b in policy.evaluate(stats)}


@pytest.mark.parametrize("psi,sev", [(0.0, None), (0.0999, None), (0.1, "P3"), (0.1999, "P3"), (0.2, "P2"),
                                     (0.3999, "P2"), (0.4, "P1"), (3.0, "P1")])
def test_feature_drift_bands(policy, psi, sev):
    got = [(b.type, b.severity, b.features) for b in policy.evaluate(make_stats(1, psi={"amount": psi}))]
    assert got == ([] if sev is None else [("feature_drift", sev, ("amount",))])


def test_feature_drift_flag_alone_opens_nothing_by_default(policy):
    s = make_stats(1, psi={"amount": 0.08}, drifted={"amount": True})
    assert policy.evaluate(s) == []
    p3 = Policy.load(overrides={"types": {"feature_drift": {"flag_only_severity": "P3"}}})
    assert types_and_severities(p3, s) == {("feature_drift", "P3")}


def test_feature_drift_below_calibrated_threshold_is_noise(policy):
    s = make_stats(1, psi={"amount": 0.15}, drifted={"amount": False})
    s["thresholds"]["psi"] = 0.2  # small window: the detectors say 0.15 is noise
    assert policy.evaluate(s) == []
    s["features"]["amount"]["drifted"] = True
    assert types_and_severities(policy, s) == {("feature_drift", "P3")}


def test_feature_drift_groups_features_and_takes_the_worst(policy):
    (b,) = policy.evaluate(make_stats(1, psi={"amount": 0.45, "type": 0.12, "hour": 0.25}))
    assert b.features == ("amount", "hour", "type") and b.severity == "P1" and b.value == 0.45
    assert b.evidence["features"]["type"]["severity"] == "P3"
    assert "amount" in b.summary


@pytest.mark.parametrize("ratio,sev", [(0.0, None), (0.0299, None), (0.03, "P3"), (0.0999, "P3"), (0.10, "P2"),
                                       (0.2499, "P2"), (0.25, "P1"), (1.0, "P1")])
def test_missing_data_bands(policy, ratio, sev):
    got = types_and_severities(policy, make_stats(1, missing_ratio=ratio))
    assert got == (set() if sev is None else {("missing_data", sev)})


def test_missing_data_names_features_above_their_floor(policy):
    (b,) = policy.evaluate(make_stats(1, missing_ratio=0.2, feature_missing={"amount": 0.2, "hour": 0.001}))
    assert b.features == ("amount",)


@pytest.mark.parametrize("ratio,sev", [(0.0, None), (0.0099, None), (0.01, "P1"), (0.5, "P1")])
def test_schema_mismatch_bands(policy, ratio, sev):
    got = types_and_severities(policy, make_stats(1, schema_error_ratio=ratio))
    assert got == (set() if sev is None else {("schema_mismatch", sev)})


@pytest.mark.parametrize("ratio,ref,sev", [(0.3, 0.3, None), (0.329, 0.3, None), (0.331, 0.3, "P1"), (0.9, None, None),
                                           (0.05, 0.0, "P1")])
def test_corrupted_balances_is_measured_above_the_reference(policy, ratio, ref, sev):
    got = types_and_severities(policy, make_stats(1, balance_error_ratio=ratio, balance_reference=ref))
    assert got == (set() if sev is None else {("corrupted_balances", sev)})


@pytest.mark.parametrize("lag,sev", [(10.0, None), (299.0, None), (300.0, "P2"), (3599.0, "P2"), (3600.0, "P1")])
def test_stale_data_bands(policy, lag, sev):
    got = types_and_severities(policy, make_stats(1, lag_p95_s=lag))
    assert got == (set() if sev is None else {("stale_data", sev)})


@pytest.mark.parametrize("ratio,sev", [(0.0, None), (0.0099, None), (0.01, "P3"), (0.05, "P2"), (0.2, "P1")])
def test_dead_letter_spike_bands(policy, ratio, sev):
    got = types_and_severities(policy, make_stats(1, dlq_ratio=ratio))
    assert got == (set() if sev is None else {("dead_letter_spike", sev)})


@pytest.mark.parametrize("psi,sev", [(0.05, None), (0.1, "P3"), (0.2, "P2"), (0.4, "P1")])
def test_score_drift_bands(policy, psi, sev):
    got = types_and_severities(policy, make_stats(1, score_psi=psi))
    assert got == (set() if sev is None else {("score_drift", sev)})


@pytest.mark.parametrize("concept,sev", [
    (concept_stats(), None),                                  # calm: precision 0.899, recall 0.8
    (concept_stats(tp=66, fn=34), "P3"),                      # recall 0.66: down 17.5%
    (concept_stats(tp=56, fn=44), "P2"),                      # down 30%
    (concept_stats(tp=40, fp=5, fn=60), "P1"),                # down 50%
    (concept_stats(tp=80, fp=80), "P2"),                      # precision 0.5: down 44%
    (concept_stats(tp=4, fp=0, fn=6, tn=30), None),           # 40 labels: fewer than min_labels
    (concept_stats(tp=6, fp=0, fn=6, tn=2000), None),               # recall 0.5 over 12 frauds: z 2.6, noise
    (concept_stats(tp=40, fn=60, reference=None), None),      # no reference: no performance_drop
    (concept_stats(0, 0, 0, 0), None),                        # no label joined
    ({"adwin_error_drift": True, "reference_recall": 0.9, "recall": 0.1}, None),   # fields nobody writes
])
def test_concept_drift(policy, concept, sev):
    got = types_and_severities(policy, make_stats(1, concept=concept))
    assert got == (set() if sev is None else {("concept_drift", sev)})


def test_concept_drift_options():
    few = make_stats(1, concept=concept_stats(tp=6, fp=0, fn=6, tn=2000))
    assert types_and_severities(Policy.load(overrides={"types": {"concept_drift": {"min_z": 0}}}), few) == \
        {("concept_drift", "P2")}
    small = make_stats(1, concept=concept_stats(tp=4, fp=0, fn=6, tn=30))
    assert types_and_severities(Policy.load(overrides={"types": {"concept_drift": {"min_labels": 10}}}), small) == \
        {("concept_drift", "P1")}
    recall_only = Policy.load(overrides={"types": {"concept_drift": {"metrics": ["recall"]}}})
    assert types_and_severities(recall_only, make_stats(1, concept=concept_stats(tp=80, fp=80))) == set()
    (b,) = Policy.load().evaluate(make_stats(1, concept=concept_stats(tp=40, fp=5, fn=60, tn=9895)))
    assert b.summary == "P1 concept drift: recall down 50% against the model's test slice (0.8 -> 0.4) " \
                        "over 10000 labelled events"
    assert b.evidence["labelled"] == 10000 and b.evidence["counts"] == {"tp": 40, "fp": 5, "fn": 60, "tn": 9895}


def test_schema_reasons_come_from_the_catalogue(policy):
    from breeboost.rejections import SCHEMA_REASONS

    rule = policy.rule("schema_mismatch")
    assert set(rule.reasons) == SCHEMA_REASONS - {"missing_field", "invalid_json", "not_finite"}
    assert rule.reasons == ("not_an_object", "wrong_type", "unknown_category")   # catalogue order
    s = make_stats(1)
    s["dlq_by_reason"] = {"invalid_json": 500, "missing_field": 500, "unknown_category": 200}
    assert types_and_severities(policy, s) == {("schema_mismatch", "P1")}
    s["dlq_by_reason"] = {"invalid_json": 500, "missing_field": 500}
    assert types_and_severities(policy, s) == set()
    own = Policy.load(overrides={"types": {"schema_mismatch": {"reasons": ["invalid_json"]}}})
    assert types_and_severities(own, s) == {("schema_mismatch", "P1")}


def test_signals_name_the_fields_each_rule_reads(policy):
    signals = policy.signals()
    assert list(signals) == list(RULES)
    assert signals["feature_drift"] == ("features.*.psi", "features.*.drifted", "thresholds.psi",
                                        "attribution.features.*.change", "attribution.features.*.abs_change",
                                        "attribution.features.*.stderr")   # impact-weighted severity (#17)
    unweighted = Policy.load(overrides={"types": {"feature_drift": {"impact_weighted": False}}})
    assert unweighted.signals()["feature_drift"] == ("features.*.psi", "features.*.drifted", "thresholds.psi")
    assert "concept.labelled" in signals["concept_drift"] and "concept.performance_drop.recall" in signals["concept_drift"]
    assert not any("error" in f or "reference_" in f for f in signals["concept_drift"])
    assert signals["corrupted_balances"][0] == "balance_error_ratio"


def test_a_new_incident_type_is_one_rule_class():
    from incident import rca
    from incident.lifecycle import IncidentManager
    from incident.rules import ScalarRule

    class ConsumerBacklog(ScalarRule):
        name, anchor = "consumer_backlog", "stale-data"

        @property
        def signals(self):
            return (self.statistic,)

        def evaluate(self, stats):
            return self.scalar_breach(stats, lambda v, b, r: f"consumer backlog of {v:.0f} records")

        @classmethod
        def explain(cls, incident, first):
            return "The consumers fall behind."

    p = Policy.load(overrides={"types": {"consumer_backlog": {"statistic": "lag.records", "bands": {"P2": 1000}}}},
                    rules={**RULES, ConsumerBacklog.name: ConsumerBacklog})
    m = IncidentManager(p)
    events = [e for i in range(3) for e in m.process({**make_stats(i), "lag": {"records": 5000}}, now=1.0 + i)]
    assert [(e["event"], e["type"], e["severity"], e["runbook"]) for e in events] == \
        [("fired", "consumer_backlog", "P2", "incident/playbook.md#stale-data")]
    assert rca.likely_cause(events[0], [], p)[0] == "The consumers fall behind."
    assert "consumer_backlog" not in Policy.load().rules   # the shipped registry does not know it


def test_every_rule_is_in_the_event_schema():
    from incident.events import load_schema

    assert load_schema()["properties"]["type"]["enum"] == list(RULES)


def test_pagerduty_and_runbook_mapping(policy):
    assert [policy.pagerduty_severity(s) for s in ("P1", "P2", "P3", "P4")] == ["critical", "error", "warning", "info"]
    assert policy.runbook("dead_letter_spike") == "incident/playbook.md#dead-letter-spike"


def test_every_type_has_a_playbook_section(policy):
    from importlib import resources

    text = resources.files("incident").joinpath("playbook.md").read_text("utf-8")
    for t in policy.types:
        anchor = policy.runbook(t).split("#")[1]
        assert f'<a id="{anchor}"></a>' in text, anchor


def test_user_file_overrides_deep_merge(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text('[lifecycle]\npending_windows = 1\n[types.stale_data]\nbands = { P3 = 60.0 }\n'
                 '[types.score_drift]\nenabled = false\n')
    p = Policy.load(f)
    assert p.pending_windows == 1 and p.resolve_windows == 3
    assert types_and_severities(p, make_stats(1, lag_p95_s=4000.0, score_psi=0.9)) == {("stale_data", "P3")}


def test_open_severities_can_include_p4():
    p = Policy.load(overrides={"lifecycle": {"open_severities": ["P1", "P2", "P3", "P4"]},
                               "types": {"feature_drift": {"flag_only_severity": "P4"}}})
    s = make_stats(1, psi={"amount": 0.08}, drifted={"amount": True})
    assert types_and_severities(p, s) == {("feature_drift", "P4")}


@pytest.mark.parametrize("overrides,fragment", [
    ({"lifecycle": {"pending_windows": 0}}, "lifecycle.pending_windows"),
    ({"lifecycle": {"open_severities": ["P5"]}}, "lifecycle.open_severities"),
    ({"types": {"missing_data": {"bands": {"P1": 0.1, "P2": 0.2}}}}, "types.missing_data.bands"),
    ({"types": {"missing_data": {"bands": {"P0": 0.1}}}}, "types.missing_data.bands"),
    ({"types": {"missing_data": {"bands": {"P1": "high"}}}}, "types.missing_data.bands.P1"),
    ({"types": {"latency": {}}}, "unknown incident type"),
    ({"types": {"feature_drift": {"group_by": "partition"}}}, "group_by"),
    ({"pagerduty": {"P1": "sev1"}}, "pagerduty.P1"),
    ({"inhibit": [{"source_types": ["nope"], "target_types": ["score_drift"]}]}, "inhibit[0].source_types"),
    ({"types": {"schema_mismatch": {"reasons": ["nope"]}}}, "types.schema_mismatch.reasons"),
    ({"types": {"schema_mismatch": {"exclude_reasons": ["missing"]}}}, "types.schema_mismatch.exclude_reasons"),
    ({"types": {"concept_drift": {"metrics": ["auprc"]}}}, "types.concept_drift.metrics"),
    ({"types": {"concept_drift": {"min_labels": 0}}}, "types.concept_drift.min_labels"),
    ({"types": {"corrupted_balances": {"reference": ["thresholds.x"]}}}, "types.corrupted_balances.reference"),
    ({"types": {"corrupted_balances": {"learn_min_windows": 0}}}, "types.corrupted_balances.learn_min_windows"),
    ({"types": {"stale_data": {"statistic": ""}}}, "types.stale_data.statistic"),
    ({"types": {"feature_drift": {"flag_only_severity": "P9"}}}, "types.feature_drift.flag_only_severity"),
])
def test_invalid_policy_names_the_key(overrides, fragment):
    with pytest.raises(PolicyError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Policy.load(overrides=overrides)


def test_missing_or_broken_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lifecycle\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.load(bad)
