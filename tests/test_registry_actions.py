"""The promotion guard and the action ledger (incident.actions): a worse challenger is never promoted;
an action runs once across restarts, an interrupted one is not re-run by itself."""
from __future__ import annotations

import json

import numpy as np
import pytest

from incident.actions import ActionLedger, PromotionGuard, action_id
from incident.errors import PolicyError
from incident.policy import Policy


def _cmp(champion, challenger, rows=5000, positives=60):
    return {"rows": rows, "positives": positives, "champion": champion, "challenger": challenger}


def test_a_worse_challenger_is_never_promoted():
    guard = PromotionGuard(auto=True)
    assert not guard.decide(_cmp({"auprc": 0.8, "recall": 0.7}, {"auprc": 0.805, "recall": 0.9})).promote
    assert not guard.decide(_cmp({"auprc": 0.8, "recall": 0.7}, {"auprc": 0.95, "recall": 0.69})).promote
    assert not guard.decide(_cmp({"auprc": 0.8, "recall": 0.7}, {"auprc": None, "recall": 0.9})).promote
    assert not guard.decide(_cmp({"auprc": 0.5, "recall": 0.5}, {"auprc": 0.9, "recall": 0.9}, positives=3)).promote
    ok = guard.decide(_cmp({"auprc": 0.8, "recall": 0.7}, {"auprc": 0.85, "recall": 0.7}))
    assert ok.promote and ok.automatic


def test_the_guard_comes_from_the_policy(tmp_path):
    assert PromotionGuard.from_policy(Policy.load().config).auto is False      # a person confirms by default
    f = tmp_path / "p.toml"
    f.write_text("[actions.promote]\nauto = true\nmargin = 0.02\n")
    guard = PromotionGuard.from_policy(Policy.load(f).config)
    assert guard.auto and guard.margin == 0.02
    with pytest.raises(PolicyError, match="unknown key"):
        PromotionGuard.from_policy({"actions": {"promote": {"atuo": True}}})
    with pytest.raises(PolicyError, match="margin"):
        PromotionGuard(margin=2.0)


def test_an_action_runs_once_across_restarts_and_an_interrupted_one_is_not_rerun(tmp_path):
    path = tmp_path / "actions.json"
    calls = []
    aid = action_id("inc-1", "retrain", "w000003")
    assert aid == action_id("inc-1", "retrain", "w000003") != action_id("inc-1", "retrain", "w000004")
    rec = ActionLedger(path).run_once(aid, "retrain", lambda: calls.append(1) or "v1", by="auto")
    assert rec.status == "done" and rec.result == "v1"
    for _ in range(3):                                      # replays and restarts
        assert ActionLedger(path).run_once(aid, "retrain", lambda: calls.append(1), by="auto").result == "v1"
    assert calls == [1]
    failed = ActionLedger(path).run_once("act-x", "promote", lambda: 1 / 0, by="auto")
    assert failed.status == "failed" and "division" in failed.error

    class Killed(BaseException):
        pass

    def killed():
        raise Killed()                                      # stands for kill -9 mid-action

    with pytest.raises(Killed):
        ActionLedger(path).run_once("act-k", "retrain", killed, by="auto")
    again = ActionLedger(path).run_once("act-k", "retrain", lambda: calls.append(2), by="auto")
    assert again.status == "interrupted" and calls == [1]


class _Jobs:
    """A stand-in launcher: every job ends at once with ``results[argv[1]]`` (exit code, stdout)."""

    def __init__(self, results):
        self.results, self.started = results, []

    def start(self, argv):
        self.started.append(argv)
        return argv

    def poll(self, job):
        return self.results[job[1]]


def _fired(iid="inc-00000000000a", type_="concept_drift", severity="P1"):
    return {"incident_id": iid, "event": "fired", "type": type_, "severity": severity, "seq": 1, "notes": [],
            "status": "firing"}


def _retrain_out(champion_auprc, challenger_auprc):
    return 0, json.dumps({"version": "v2", "comparison": {
        "rows": 5000, "positives": 60, "champion": {"auprc": champion_auprc, "recall": 0.7},
        "challenger": {"auprc": challenger_auprc, "recall": 0.7}}})


