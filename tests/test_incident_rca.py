"""RCA on synthetic drift.stats histories: ranks features, names the one that changed first."""
from __future__ import annotations

import orjson
import pytest

from breeboost.cli import main
from incident import rca
from incident.lifecycle import IncidentManager
from incident.log import IncidentLog
from incident.policy import Policy
from incident.topic import publish_events
from tests.test_incident_lifecycle import concept_stats, make_stats


def amount_scale_history(n: int = 20, start: int = 5) -> list[dict]:
    """amount moves first (window 5); derived features follow a window later with a larger PSI."""
    out = []
    for i in range(n):
        psi = {}
        if start <= i < start + 6:
            psi = {"amount": 0.35}
            if i > start:
                psi.update(errorBalanceOrig=0.6, newbalanceOrig=0.2)
        s = make_stats(i, psi=psi)
        if start <= i < start + 6:
            s["features"]["amount"]["by_partition"] = {"0": 0.05, "1": 0.9, "2": 0.04, "3": 0.05}
        out.append(s)
    return out


def incidents_for(history) -> list[dict]:
    m = IncidentManager(Policy.load())
    out = []
    for i, s in enumerate(history):
        out += m.process(s, now=1_700_000_000.0 + i)
    return out


def test_first_changed_is_the_scenario_feature_not_the_biggest():
    hist = amount_scale_history()
    top = rca.top_drift(hist, 3)
    assert [r["feature"] for r in top] == ["errorBalanceOrig", "amount", "newbalanceOrig"]
    first = rca.first_changed(hist)
    assert first["feature"] == "amount" and first["first_window_index"] == 5 and first["first_window_id"] == "w000005"
    assert first["first_partitions"] == [0, 1, 2, 3] and first["first_worst_partition"] == 1


def test_summary_names_the_cause_per_incident():
    hist = amount_scale_history()
    events = incidents_for(hist)
    assert [e["event"] for e in events] == ["fired", "resolved"]  # both joined during pending
    s = rca.summary(events, hist)
    (inc,) = s["incidents"]
    assert inc["type"] == "feature_drift" and inc["first_changed_feature"] == "amount"
    assert inc["likely_cause"].startswith("The distribution of amount changed first in window 5")
    assert "errorBalanceOrig" in inc["likely_cause"]
    assert inc["first_window_index"] == 5 and inc["partitions"] == [0, 1, 2, 3]
    assert s["first_changed"]["feature"] == "amount"
    assert {r["feature"] for r in s["drifted_features"]} == {"amount", "errorBalanceOrig", "newbalanceOrig"}
    text = rca.render_summary(s)
    assert "First change: amount crossed in window 5" in text and "likely cause:" in text


def test_earlier_calm_noise_does_not_steal_first_change():
    hist = amount_scale_history(start=10)
    hist[2]["features"]["hour"]["psi"] = 0.11  # one noisy window long before the episode
    events = incidents_for(hist)
    row = rca.summary(events, hist)["incidents"][0]
    assert row["first_changed_feature"] == "amount"


def test_missing_data_rca_gives_percentages_and_fields():
    hist = [make_stats(i, **(dict(missing_ratio=0.2, dlq_ratio=0.2, feature_missing={"amount": 0.2})
                             if 4 <= i < 9 else {})) for i in range(16)]
    events = incidents_for(hist)
    s = rca.summary(events, hist)
    (inc,) = s["incidents"]
    assert inc["type"] == "missing_data" and "amount (20.0%)" in inc["likely_cause"]
    assert s["missing_pct"] == {"amount": pytest.approx(20.0)}
    assert s["event_missing_pct"]["max"] == pytest.approx(20.0)


@pytest.mark.parametrize("kw,fragment", [
    (dict(schema_error_ratio=0.1), "no longer match the schema"),
    (dict(balance_error_ratio=0.5), "Balances do not add up"),
    (dict(lag_p95_s=5000.0), "Event time lags processing by 5000 s"),
    (dict(dlq_ratio=0.3), "dead-lettered"),
    (dict(score_psi=0.5), "score distribution moved"),
    (dict(concept=concept_stats(tp=40, fp=5, fn=60)), "Labels disagree with predictions more than before (recall down 50%"),
])
def test_every_type_has_a_plain_words_cause(kw, fragment):
    hist = [make_stats(i, **(kw if 3 <= i < 8 else {})) for i in range(14)]
    (inc,) = rca.summary(incidents_for(hist), hist)["incidents"]
    assert fragment in inc["likely_cause"]


def test_redelivered_stats_are_collapsed_and_empty_history_is_fine():
    hist = amount_scale_history()
    assert rca.summary([], hist + hist)["windows"] == 20
    empty = rca.summary([], [])
    assert empty["first_changed"] is None and empty["incidents"] == []
    assert "none" in rca.render_summary(empty)
    with pytest.raises(ValueError, match="n"):
        rca.top_drift(hist, 0)


def _write_jsonl(path, docs):
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))


def test_rca_cli_on_files(tmp_path, capsys):
    hist = amount_scale_history()
    stats = tmp_path / "stats.jsonl"
    _write_jsonl(stats, hist)
    log = tmp_path / "incident_log.jsonl"
    IncidentLog(log).append(incidents_for(hist))
    assert main(["rca", "--mode", "top_drift", "--n", "2", "--stats", str(stats), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert [r["feature"] for r in doc["features"]] == ["errorBalanceOrig", "amount"]
    assert main(["rca", "--mode", "summary", "--stats", str(stats), "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "First change: amount" in out and "feature_drift" in out
    assert main(["rca", "--stats", str(tmp_path / "nope.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_rca_cli_reads_the_topics(kafka_settings, capsys):
    from breeboost.kafka_io import make_producer

    hist = amount_scale_history()
    p = make_producer(kafka_settings)
    for s in hist:
        p.send(kafka_settings.topic_drift_stats, key=s["window_id"].encode(), value=orjson.dumps(s))
    p.flush()
    p.close()
    publish_events(kafka_settings, incidents_for(hist))
    flags = ["--bootstrap", kafka_settings.bootstrap, "--topic-drift-stats", kafka_settings.topic_drift_stats,
             "--topic-incidents", kafka_settings.topic_incidents, "--read-timeout", "1.5"]
    assert main(["rca", "--mode", "summary", "--json", *flags]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["windows"] == 20 and doc["incidents"][0]["first_changed_feature"] == "amount"
