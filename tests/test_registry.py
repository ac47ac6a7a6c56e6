"""The model registry (models.registry): roles, history, atomic switches, a plain directory as a registry of
one, the watcher following the champion, and the ``breeboost model`` / ``train --out`` CLI."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from breeboost.cli import main
from models.artifact import load_artifact
from models.errors import ModelError
from models.registry import REGISTRY_FILE, Registry, champion_dir, decode_switch, is_registry
from models.scorer import Scorer
from streams.reload import ModelWatcher


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two small PaySim artifacts (different seeds: different versions)."""
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    out = []
    for seed in (1, 2):
        d = tmp_path_factory.mktemp(f"artifact{seed}") / "model"
        train_model(generate(20_000, seed=seed), load_spec(), TrainConfig(seed=seed, n_estimators=15)).save(d)
        out.append((str(d), load_artifact(d).metadata["version"]))
    return out


def test_roles_history_and_rollback(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    assert reg.state().champion is None and not is_registry(reg.path)
    assert reg.add(a, by="t").champion == va
    assert is_registry(reg.path) and champion_dir(reg.path) == reg.path / "versions" / va
    s = reg.add(b, by="t", challenger=True)
    assert (s.champion, s.challenger, s.versions) == (va, vb, (va, vb))
    assert Scorer.load(reg.path).version == va                     # load_artifact resolves the champion
    s = reg.promote(vb, by="alice", reason="better")
    assert (s.champion, s.challenger, s.previous) == (vb, None, (va,))
    assert Scorer.load(reg.path).version == vb
    with pytest.raises(ModelError, match="already the champion"):
        reg.promote(vb, by="t")
    with pytest.raises(ModelError, match="no version 'nope'"):
        reg.promote("nope", by="t")
    s = reg.rollback(by="bob")
    assert (s.champion, s.previous) == (va, ())
    with pytest.raises(ModelError, match="no earlier champion"):
        reg.rollback(by="t")
    hist = reg.state().history
    assert [(h.action, h.version, h.by) for h in hist] == [("registered", va, "t"), ("challenger", vb, "t"),
                                                          ("promoted", vb, "alice"), ("rolled_back", va, "bob")]
    assert hist[2].previous_champion == va and hist[2].reason == "better"
    # the history entry is the models-topic event
    assert decode_switch(orjson.dumps(orjson.loads(json.dumps({"action": "promoted", "version": vb,
                                                                 "champion": vb, "challenger": None,
                                                                 "previous_champion": va, "time": 1.0,
                                                                 "by": "x"})))).version == vb


def test_plain_artifact_is_a_registry_of_one_and_is_adopted(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    plain = tmp_path / "plain"
    shutil.copytree(a, plain)
    reg = Registry(plain)
    assert (reg.state().champion, reg.state().versions) == (va, (va,))
    assert reg.version_dir(va) == plain and champion_dir(plain) == plain
    s = reg.add(b, by="t")                                  # adopted: the old artifact copied into versions/
    assert (s.champion, s.versions) == (va, (va, vb)) and is_registry(plain)
    assert load_artifact(plain / "versions" / va).metadata["version"] == va
    assert (plain / "metadata.json").is_file()              # the top-level files stay as they were
    assert Scorer.load(plain).version == va


def test_a_corrupt_registry_or_version_is_refused(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    reg.add(a, by="t")
    reg.add(b, by="t")
    (reg.path / "versions" / vb / "model.ubj").write_bytes(b"torn")
    with pytest.raises(ModelError, match="checksum"):
        reg.promote(vb, by="t")
    assert reg.state().champion == va
    (reg.path / REGISTRY_FILE).write_bytes(b"{not json")
    with pytest.raises(ModelError, match="not a valid model registry"):
        reg.state()


_CRASHER = textwrap.dedent("""
    import os, sys, time
    from models.registry import Registry
    reg, stage, target = Registry(sys.argv[1]), sys.argv[2], sys.argv[3]
    real_replace, real_rename = os.replace, os.rename
    def stall(*a):
        print("stalled", flush=True)
        time.sleep(600)
    if stage == "registry":
        os.replace = stall           # the new registry.json is written and fsynced, not yet renamed
        reg.promote(target, by="crasher")
    elif stage == "version":
        os.rename = stall            # the version's files are copied, the directory not yet renamed
        reg.add(target, by="crasher", challenger=True)
    else:
        while True:                  # switch back and forth until killed
            st = reg.state()
            reg.promote(st.previous[-1] if st.previous else target, by="crasher")
""")


def _run_crasher(path, stage, target, wait_for="stalled", delay=None):
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(path), stage, target], stdout=subprocess.PIPE,
                            cwd=os.getcwd())
    if delay is None:
        assert proc.stdout.readline().decode().strip() == wait_for
    else:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()


def test_a_killed_switch_leaves_the_old_champion_serving(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    reg.add(a, by="t")
    reg.add(b, by="t")
    _run_crasher(reg.path, "registry", vb)
    assert reg.state().champion == va and Scorer.load(reg.path).version == va
    assert list(reg.path.glob("registry.json.*.tmp"))          # the torn write is left aside, never read
    assert reg.promote(vb, by="t").champion == vb               # and the next switch works

    fresh = Registry(tmp_path / "fresh")
    fresh.add(a, by="t")
    _run_crasher(fresh.path, "version", b)
    assert fresh.state().versions == (va,) and fresh.state().challenger is None
    assert not (fresh.path / "versions" / vb).exists()          # a half-copied version is not a version
    assert fresh.add(b, by="t", challenger=True).challenger == vb


def test_kill_at_random_moments_never_breaks_the_registry(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    reg.add(a, by="t")
    reg.add(b, by="t")
    for delay in (0.35, 0.5, 0.62, 0.8, 0.95, 1.1):
        _run_crasher(reg.path, "loop", vb, delay=delay)
        state = reg.state()
        assert state.champion in (va, vb)
        assert Scorer.load(reg.path).version == state.champion


def test_watcher_follows_the_champion_and_announces(two_models, tmp_path):
    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    reg.add(a, by="t")
    reg.add(b, by="t", challenger=True)
    heard = []
    watcher = ModelWatcher(reg.path, va, announce=heard.append)
    assert watcher.poll() is None                                # a challenger is not served
    reg.promote(vb, by="t")
    new = watcher.poll()
    assert new is not None and new.version == vb and watcher.current_version == vb
    assert heard == [{"from": va, "to": vb, "model_dir": str(reg.path), "time": heard[0]["time"]}]
    assert watcher.poll() is None
    reg.rollback(by="t")
    assert watcher.poll().version == va and len(heard) == 2
    # a watcher of a plain directory that becomes a registry: same champion, nothing to load
    plain = tmp_path / "plain"
    shutil.copytree(a, plain)
    w2 = ModelWatcher(plain, va)
    Registry(plain).add(b, by="t")
    assert w2.poll() is None


def test_cli_train_list_show_promote_rollback(tmp_path, capsys):
    out = tmp_path / "models"
    common = ["--rows", "20000", "--n-estimators", "15", "--out", str(out), "--json"]
    assert main(["train", "--seed", "3", *common]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["champion"] == first["version"]
    # a new --out is a plain artifact (DIR/metadata.json, as before the registry), a registry of one
    assert json.loads((out / "metadata.json").read_text())["version"] == first["version"] and not is_registry(out)
    assert main(["train", "--seed", "4", *common]) == 0
    second = json.loads(capsys.readouterr().out)
    assert is_registry(out)
    assert second["champion"] == first["version"] != second["version"]   # a champion exists: only a version
    assert main(["model", "list", "--model", str(out), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["champion"] == first["version"] and listed["challenger"] is None
    assert [v["version"] for v in listed["versions"]] == [first["version"], second["version"]]
    assert "auprc" in listed["versions"][0]["metrics"] and listed["history"][0]["action"] == "registered"
    assert main(["model", "show", second["version"], "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "version"
    assert main(["model", "promote", second["version"], "--model", str(out), "--no-announce",
                 "--by", "carol", "--reason", "test"]) == 0
    assert "champion " + second["version"] in capsys.readouterr().out
    assert Registry(out).state().champion == second["version"]
    assert main(["model", "rollback", "--model", str(out), "--no-announce"]) == 0
    assert Registry(out).state().champion == first["version"]
    assert main(["model", "list", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "champion" in text and "history: rolled_back" in text
    assert main(["model", "promote", "0123456789ab", "--model", str(out), "--no-announce"]) == 1
    assert "no version '0123456789ab'" in capsys.readouterr().err
    assert main(["train", "--seed", "4", "--promote", *common]) == 0     # --promote: champion at once
    assert json.loads(capsys.readouterr().out)["champion"] == second["version"]
    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "missing.csv")]) == 1


def test_cli_promote_publishes_the_switch(two_models, tmp_path, kafka_settings, capsys):
    from breeboost.kafka_io import read_topic

    (a, va), (b, vb) = two_models
    reg = Registry(tmp_path / "reg")
    reg.add(a, by="t")
    reg.add(b, by="t")
    topic = kafka_settings.topic_scores + "-models"
    assert main(["model", "promote", vb, "--model", str(reg.path), "--bootstrap", kafka_settings.bootstrap,
                 "--models-topic", topic]) == 0
    events = [decode_switch(r.value) for r in read_topic(kafka_settings, topic, idle_timeout_s=1.0, expect=1,
                                                         timeout_s=30)]
    assert [(e.action, e.version, e.previous_champion) for e in events] == [("promoted", vb, va)]