def test_replayed_incident_events_run_no_action_twice_across_restarts(tmp_path):
    from incident.actions import ActionsEngine

    config = {"actions": {"promote": {"auto": True, "evidence": "offline"}, "retrain": {"labels_after": 0}}}
    jobs = _Jobs({"retrain": _retrain_out(0.5, 0.8), "promote": (0, "")})
    engine = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "models")
    updates = engine.observe([_fired(), _fired(), {**_fired(), "event": "updated"}])
    assert [u["notes"][-1]["text"] for u in updates] == ["retrain: started"]
    assert all(u["event"] == "updated" and u["source"] == "agent" for u in updates)
    texts = [u["notes"][-1]["text"] for u in engine.poll()]
    assert texts[0] == "retrain: done (challenger v2)" and texts[1].startswith("promote-if-better: started")
    texts = [u["notes"][-1]["text"] for u in engine.poll()]
    assert texts[0] == "promote-if-better: done (done)" and texts[1].startswith("no rollback watch")   # no registry
    assert [j[:3] for j in jobs.started] == [["model", "retrain", "--model"], ["model", "promote", "v2"]]
    restarted = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "models")
    assert restarted.observe([_fired()]) == [] and restarted.poll() == [] and len(jobs.started) == 2


def test_the_engine_never_promotes_a_worse_challenger_and_records_failures(tmp_path):
    from incident.actions import ActionsEngine

    jobs = _Jobs({"retrain": _retrain_out(0.8, 0.7)})
    now = {"labels_after": 0}
    engine = ActionsEngine({"actions": {"promote": {"auto": True, "evidence": "offline"}, "retrain": now}}, ActionLedger(tmp_path / "a.json"),
                           jobs, "m")
    engine.observe([_fired()])
    texts = [u["notes"][-1]["text"] for u in engine.poll()]
    assert "does not pass the guard" in texts[1] and len(jobs.started) == 1
    failing = ActionsEngine({"actions": {"retrain": now}}, ActionLedger(tmp_path / "b.json"), _Jobs({"retrain": (1, "")}),
                            "m")
    failing.observe([_fired()])
    assert [u["notes"][-1]["text"] for u in failing.poll()] == ["retrain: failed (exit code 1)"]
    # not automatic by default: the guard's verdict is a proposal
    proposing = ActionsEngine({"actions": {"retrain": now, "promote": {"evidence": "offline"}}}, ActionLedger(tmp_path / "c.json"),
                              _Jobs({"retrain": _retrain_out(0.5, 0.8)}), "m")
    proposing.observe([_fired()])
    assert "confirm with breeboost model promote" in proposing.poll()[1]["notes"][-1]["text"]


def test_dry_run_says_what_it_would_do_and_low_severities_do_nothing(tmp_path):
    from incident.actions import ActionsEngine

    jobs = _Jobs({})
    engine = ActionsEngine({"actions": {"dry_run": True}}, ActionLedger(tmp_path / "a.json"), jobs, "m")
    texts = [u["notes"][-1]["text"] for u in engine.observe([_fired(), _fired("inc-00000000000b", "feature_drift"),
                                                             _fired("inc-00000000000c", severity="P4")])]
    assert texts[0].startswith("retrain: would run: breeboost model retrain --model m --windows 8")
    assert texts[1].startswith("propose-rebaseline: proposed") and len(texts) == 2 and jobs.started == []
    with pytest.raises(PolicyError, match="unknown action"):
        ActionsEngine({"actions": {"map": {"x": ["reboot"]}}}, ActionLedger(tmp_path / "b.json"), jobs, "m")


def test_the_agent_builds_an_engine_only_for_a_policy_with_actions(tmp_path):
    from types import SimpleNamespace

    from breeboost.settings import Settings
    from incident.agent import actions_engine

    state = SimpleNamespace(path=tmp_path / "incident-state.json")
    plain = SimpleNamespace(manager=SimpleNamespace(policy=Policy.load()), state=state)
    assert actions_engine(plain, Settings()) is None and actions_engine(object(), Settings()) is None
    f = tmp_path / "p.toml"
    f.write_text("[actions.promote]\nauto = true\n")
    acting = SimpleNamespace(manager=SimpleNamespace(policy=Policy.load(f)), state=state)
    engine = actions_engine(acting, Settings(model_dir=str(tmp_path / "models")))
    assert engine.guard.auto and engine.ledger.path == tmp_path / "actions.json"


