"""Automatic rollback (#18): after the actions engine promotes a challenger, a new champion that does worse
than the old one did within M windows is rolled back, once; one that does as well is kept.

The promote and rollback steps run as the real ``breeboost model promote/rollback`` child processes on a
real registry (their switches announced on the test broker); the retrain is a stand-in (its output is
the comparison that passes the guard), and the windows are ``drift.stats``-shaped records fed to the
engine as the incident agent feeds it."""
from __future__ import annotations

import json
import time

import pytest

from incident.actions import ActionLedger, ActionsEngine
from incident.actions.launch import SubprocessLauncher
from incident.actions.rollback import Pooled, RollbackWatch
from incident.errors import PolicyError
from models.artifact import model_version, save_artifact
from models.registry import Registry


def _artifact(tmp_path, tag):
    d = tmp_path / f"art-{tag}"
    meta = {"spec": {"name": tag}, "version": model_version(tag.encode(), {"name": tag}), "feature_names": ["a"],
            "threshold": 0.5}
    save_artifact(d, tag.encode(), meta, {"numeric": {}}, {"rows": 0})
    return d


def _window(index, version, labelled, tp, fp, fn):
    return json.dumps({"window": {"index": index}, "model_version": version,
                       "concept": {"labelled": labelled, "tp": tp, "fp": fp, "fn": fn}}).encode()


class _Launcher:
    """The real launcher, except ``retrain``: it 'registers' ``challenger`` with a passing comparison."""

    def __init__(self, settings, log_dir, challenger):
        self.real, self.challenger, self.started = SubprocessLauncher(settings, log_dir), challenger, []

    def start(self, argv):
        self.started.append(argv[1])
        return ("fake",) if argv[1] == "retrain" else self.real.start(argv)

    def poll(self, job):
        if job == ("fake",):
            return 0, json.dumps({"version": self.challenger, "comparison": {
                "rows": 5000, "positives": 100, "champion": {"auprc": 0.5, "recall": 0.6},
                "challenger": {"auprc": 0.8, "recall": 0.7}}})
        return self.real.poll(job)


def _drain(engine, until, timeout_s=60):
    """Poll the engine (as the agent's timer does) until a note contains ``until``; every note seen."""
    notes, end = [], time.monotonic() + timeout_s
    while time.monotonic() < end:
        notes += [e["notes"][-1]["text"] for e in engine.poll()]
        if any(until in n for n in notes):
            return notes
        time.sleep(0.2)
    raise AssertionError(f"no note with {until!r} in {timeout_s} s: {notes}")


def _setup(tmp_path, kafka_settings):
    reg = Registry(tmp_path / "models")
    old = reg.add(_artifact(tmp_path, "old"), by="t").champion
    new = reg.add(_artifact(tmp_path, "new"), by="t", challenger=True).challenger
    config = {"actions": {"promote": {"auto": True, "evidence": "offline"}, "retrain": {"labels_after": 0},
                          "rollback": {"windows": 3, "settle": 1, "min_labelled": 1000, "min_positives": 20}}}
    launcher = _Launcher(kafka_settings, tmp_path / "logs", new)
    engine = ActionsEngine(config, ActionLedger(tmp_path / "state" / "actions.json"), launcher, str(reg.path))
    # the old champion's last windows: recall 0.9 (45 of 50 frauds), precision 0.9
    engine.observe_windows([_window(i, old, 1000, 45, 5, 5) for i in range(5)])
    fired = {"incident_id": "inc-00000000000a", "event": "fired", "type": "concept_drift", "severity": "P1",
             "seq": 1, "notes": [], "status": "firing"}
    engine.observe([fired])
    notes = _drain(engine, "rollback watch:")
    assert reg.state().champion == new, notes
    return reg, old, new, config, launcher, engine, notes


