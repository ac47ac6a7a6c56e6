"""A real worker follows the registry's champion: ``breeboost model promote`` switches what it serves,
the worker logs the switch and the switch is on the models topic."""
from __future__ import annotations

import pytest

from breeboost.cli import main
from breeboost.kafka_io import read_topic
from models.registry import Registry, decode_switch
from tests.streamkit import Worker, read_json, simulate


@pytest.mark.slow
def test_worker_switches_model_on_promote(paysim_model, kafka_settings, tmp_path, monkeypatch):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate
    from tests.streamkit import settings_env

    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(paysim_model, by="t")
    first = reg.state().champion
    other = tmp_path / "other"
    train_model(generate(30_000, seed=5), load_spec(), TrainConfig(seed=5, n_estimators=20)).save(other)
    second = reg.add(other, by="t", challenger=True).challenger
    worker = Worker(s, str(reg.path), tmp_path / "worker.log", role="scoring").wait_ready()
    try:
        simulate(s, "--count", "2000", "--seed", "1", "--no-labels")
        before = {r["transaction_id"] for r in read_json(s, s.topic_scores, expect=2000, timeout_s=60)}
        assert len(before) == 2000
        monkeypatch.setattr("os.environ", settings_env(s))
        assert main(["model", "promote", second, "--model", str(reg.path), "--reason", "test"]) == 0
        worker.wait_for('"model switched"', timeout_s=30)
        simulate(s, "--count", "2000", "--seed", "2", "--start-index", "2000", "--no-labels")
        scores = read_json(s, s.topic_scores, expect=4000, timeout_s=60)
    finally:
        worker.stop()
    assert len(scores) == 4000
    assert {r["model_version"] for r in scores if r["transaction_id"] in before} == {first}
    assert {r["model_version"] for r in scores if r["transaction_id"] not in before} == {second}
    log = worker.log_text()
    assert f'"from": "{first}"' in log.replace('":"', '": "') and second in log
    events = [decode_switch(r.value) for r in read_topic(s, s.models_topic, idle_timeout_s=1.0, expect=1,
                                                         timeout_s=30)]
    assert [(e.action, e.version, e.previous_champion) for e in events if e.model_dir == str(reg.path)] == \
        [("promoted", second, first)]


@pytest.mark.slow
def test_worker_scores_the_challenger_in_shadow(paysim_model, kafka_settings, tmp_path, monkeypatch):
    """A real worker with a registry challenger: every transaction scored by both, the challenger's scores
    on scores.shadow (read with librdkafka), and drift windows whose shadow section judges both models on the
    same labelled transactions; once promoted, shadow scoring stops."""
    import time

    ck = pytest.importorskip("confluent_kafka")
    import orjson

    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate
    from tests.streamkit import settings_env

    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(paysim_model, by="t")
    first = reg.state().champion
    other = tmp_path / "other"
    train_model(generate(30_000, seed=5), load_spec(), TrainConfig(seed=5, n_estimators=20)).save(other)
    second = reg.add(other, by="t", challenger=True).challenger
    worker = Worker(s, str(reg.path), tmp_path / "worker.log", role="scoring", window_size=2000,
                    window_idle_s=1.0).wait_ready()
    n = 10_000
    try:
        worker.wait_for('"shadow model"', timeout_s=30)
        simulate(s, "--count", str(n), "--seed", "1", "--rate", "2500", "--label-delay", "0.5")
        c = ck.Consumer({"bootstrap.servers": s.bootstrap, "group.id": "ck-shadow", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
        c.assign([ck.TopicPartition(s.scores_shadow, p, ck.OFFSET_BEGINNING) for p in range(s.partitions)])
        shadow, deadline = [], time.monotonic() + 90
        while len(shadow) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                shadow.append(orjson.loads(m.value()))
        c.close()
        scores = read_json(s, s.topic_scores, expect=n, timeout_s=60)
        deadline, windows = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            windows = [w for w in read_json(s, s.topic_drift_stats, idle_timeout_s=1.0, timeout_s=30) if w.get("shadow")]
            if sum(w["shadow"]["labelled"] for w in windows) >= n // 2:
                break
            time.sleep(2)
        monkeypatch.setattr("os.environ", settings_env(s))
        assert main(["model", "promote", second, "--model", str(reg.path), "--reason", "test"]) == 0
        worker.wait_for('"shadow scoring stopped"', timeout_s=30)
    finally:
        worker.stop()
    assert len(shadow) == n and {r["model_version"] for r in shadow} == {second}
    assert {r["transaction_id"] for r in shadow} == {r["transaction_id"] for r in scores}
    assert {r["model_version"] for r in scores} == {first}
    assert sum(w["shadow"]["labelled"] for w in windows) >= n // 2, [w["shadow"]["labelled"] for w in windows]
    for w in windows:
        sh = w["shadow"]
        assert (sh["champion_version"], sh["challenger_version"]) == (first, second)
        assert sh["labelled"] == sh["champion_counts"]["n"] == sh["challenger_counts"]["n"]
        assert sh["positives"] == sh["champion"]["positives"] == sh["challenger"]["positives"]