def test_one_retrain_at_a_time(tmp_path):
    """A second concept_drift incident while a retrain runs does not start another (it would train the same
    challenger again and replace the first); once it is done, a new incident retrains again."""
    from incident.actions import ActionsEngine

    class Slow(_Jobs):
        def __init__(self):
            super().__init__({"retrain": (0, "{}")})
            self.done = False

        def poll(self, job):
            return self.results[job[1]] if self.done else None

    jobs = Slow()
    engine = ActionsEngine({"actions": {"retrain": {"labels_after": 0}}}, ActionLedger(tmp_path / "a.json"), jobs, "m")
    first = engine.observe([_fired("inc-00000000000a")])
    second = engine.observe([_fired("inc-00000000000b")])
    assert [u["notes"][-1]["text"] for u in first] == ["retrain: started"]
    assert [u["notes"][-1]["text"] for u in second] == ["retrain: not started: the retrain of inc-00000000000a is running"]
    assert engine.poll() == [] and len(jobs.started) == 1
    jobs.done = True
    engine.poll()
    assert [u["notes"][-1]["text"] for u in engine.observe([_fired("inc-00000000000c")])] == ["retrain: started"]
    assert len(jobs.started) == 2


def test_a_retrain_waits_for_labels_after_its_incident(tmp_path):
    """concept_drift fires on the first labelled windows of a shift, when the range to train on holds no
    row of the new pattern yet: the retrain starts once the windows after the incident (not those of the
    batch that fired it, each window once) carry labels_after joined labels; a restart waits again, a
    second incident meanwhile starts nothing."""
    from incident.actions import ActionsEngine

    def window(k, labelled):
        return {"window": {"index": k}, "model_version": "v1", "concept": {"labelled": labelled, "tp": 1, "fn": 1}}

    config = {"actions": {"retrain": {"labels_after": 25_000, "windows": 6}}}
    jobs = _Jobs({"retrain": _retrain_out(0.5, 0.8)})
    engine = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "m")
    texts = [u["notes"][-1]["text"] for u in engine.observe([_fired("inc-00000000000a")])]
    assert texts == ["retrain: waiting for 25000 labels joined after the incident, then the last 6 windows"]
    assert engine.observe_windows([window(3, 9000), window(4, 9000)]) == []     # the batch that fired it
    assert engine.observe_windows([window(5, 9000), window(5, 9000)]) == []     # a window counts once
    second = engine.observe([_fired("inc-00000000000b")])
    assert [u["notes"][-1]["text"] for u in second] == \
        ["retrain: not started: the retrain of inc-00000000000a is running"]
    # the agent restarts: nothing ran, so the replayed fired event waits again from the next windows
    restarted = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "m")
    assert len(restarted.observe([_fired("inc-00000000000a")])) == 1 and jobs.started == []
    restarted.observe_windows([window(5, 9000)])
    assert restarted.observe_windows([window(6, 9000), window(7, 9000)]) == [] and jobs.started == []
    started = [u["notes"][-1]["text"] for u in restarted.observe_windows([window(8, 9000)])]
    assert started == ["retrain: started (27000 labels joined in 3 windows after the incident)"]
    assert jobs.started[0][:6] == ["model", "retrain", "--model", "m", "--windows", "6"]
    assert restarted.observe_windows([window(9, 9000)]) == [] and len(jobs.started) == 1
    with pytest.raises(PolicyError, match="labels_after"):
        ActionsEngine({"actions": {"retrain": {"labels_after": -1}}}, ActionLedger(tmp_path / "b.json"), jobs, "m")


def _shadow_window(index, champion_counts, challenger_counts, challenger="v2"):
    import msgspec

    return {"window": {"index": index}, "model_version": "v1", "concept": {"labelled": champion_counts.n},
            "shadow": {"champion_version": "v1", "challenger_version": challenger,
                       "labelled": champion_counts.n,
                       "champion_counts": msgspec.structs.asdict(champion_counts),
                       "challenger_counts": msgspec.structs.asdict(challenger_counts)}}


