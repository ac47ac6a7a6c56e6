"""Re-baselining: a range of windows becomes the champion's new drift reference (a reference version in the
registry), the worker's watcher picks it up as a switch, the aggregator merges each window with the profile
its partials were sketched with."""
from __future__ import annotations

import json

import orjson
import pytest

from breeboost.cli import main
from breeboost.kafka_io import make_producer, read_topic
from models.artifact import load_artifact
from models.registry import Registry, resolve_champion
from models.scorer import Scorer
from streams.reload import ModelWatcher
from tests.streamkit import settings_env, simulate


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    d = tmp_path_factory.mktemp("small") / "model"
    train_model(generate(20_000, seed=1), load_spec(), TrainConfig(seed=1, n_estimators=15)).save(d)
    return d


def test_a_reference_version_is_served_and_followed(small_model, tmp_path):
    reg = Registry(tmp_path / "reg")
    reg.add(small_model, by="t")
    version = reg.state().champion
    trained = load_artifact(reg.path).profile
    watcher = ModelWatcher(reg.path, version)
    new_profile = {**trained, "rebaselined": {"windows": [1, 2]}}
    n, state = reg.rebaseline(new_profile, by="t", reason="accepted")
    assert n == 1 and state.references == {version: 1} and state.history[-1].action == "rebaselined"
    assert load_artifact(reg.path).profile["rebaselined"] == {"windows": [1, 2]}
    assert resolve_champion(reg.path)[1]["rebaselined"] == {"windows": [1, 2]}
    new = watcher.poll()                                   # same version, new reference: a switch
    assert new is not None and new.version == version and watcher.current_reference == 1
    assert watcher.poll() is None
    assert reg.rebaseline(trained, by="t", reason="again")[0] == 2 and watcher.poll().version == version
    assert ModelWatcher(reg.path, version).poll() is None   # started on reference 2: nothing new


def test_the_aggregator_merges_partials_with_the_profile_they_were_sketched_with(small_model):
    from prometheus_client import CollectorRegistry

    from streams.metrics import WorkerMetrics
    from streams.model import ModelHolder

    old = Scorer.load(small_model)
    holder = ModelHolder(old, WorkerMetrics(CollectorRegistry()))
    old_fp = holder.compiled.fingerprint
    new = Scorer.load(small_model)
    new.profile = {**old.profile, "rebaselined": {"windows": [0, 0]}}
    holder.reload(new)
    new_fp = holder.compiled.fingerprint
    assert new_fp != old_fp
    assert holder.profile_for(old.version, [old_fp])[1].fingerprint == old_fp   # in flight: the old one
    assert holder.profile_for(old.version, [old_fp, new_fp])[1].fingerprint == new_fp
    assert holder.profile_for(old.version, ["unknown"])[1].fingerprint == new_fp


def test_rebaseline_cli_builds_the_reference_from_the_windows_transactions(small_model, kafka_settings, tmp_path,
                                                                           monkeypatch, capsys):
    s = kafka_settings
    reg = Registry(tmp_path / "models")
    reg.add(small_model, by="t")
    version = reg.state().champion
    simulate(s, "--count", "8000", "--seed", "3", "--no-labels", "--scenario", "amount_scale:factor=3")
    per_part: dict[int, int] = {}
    for r in read_topic(s, s.topic_transactions, idle_timeout_s=1.0):
        per_part[r.partition] = per_part.get(r.partition, 0) + 1
    parts = sorted(per_part)
    expected = sum(min(max(c - 1000, 0), 1000) for c in per_part.values())   # offsets 1000..1999 of each
    p = make_producer(s, linger_ms=0)
    for i in range(4):
        doc = {"window": {"index": i, "offsets": {str(q): [i * 500, i * 500 + 499] for q in parts}},
               "model_version": version}
        p.send(s.topic_drift_stats, key=b"w", value=orjson.dumps(doc), partition=0)
    p.flush(30)
    p.close()
    monkeypatch.setattr("os.environ", settings_env(s))
    assert main(["reference", "rebaseline", "--windows", "2..3", "--model", str(reg.path), "--read-timeout", "1.5",
                 "--json", "--no-announce", "--reason", "prices went up"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"] == 1 and out["windows"] == [2, 3] and out["rows"] == expected
    assert out["used"] + sum(out["rejected"].values()) == out["rows"] and out["closed"] == []
    state = reg.state()
    assert state.references == {version: 1} and "prices went up" in state.history[-1].reason
    profile = load_artifact(reg.path).profile
    assert profile["rebaselined"]["windows"] == [2, 3]
    trained = orjson.loads((reg.version_dir(version) / "profile.json").read_bytes())
    # amounts three times larger: the new reference's amount bins moved up
    assert profile["numeric"]["amount"]["edges"][4] > 2 * trained["numeric"]["amount"]["edges"][4]
    assert profile.get("attribution") == trained.get("attribution")
    assert main(["reference", "rebaseline", "--windows", "7..9", "--model", str(reg.path), "--read-timeout", "1.0",
                 "--no-announce"]) == 1
    assert "no drift window 7..9" in capsys.readouterr().err