@pytest.mark.slow
def test_a_new_champion_that_does_worse_is_rolled_back_once(tmp_path, kafka_settings):
    reg, old, new, config, launcher, engine, notes = _setup(tmp_path, kafka_settings)
    assert any("against" in n and "recall 0.900" in n for n in notes), notes
    # the settle window (labels of the old champion's scores) is not counted, however bad it looks
    assert engine.observe_windows([_window(5, new, 1000, 0, 0, 50)]) == []
    assert reg.state().champion == new
    # recall 0.2 over 1,000 labels and 50 frauds: worse than 0.9 - 0.05 -> rollback
    started = engine.observe_windows([_window(6, new, 1000, 10, 2, 40)])
    assert len(started) == 1 and "rollback: started" in started[0]["notes"][-1]["text"]
    assert "recall 0.200 < 0.900" in started[0]["notes"][-1]["text"]
    _drain(engine, "rollback: done")
    state = reg.state()
    assert state.champion == old and state.history[-1].action == "rolled_back" and state.history[-1].by == "auto"
    # replayed windows, and a restarted engine fed them again: no second rollback
    assert engine.observe_windows([_window(6, new, 1000, 10, 2, 40), _window(7, new, 1000, 10, 2, 40)]) == []
    again = ActionsEngine(config, ActionLedger(tmp_path / "state" / "actions.json"), launcher, str(reg.path))
    assert again.observe_windows([_window(6, new, 1000, 10, 2, 40)]) == [] and again.poll() == []
    assert launcher.started.count("rollback") == 1 and reg.state().champion == old


@pytest.mark.slow
def test_a_new_champion_that_does_as_well_is_kept(tmp_path, kafka_settings):
    reg, old, new, config, launcher, engine, _ = _setup(tmp_path, kafka_settings)
    ev = engine.observe_windows([_window(i, new, 600, 27, 3, 3) for i in range(5, 9)])   # recall 0.9, 3 counted
    assert [e["notes"][-1]["text"].split(" (")[0] for e in ev] == [f"rollback watch: {new} kept"]
    assert reg.state().champion == new and "rollback" not in launcher.started
    assert engine.rollback.watching is None


def test_too_few_labels_decides_nothing_and_the_watch_survives_a_restart(tmp_path):
    path = tmp_path / "watch.json"
    w = RollbackWatch(path, windows=2, settle=0, min_labelled=1000, min_positives=20)
    w.start("inc-1", "v2", "v1", Pooled(4000, 90, 10, 10))
    assert w.window(1, "v2", Pooled(300, 1, 0, 9)) is None          # 300 labels: not enough to judge
    assert w.window(1, "v2", Pooled(300, 1, 0, 9)) is None          # the same window again: not counted twice
    restarted = RollbackWatch(path, windows=2, settle=0, min_labelled=1000, min_positives=20)
    assert restarted.watching.counted == 1 and restarted.watching.seen == [1]
    assert restarted.window(2, "v1", Pooled(5000, 1, 0, 99)) is None   # another version's window: not counted
    verdict = restarted.window(3, "v2", Pooled(300, 1, 0, 9))
    assert verdict.verdict == "kept" and "fewer than 1000" in verdict.reason
    with pytest.raises(PolicyError, match="unknown key"):
        RollbackWatch.from_policy({"actions": {"rollback": {"window": 3}}}, path)


def test_no_baseline_no_watch(tmp_path, kafka_settings):
    """The old champion had too few labels in the windows the engine saw: nothing is watched, and it says so."""
    reg = Registry(tmp_path / "models")
    reg.add(_artifact(tmp_path, "old"), by="t")
    new = reg.add(_artifact(tmp_path, "new"), by="t", challenger=True).challenger
    launcher = _Launcher(kafka_settings, tmp_path / "logs", new)
    engine = ActionsEngine({"actions": {"promote": {"auto": True, "evidence": "offline"}, "retrain": {"labels_after": 0}}},
                           ActionLedger(tmp_path / "a.json"), launcher,
                           str(reg.path))
    engine.observe([{"incident_id": "inc-00000000000b", "event": "fired", "type": "concept_drift", "severity": "P1",
                     "seq": 1, "notes": [], "status": "firing"}])
    notes = _drain(engine, "rollback watch")
    assert any(n.startswith("no rollback watch:") and "0 labels" in n for n in notes), notes
    assert engine.rollback.watching is None