def _scored(rng, n, fraud_rate, skill):
    """LabelCounts of ``n`` labelled rows scored by a model whose frauds score ~``skill`` (0.5: a coin)."""
    from detectors.records import LabelCounts

    c = LabelCounts()
    for y in (rng.random(n) < fraud_rate).astype(int).tolist():
        p = float(np.clip(rng.normal(skill if y else 1 - skill, 0.15), 0.0, 1.0))
        c.add(y, p, int(p >= 0.5))
    return c


def test_promotion_waits_for_the_shadow_evidence_and_pools_it_exactly(tmp_path):
    """evidence = shadow: a challenger that passes offline is promoted only once the windows'
    shadow sections (both models on the same labelled rows) hold min_labelled rows; pooled exactly (the
    figures of the pooled counts are those of all rows at once); a restart resumes the wait; a challenger
    worse in shadow is not promoted, nor one without enough shadow evidence within shadow_windows."""
    from detectors.health import figures
    from detectors.records import LabelCounts
    from incident.actions import ActionsEngine

    rng = np.random.default_rng(7)
    config = {"actions": {"promote": {"auto": True, "min_labelled": 5000, "min_positives": 50, "shadow_windows": 6,
                                      "evidence": "shadow"},
                          "retrain": {"labels_after": 0}}}
    jobs = _Jobs({"retrain": _retrain_out(0.5, 0.8), "promote": (0, "")})
    engine = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "m")
    engine.observe([_fired()])
    texts = [u["notes"][-1]["text"] for u in engine.poll()]
    assert "passes offline" in texts[1] and "waiting for 5000 labelled" in texts[1] and len(jobs.started) == 1
    pairs = [(_scored(rng, 2000, 0.03, 0.55), _scored(rng, 2000, 0.03, 0.9)) for _ in range(3)]
    assert engine.observe_windows([_shadow_window(10, *pairs[0]), _shadow_window(10, *pairs[0])]) == []  # once
    # the agent restarts mid-wait: the evidence so far is on disk
    engine = ActionsEngine(config, ActionLedger(tmp_path / "a.json"), jobs, "m")
    assert engine.observe_windows([_shadow_window(11, *pairs[1])]) == []
    (ev,) = engine.observe_windows([_shadow_window(12, *pairs[2])])
    text = ev["notes"][-1]["text"]
    assert text.startswith("promote-if-better: started (v2 passes the guard: in shadow, 3 of 3 windows")
    assert jobs.started[-1][:3] == ["model", "promote", "v2"]
    whole = [LabelCounts(), LabelCounts()]
    for a, b in pairs:
        whole[0].merge(a), whole[1].merge(b)
    want = figures(whole[0]), figures(whole[1])
    assert f"challenger AUPRC {want[1]['auprc']:.4g} >= champion {want[0]['auprc']:.4g}" in text
    assert f"on {whole[0].n} rows ({whole[0].tp + whole[0].fn} frauds)" in text

    # worse in shadow (it had passed offline): not promoted
    worse = ActionsEngine(config, ActionLedger(tmp_path / "b.json"), _Jobs({"retrain": _retrain_out(0.5, 0.8)}), "m")
    worse.observe([_fired()])
    worse.poll()
    out = worse.observe_windows([_shadow_window(20 + i, _scored(rng, 2000, 0.03, 0.9), _scored(rng, 2000, 0.03, 0.6))
                                 for i in range(3)])
    assert len(out) == 1 and "does not pass the guard (in shadow" in out[0]["notes"][-1]["text"]

    # no shadow section for shadow_windows windows (workers with shadow = off): not promoted, and says why
    blind = ActionsEngine(config, ActionLedger(tmp_path / "c.json"), _Jobs({"retrain": _retrain_out(0.5, 0.8)}), "m")
    blind.observe([_fired()])
    blind.poll()
    plain = [{"window": {"index": 30 + i}, "model_version": "v1", "concept": {"labelled": 1000}} for i in range(6)]
    assert blind.observe_windows(plain[:5]) == []
    (ev,) = blind.observe_windows(plain[5:])
    assert "in shadow, 0 of 6 windows: 0 labelled rows (0 frauds): fewer than 5000 (50)" in ev["notes"][-1]["text"]
