"""Shadow scoring (#18): the registry's challenger scores the same accepted rows as the champion, its scores go
to scores.shadow and beside the champion's to the label join, and each window's ``shadow`` section has both
models' figures on the same labelled transactions."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.records import LabelCounts, PairedLabels, decode_stats, encode_partial
from streams.label_route import label_partitions
from streams.records import Msg

N = 8_000
SEED = 33


@pytest.fixture(scope="module")
def challenger_dir(tmp_path_factory):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    d = tmp_path_factory.mktemp("challenger") / "model"
    train_model(generate(30_000, seed=4), load_spec(), TrainConfig(seed=4, n_estimators=15)).save(d)
    return str(d)


def _labels(cols, rows, partitions: int, offset: int) -> list[Msg]:
    ids = [cols["transaction_id"][i] for i in rows]
    parts = label_partitions(ids, partitions).tolist()
    return [Msg("labels", p, offset + k, orjson.dumps({"transaction_id": t, "isFraud": int(cols["isFraud"][i])}),
                t.encode(), timestamp=1.0)
            for k, (t, p, i) in enumerate(zip(ids, parts, rows))]


def _run(stages, msgs, cols, partitions):
    """Score ``msgs`` in batches of 1,000, join every transaction's label, aggregate; returns the windows,
    the label partials and every shadow score object."""
    windows, partials, shadow_scores = [], [], []
    for lo in range(0, len(msgs), 1000):
        out = stages.scoring.process(msgs[lo:lo + 1000])
        assert len(out.shadow_scores) == len(out.scores) and out.shadow_partitions == out.score_partitions
        shadow_scores += [orjson.loads(v) for _, v in out.shadow_scores]
        routed = [Msg("scores.by_id", p, 0, v, k) for p, k, v in stages.route.take()]
        stages.label_join.join(routed + _labels(cols, range(lo, min(lo + 1000, len(msgs))), partitions, lo))
        got = stages.label_join.take_partials()
        partials += got
        values = [v for _, v in out.partials] + [encode_partial(p) for p in got]
        windows += [decode_stats(v) for _, v in stages.aggregator.aggregate(values)]
    return windows, partials, shadow_scores


def test_the_challenger_in_shadow_is_judged_on_the_same_labelled_rows(paysim_model, challenger_dir):
    from models.scorer import Scorer
    from simulator import generate
    from streams.stages import WorkerStages
    from tests.test_streams import PARTITIONS, _messages, _settings

    champion, challenger = Scorer.load(paysim_model), Scorer.load(challenger_dir)
    assert champion.version != challenger.version
    stages = WorkerStages.build(champion, _settings(window_size=2000))
    stages.route.activate()
    stages.model.set_shadow(challenger)
    msgs, cols = _messages(N, seed=SEED), generate(N, seed=SEED)
    windows, partials, shadow_scores = _run(stages, msgs, cols, PARTITIONS)

    # scores.shadow: one score per transaction, the challenger's own, as xgboost gives it on the same rows
    by_id = {s["transaction_id"]: s for s in shadow_scores}
    assert len(by_id) == N and {s["model_version"] for s in shadow_scores} == {challenger.version}
    direct = challenger.score_columns({k: np.asarray(v) for k, v in cols.items()})
    want = dict(zip(cols["transaction_id"].tolist(), np.asarray(direct.probability).tolist()))
    assert max(abs(by_id[t]["fraud_probability"] - p) for t, p in want.items()) < 1e-6
    assert stages.metrics.shadow_scored._value.get() == N

    # the paired counts: both models on every labelled transaction, exactly their confusion at their thresholds
    y = np.asarray(cols["isFraud"], dtype=np.int64)
    pooled = {"champion": LabelCounts(), "challenger": LabelCounts()}
    for p in partials:
        if isinstance(p, PairedLabels):
            assert (p.champion_version, p.challenger_version) == (champion.version, challenger.version)
            pooled["champion"].merge(p.champion)
            pooled["challenger"].merge(p.challenger)
    for role, scorer in (("champion", champion), ("challenger", challenger)):
        c = pooled[role]
        flagged = np.asarray(scorer.score_columns({k: np.asarray(v) for k, v in cols.items()}).label, dtype=np.int64)
        assert (c.n, c.tp, c.fp, c.fn, c.tn) == (N, int(((flagged == 1) & (y == 1)).sum()),
                                                  int(((flagged == 1) & (y == 0)).sum()),
                                                  int(((flagged == 0) & (y == 1)).sum()),
                                                  int(((flagged == 0) & (y == 0)).sum()))

    # each window's shadow section: the same rows for both, figures of its counts
    shadowed = [w for w in windows if w.shadow is not None]
    assert shadowed, [w.window.index for w in windows]
    for w in shadowed:
        s = w.shadow
        assert (s.champion_version, s.challenger_version) == (champion.version, challenger.version)
        assert s.labelled == s.champion_counts.n == s.challenger_counts.n == s.champion.labelled
        assert s.positives == s.champion_counts.tp + s.champion_counts.fn == s.challenger_counts.tp + s.challenger_counts.fn
        c = s.challenger_counts
        if c.tp + c.fn:
            assert s.challenger.recall == pytest.approx(c.tp / (c.tp + c.fn))
        # the shadow's labels are not the window's own a second time
        assert w.concept.labelled + 0 == w.concept.tp + w.concept.fp + w.concept.fn + w.concept.tn
        assert w.window.labels_of_other_models == s.labelled
    assert sum(w.shadow.labelled for w in shadowed) <= N


def test_without_a_challenger_nothing_is_scored_in_shadow(paysim_model):
    from models.scorer import Scorer
    from streams.stages import WorkerStages
    from streams.label_route import decode_routed
    from tests.test_streams import _messages, _settings

    stages = WorkerStages.build(Scorer.load(paysim_model), _settings())
    stages.route.activate()
    out = stages.scoring.process(_messages(1000, seed=5))
    assert out.scores and not out.shadow_scores
    assert all(decode_routed(v).shadow_version == "" for _, _, v in stages.route.take())


def test_a_challenger_that_cannot_score_is_dropped_and_the_champion_scores_on(paysim_model):
    from models.scorer import Scorer
    from streams.stages import WorkerStages
    from tests.test_streams import _messages, _settings

    class Broken:
        version, threshold = "broken", 0.5

        def score_columns(self, columns):
            raise ValueError("feature missing")

    stages = WorkerStages.build(Scorer.load(paysim_model), _settings())
    stages.model.set_shadow(Broken())
    out = stages.scoring.process(_messages(1000, seed=6))
    assert len(out.scores) == 1000 and not out.shadow_scores and stages.model.shadow is None


def test_the_watcher_follows_the_registrys_challenger(paysim_model, challenger_dir, tmp_path):
    import shutil

    from models.registry import Registry
    from models.scorer import Scorer
    from streams.reload import ModelWatcher

    models = tmp_path / "models"
    shutil.copytree(paysim_model, models)
    champion = Scorer.load(models)
    watcher = ModelWatcher(models, champion.version)
    assert watcher.poll_challenger() == (False, None)          # a plain artifact: no challenger
    state = Registry(models).add(challenger_dir, by="test", challenger=True)
    changed, scorer = watcher.poll_challenger()
    assert changed and scorer.version == state.challenger != champion.version
    assert watcher.poll_challenger() == (False, None)          # the same one: nothing to do
    Registry(models).promote(state.challenger, by="test")
    assert watcher.poll_challenger() == (True, None)           # promoted: no challenger any more
