"""Performance on joined labels (#16): binned AUPRC against the exact figure, label counts that merge, the
figures of a window / the last labels / the last seconds, and the aggregator's concept section end to end
(in process, the worker's own stages)."""
from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.binning import (N_BINS, average_precision_bin_error, bin_of, binned_average_precision, dense,
                               sparse)
from detectors.health import ModelHealth, figures, merged_labels, reference_figures
from detectors.records import LabelCounts, decode_stats, encode_stats
from models.evaluation import average_precision


def _noisy(n, seed, rate=0.02):
    """Labels and scores of a model that ranks well but not perfectly (continuous scores, few ties)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    z = np.where(y == 1, rng.normal(2.0, 1.5, n), rng.normal(-4.0, 1.5, n))
    return y, 1 / (1 + np.exp(-z))


def _hist(y, p):
    b = bin_of(p)
    return np.bincount(b[y == 1], minlength=N_BINS), np.bincount(b[y == 0], minlength=N_BINS)


@pytest.mark.parametrize("seed, n", [(0, 2_000), (1, 20_000), (2, 200_000)])
def test_binned_auprc_is_within_its_bound_of_the_exact_average_precision(seed, n):
    y, p = _noisy(n, seed)
    pos, neg = _hist(y, p)
    exact = average_precision(y, p)                 # scikit-learn's definition (models.evaluation)
    binned, bound = binned_average_precision(pos, neg), average_precision_bin_error(pos, neg)
    assert abs(binned - exact) <= bound + 1e-12
    assert bound < 0.03                             # documented: the grid's 0.125 log-odds bins
    assert abs(binned - exact) < 0.01, (binned, exact, bound)    # measured: 0.0058, 40 frauds


def test_binned_auprc_equals_the_exact_one_when_scores_are_the_bins():
    rng = np.random.default_rng(3)
    centers = 1 / (1 + np.exp(-(-16 + 0.125 * (np.arange(N_BINS) + 0.5))))
    p = centers[rng.integers(60, 200, 5000)]        # ties only inside a bin: binning changes nothing
    y = (rng.random(5000) < p).astype(int)
    pos, neg = _hist(y, p)
    assert binned_average_precision(pos, neg) == pytest.approx(average_precision(y, p), abs=1e-12)
    assert binned_average_precision(np.zeros(N_BINS), neg) is None


def test_label_counts_add_and_merge_give_the_same_counts_in_any_order():
    y, p = _noisy(3000, 4, rate=0.1)
    one, parts = LabelCounts(), [LabelCounts() for _ in range(3)]
    for i, (yy, pp) in enumerate(zip(y.tolist(), p.tolist())):
        one.add(yy, pp, int(pp >= 0.5))
        parts[i % 3].add(yy, pp, int(pp >= 0.5))
    merged = merged_labels(reversed(parts))
    assert (merged.n, merged.tp, merged.fp, merged.fn, merged.tn) == (one.n, one.tp, one.fp, one.fn, one.tn)
    assert merged.positive_bins == one.positive_bins and merged.negative_bins == one.negative_bins
    assert merged.log_loss == pytest.approx(one.log_loss) and merged.probability == pytest.approx(p.sum())
    pos, neg = _hist(y, p)
    assert dense(one.positive_bins).tolist() == pos.tolist() and sparse(neg) == one.negative_bins
    # a partial of an older worker (no bins) still merges; the figures that need bins are then None
    old = LabelCounts(n=10, tp=1, fn=1, tn=8, brier=0.5, abs_error=1.0)
    f = figures(merged_labels([one, old]))
    assert f["labelled"] == 3010 and f["auprc"] is None and f["log_loss"] is None and f["precision"] is not None


def test_figures_are_the_numpy_figures_of_the_same_labels():
    y, p = _noisy(50_000, 5, rate=0.01)
    c = LabelCounts()
    for yy, pp in zip(y.tolist(), p.tolist()):
        c.add(yy, pp, int(pp >= 0.5))
    ref = {"rows": 9000, "positives": 90, "flagged": 80, "precision": 0.9, "recall": 0.9, "f1": 0.9, "auprc": 0.95,
           "brier": 0.004, "fraud_rate": 0.01, "predicted_fraud_rate": 0.011}
    f = figures(c, reference=ref)
    flagged = p >= 0.5
    assert f["precision"] == pytest.approx(y[flagged].mean()) and f["recall"] == pytest.approx(flagged[y == 1].mean())
    assert f["f1"] == pytest.approx(2 * f["precision"] * f["recall"] / (f["precision"] + f["recall"]))
    assert f["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert f["observed_fraud_rate"] == pytest.approx(y.mean()) and f["predicted_fraud_rate"] == pytest.approx(p.mean())
    assert abs(f["auprc"] - average_precision(y, p)) <= f["auprc_bin_error"]
    assert f["drop"]["recall"] == pytest.approx((0.9 - f["recall"]) / 0.9)
    assert f["calibrated_fraud_rate"] is None           # no calibrator given
    r = reference_figures(ref)
    assert r["labelled"] == 9000 and r["observed_fraud_rate"] == 0.01 and r["drop"] is None and r["log_loss"] is None
    assert reference_figures(None) is None
    few = figures(c, reference=ref, min_positives=10_000)
    assert few["drop"] == {"precision": None, "recall": None, "f1": None, "auprc": None}


def _window_counts(rng, n, miss=0.1):
    c = LabelCounts()
    for yy in (rng.random(n) < 0.05).astype(int).tolist():
        p = rng.uniform(0.01, 0.3) if yy and rng.random() < miss else rng.uniform(0.6, 1) if yy else rng.uniform(0, 0.3)
        c.add(yy, p, int(p >= 0.5))
    return c


def test_rolling_horizons_are_the_last_labels_and_the_last_seconds():
    rng = np.random.default_rng(6)
    health = ModelHealth(last_labels=2500, last_seconds=25.0, min_labels=10, min_positives=1)
    for i in range(6):
        out = health.window("m1", i, [_window_counts(rng, 600), _window_counts(rng, 400)], [], None, None, 0.5,
                            now=10.0 * i)
    perf = out["performance"]
    assert perf["window"]["labelled"] == 1000 and perf["window"]["windows"] == 1
    assert perf["last_labels"]["windows"] == 3 and perf["last_labels"]["labelled"] == 3000   # fewest >= 2,500
    assert perf["last_seconds"]["windows"] == 3                                            # closed at 30, 40, 50
    assert perf["reference"] is None and perf["last_labels_target"] == 2500
    other = health.window("m2", 6, [_window_counts(rng, 100)], [], None, None, 0.5, now=60.0)
    assert other["performance"]["last_labels"]["windows"] == 1 and other["detectors"]["labels"] == 100


# -- the aggregator, with the worker's own stages (in process) ----------------------------------------------
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    d = tmp_path_factory.mktemp("small-model")
    train_model(generate(60_000, seed=31), load_spec(), TrainConfig(seed=31, n_estimators=40)).save(d)
    return d


def test_the_aggregator_publishes_performance_detectors_and_the_estimate(small_model):
    from detectors.records import LabelPartial, encode_partial
    from models.scorer import Scorer
    from tests.test_streams import _messages, _settings
    from streams.stages import WorkerStages

    stages = WorkerStages.build(Scorer.load(small_model), _settings(window_size=4000))
    msgs = _messages(12_000, seed=32)
    fraud = {orjson.loads(m.value)["transaction_id"]: 0 for m in msgs}
    stats = []
    for lo in range(0, len(msgs), 1000):
        out = stages.scoring.process(msgs[lo:lo + 1000])
        counts = LabelCounts()
        for _, v in out.scores:
            s = orjson.loads(v)
            counts.add(fraud[s["transaction_id"]], s["fraud_probability"], s["fraud_label"])
        labels = encode_partial(LabelPartial("labels", 0, counts, 0.0))
        stats += [decode_stats(v) for _, v in stages.aggregator.aggregate([v for _, v in out.partials] + [labels])]
    assert len(stats) >= 2
    c = stats[-1].concept
    assert c.performance is not None and c.performance.window.labelled > 0
    assert c.performance.reference is not None and c.performance.reference.labelled > 0
    assert c.detectors is not None and not c.detectors.drift_detected and c.detectors.labels > 0
    e = c.estimate
    assert e is not None and e.method == "cbpe" and e.events == stats[-1].window.scored
    assert e.window_check.labelled == c.labelled and e.window_check.realised.fraud_rate == 0.0
    # the published JSON is the struct's, and round-trips
    assert decode_stats(encode_stats(stats[-1])) == stats[-1]


def test_a_window_counts_the_labels_of_its_own_model_only(small_model):
    """After a model switch the old model's scores are still being labelled for a while: those labels must
    not count against the new model's windows (they are counted in labels_of_other_models)."""
    from detectors.records import LabelPartial, encode_partial
    from models.scorer import Scorer
    from tests.test_streams import _messages, _settings
    from streams.stages import WorkerStages

    scorer = Scorer.load(small_model)
    stages = WorkerStages.build(scorer, _settings(window_size=4000))
    msgs = _messages(8_000, seed=33)
    stats = []
    own = LabelCounts()
    own.add(1, 0.9, 1)
    old = LabelCounts()
    for _ in range(5):
        old.add(1, 0.1, 0)                   # the old model missed these five frauds
    for lo in range(0, len(msgs), 1000):
        out = stages.scoring.process(msgs[lo:lo + 1000])
        labels = [encode_partial(LabelPartial("labels", 0, own, 0.0, model_version=scorer.version)),
                  encode_partial(LabelPartial("labels", 1, old, 0.0, model_version="old-champion")),
                  encode_partial(LabelPartial("labels", 2, own, 0.0))]          # "": an older record, counted
        stats += [decode_stats(v) for _, v in stages.aggregator.aggregate([v for _, v in out.partials] + labels)]
    assert len(stats) >= 1
    for s in stats:
        assert s.model_version == scorer.version
        assert s.window.labels_of_other_models == 5 * s.concept.labelled // 2
        assert s.concept.tp == s.concept.labelled and s.concept.recall == 1.0
