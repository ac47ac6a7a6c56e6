"""``breeboost model retrain`` on a real broker: transactions joined to their labels, every row counted,
the challenger compared with the champion on the newest rows and registered."""
from __future__ import annotations

import json

import orjson
import pytest

from breeboost.cli import main
from breeboost.kafka_io import make_producer
from models.artifact import load_artifact
from models.registry import Registry
from models.scorer import Scorer
from tests.streamkit import settings_env, simulate


@pytest.fixture(scope="module")
def champion_registry(tmp_path_factory):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    staging = tmp_path_factory.mktemp("champion") / "model"
    train_model(generate(20_000, seed=1), load_spec(), TrainConfig(seed=1, n_estimators=15)).save(staging)
    return staging


def _produce(settings, topic, values):
    p = make_producer(settings, linger_ms=0)
    for v in values:
        p.send(topic, key=b"k", value=v, partition=0)
    p.flush(30)
    p.close()


def test_retrain_from_the_topics_counts_every_row_and_registers_a_challenger(
        champion_registry, kafka_settings, tmp_path, monkeypatch, capsys):
    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(champion_registry, by="t")
    champion = reg.state().champion
    simulate(s, "--count", "24000", "--seed", "7", "--label-delay", "0", "--scenario", "fraud_burst:factor=6")
    simulate(s, "--count", "500", "--seed", "8", "--start-index", "24000", "--no-labels")   # never labelled
    _produce(s, s.topic_transactions, [b"{not json", orjson.dumps({"amount": 3.0}), None])
    _produce(s, s.topic_labels, [b"garbage", orjson.dumps({"transaction_id": "x", "isFraud": 7})])
    monkeypatch.setattr("os.environ", settings_env(s))
    policy = tmp_path / "policy.toml"
    policy.write_text("[actions.promote]\nauto = true\nmin_labelled = 100000\n")   # never enough rows: guarded
    assert main(["model", "retrain", "--model", str(reg.path), "--n-estimators", "20", "--read-timeout", "1.5",
                 "--json", "--no-announce", "--policy", str(policy)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    rows = out["rows"]
    assert rows["messages"] == 24_503 and rows["outside_range"] == 0
    assert out["undecodable"] == {"invalid_json": 2}               # the torn JSON and the null message
    assert rows["no_transaction_id"] == 1 and rows["unlabelled"] == 500 and rows["labelled"] == 24_000
    assert rows["transactions"] == rows["no_transaction_id"] + rows["unlabelled"] + rows["labelled"]
    assert out["labels"] == {"records": 24_002, "bad": 2, "relabelled": 0}
    cmp_ = out["comparison"]
    assert cmp_["rows"] == 6000 and cmp_["champion"]["version"] == champion
    assert cmp_["challenger"]["version"] == out["version"] and cmp_["challenger"]["auprc"] is not None
    state = reg.state()
    assert (state.champion, state.challenger) == (champion, out["version"]) and out["role"] == "challenger"
    meta = load_artifact(reg.version_dir(out["version"])).metadata
    assert meta["retrain"]["rows"] == rows and meta["retrain"]["champion"] == champion
    assert meta["spec"]["name"] == "paysim" and "stream(" in meta["training"]["source"]
    assert "retrain: 24503 messages" in captured.err and "500 unlabelled" in captured.err
    assert out["promotion"]["passes"] is False and "fewer than 100000" in out["promotion"]["reason"]


@pytest.mark.slow
def test_retrain_over_the_last_windows_reads_only_their_offsets(champion_registry, kafka_settings, tmp_path,
                                                                 monkeypatch, capsys):
    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(champion_registry, by="t")
    simulate(s, "--count", "12000", "--seed", "9", "--label-delay", "0", "--scenario", "fraud_burst:factor=6")
    from breeboost.kafka_io import read_topic

    parts = sorted({r.partition for r in read_topic(s, s.topic_transactions, idle_timeout_s=1.0)})
    stats = [orjson.dumps({"window": {"index": i, "offsets": {str(p): [i * 500, i * 500 + 499] for p in parts}}})
             for i in range(4)]
    _produce(s, s.topic_drift_stats, stats)
    monkeypatch.setattr("os.environ", settings_env(s))
    assert main(["model", "retrain", "--model", str(reg.path), "--windows", "2", "--n-estimators", "10",
                 "--read-timeout", "1.5", "--min-labelled", "500", "--json", "--no-announce"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    # offsets 1000-1999 of each partition, and nothing else read: the read seeks to them and stops there
    assert rows["messages"] == 1000 * len(parts) and rows["labelled"] == 1000 * len(parts)
    assert rows["outside_range"] == 0
    assert main(["model", "retrain", "--model", str(reg.path), "--since", "2000-01-01", "--min-labelled", "50000",
                 "--read-timeout", "1.0", "--no-announce"]) == 1
    assert "only 12000 labelled transactions" in capsys.readouterr().err


@pytest.mark.slow
def test_a_retrain_killed_mid_training_leaves_the_registry_as_it_was(champion_registry, kafka_settings, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(champion_registry, by="t")
    before = reg.state()
    simulate(s, "--count", "12000", "--seed", "11", "--label-delay", "0", "--scenario", "fraud_burst:factor=6")
    log = tmp_path / "retrain.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "breeboost.cli", "model", "retrain", "--model", str(reg.path),
                                 "--read-timeout", "1.0", "--n-estimators", "2000", "--min-labelled", "500",
                                 "--threads", "1"],
                                stdout=fh, stderr=subprocess.STDOUT, env=settings_env(s))
        deadline = time.monotonic() + 90
        # kill as soon as training starts: with early stopping the whole fit takes ~0.1 s on a quiet machine
        # (a 0.5 s wait let it finish and register its challenger in CI)
        while b"retrain: training on" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert reg.state() == before                                  # no challenger, no switch
    assert Scorer.load(reg.path).version == before.champion
    assert [p.name for p in (reg.path / "versions").iterdir()] == [before.champion]


def test_read_topic_reads_a_part_only_by_offsets_by_time_and_up_to_a_time(kafka_settings):
    """The retrain's reads (#18): from given offsets to given offsets, from a timestamp (a seek, not a
    filter over the whole topic), and up to a timestamp; every record of the part and nothing else."""
    from breeboost.kafka_io import read_topic

    s = kafka_settings
    p = make_producer(s, linger_ms=0)
    t0 = 1_700_000_000_000
    for i in range(300):                       # partition 0, offsets 0..299, timestamps t0 + i s
        p.send(s.topic_labels, key=b"k", value=str(i).encode(), partition=0, timestamp_ms=t0 + i * 1000)
    p.flush(30)
    p.close()
    part = [int(r.value) for r in read_topic(s, s.topic_labels, idle_timeout_s=1.0, starts={0: 100}, ends={0: 149})]
    assert part == list(range(100, 150))
    since = [int(r.value) for r in read_topic(s, s.topic_labels, idle_timeout_s=1.0, since_ms=t0 + 250_000,
                                              seek_since=True)]
    assert since == list(range(250, 300))
    until = [int(r.value) for r in read_topic(s, s.topic_labels, idle_timeout_s=1.0, since_ms=t0 + 20_000,
                                              seek_since=True, until_ms=t0 + 29_000)]
    assert until == list(range(20, 30))        # 30..299 are there and newer: not read
    import time

    t = time.monotonic()
    whole = [int(r.value) for r in read_topic(s, s.topic_labels, idle_timeout_s=30.0, to_highwater=True)]
    assert whole == list(range(300)) and time.monotonic() - t < 15   # at the high watermark, not after 30 s idle
