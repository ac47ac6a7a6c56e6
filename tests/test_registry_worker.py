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
