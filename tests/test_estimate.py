"""The calibrator (models.calibrator) and the label-free estimate (detectors.estimate, #16): the estimate
of precision, recall and fraud rate from calibrated probabilities against the realised figures."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.concept_records import ScoreBins
from detectors.estimate import calibration_values, estimate_rates, estimate_section, labelled_estimate
from detectors.records import LabelCounts
from models.calibrator import Calibrator, pool_adjacent_violators
from models.errors import ModelError


def _traffic(n, seed, rate=0.01):
    """A model that ranks well but over-predicts (as scale_pos_weight does): score = true rate ** 0.4."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-6.5, 2.2, n)
    true = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < true).astype(int)
    return y, true ** 0.4


def test_pool_adjacent_violators_is_the_weighted_isotonic_fit():
    v, w = np.array([3.0, 1.0, 2.0, 0.0, 5.0]), np.array([1.0, 2.0, 1.0, 1.0, 1.0])
    fit = pool_adjacent_violators(v, w)
    assert np.all(np.diff(fit) >= 0) and fit.tolist() == pytest.approx([1.4] * 4 + [5.0])
    assert np.average(fit, weights=w) == pytest.approx(np.average(v, weights=w))


def test_the_calibrator_is_monotone_round_trips_and_refuses_what_it_cannot_read():
    y, p = _traffic(100_000, 1)
    cal = Calibrator.fit(y, p)
    assert np.all(np.diff(cal.values) >= 0) and cal.rows == 100_000 and cal.positives == y.sum()
    assert np.mean(cal.apply(p)) == pytest.approx(y.mean(), rel=1e-9)      # isotonic keeps the mean
    assert np.mean((cal.apply(p) - y) ** 2) < np.mean((p - y) ** 2)       # and lowers the Brier score
    again = Calibrator.from_dict(cal.to_dict(extra=1))
    assert again.values.tolist() == cal.values.tolist()
    assert calibration_values({"calibration": cal.to_dict()}).tolist() == cal.values.tolist()
    assert calibration_values({}) is None and calibration_values({"calibration": {"grid": "other"}}) is None
    with pytest.raises(ModelError, match="unsupported calibrator"):
        Calibrator.from_dict({"method": "platt"})
    with pytest.raises(ValueError, match="values must be"):
        Calibrator([0.5] * 3)
    with pytest.raises(ValueError, match="same non-zero length"):
        Calibrator.fit([], [])


#: The documented error of the estimate on calm traffic (docs/detectors.md): pooled over 200,000 events,
#: with a calibrator fitted on 100,000 validation events.
POOLED = {"precision": 0.03, "recall": 0.03, "fraud_rate": 0.0005}


def test_the_estimate_is_within_its_documented_error_of_the_realised_figures():
    y, p = _traffic(100_000, 2)
    values = Calibrator.fit(y, p).values
    y, p = _traffic(200_000, 3)
    threshold = 0.3
    flagged = p >= threshold
    est = estimate_rates(ScoreBins.of(p, threshold), values)
    realised = {"precision": y[flagged].mean(), "recall": flagged[y == 1].mean(), "fraud_rate": y.mean()}
    assert est["events"] == 200_000 and est["flagged"] == flagged.sum()
    for k, bound in POOLED.items():
        assert abs(est[k] - realised[k]) < bound, (k, est[k], realised[k])
    # per window of 10,000: the windows' errors centre on zero (their spread is the labels' own noise)
    errors = []
    for lo in range(0, 200_000, 10_000):
        yy, pp = y[lo:lo + 10_000], p[lo:lo + 10_000]
        e = estimate_rates(ScoreBins.of(pp, threshold), values)
        errors.append(e["recall"] - (pp[yy == 1] >= threshold).mean())
    assert abs(np.mean(errors)) < 0.03 and est["auprc"] is not None


def test_the_estimate_on_labelled_events_sits_next_to_the_realised_figures():
    y, p = _traffic(100_000, 4)
    values = Calibrator.fit(y, p).values
    y, p = _traffic(50_000, 5)
    c = LabelCounts()
    for yy, pp in zip(y.tolist(), p.tolist()):
        c.add(yy, pp, int(pp >= 0.3))
    check = labelled_estimate(c, values, 0.3)
    direct = estimate_rates(ScoreBins.of(p, 0.3), values)       # the same events, their scores binned
    for k in ("precision", "recall", "fraud_rate"):
        assert check["estimated"][k] == pytest.approx(direct[k], abs=1e-12)    # flagged split from tp + fp
        assert check["error"][k] == pytest.approx(check["estimated"][k] - check["realised"][k])
    old = labelled_estimate(LabelCounts(n=5, tp=1, fn=1, tn=3), values, 0.3)   # an older partial: no bins
    assert old["estimated"] == {"precision": None, "recall": None, "fraud_rate": None}
    assert old["realised"]["recall"] == 0.5
    assert estimate_section(None, c, c, values, 0.3) is None and estimate_section(ScoreBins(), c, c, None, 0.3) is None


@pytest.fixture(scope="module")
def paysim_small(tmp_path_factory):
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    d = tmp_path_factory.mktemp("paysim-small")
    model = train_model(generate(80_000, seed=41), load_spec(), TrainConfig(seed=41, n_estimators=40))
    model.save(d)
    return d


def test_the_estimate_on_calm_simulated_traffic(paysim_small):
    """The trained PaySim model, its stored calibrator, 200,000 calm simulated events: pooled estimate
    against the realised figures (the simulator's fraud is easy for the model: errors are small)."""
    from models.scorer import Scorer
    from simulator import generate

    scorer = Scorer.load(paysim_small)
    values = calibration_values(scorer.profile)
    assert values is not None and scorer.profile["calibration"]["fitted_on"] == "validation slice"
    assert scorer.metadata["metrics"]["test"]["calibrated_brier"] <= scorer.metadata["metrics"]["test"]["brier"]
    cols = generate(200_000, seed=42, start_index=1_000_000)
    scored = scorer.score_columns(cols)
    p, y = scored.probability.astype(np.float64), np.asarray(cols["isFraud"])
    est = estimate_rates(ScoreBins.of(p, scorer.threshold), values)
    flagged = p >= scorer.threshold
    realised = {"precision": y[flagged].mean(), "recall": flagged[y == 1].mean(), "fraud_rate": y.mean()}
    print({k: round(est[k] - realised[k], 5) for k in POOLED})
    for k, bound in POOLED.items():
        assert abs(est[k] - realised[k]) < bound, (k, est[k], realised[k])


def test_an_artifact_without_a_calibrator_still_serves_and_gives_no_estimate(paysim_small, tmp_path):
    import shutil

    import orjson

    from models.artifact import PROFILE_FILE, METADATA_FILE, _sha256
    from models.scorer import Scorer

    old = tmp_path / "old"
    shutil.copytree(paysim_small, old)
    profile = orjson.loads((old / PROFILE_FILE).read_bytes())
    del profile["calibration"]                      # as a model trained before #16
    data = orjson.dumps(profile)
    (old / PROFILE_FILE).write_bytes(data)
    meta = orjson.loads((old / METADATA_FILE).read_bytes())
    meta["files"][PROFILE_FILE] = _sha256(data)
    (old / METADATA_FILE).write_bytes(orjson.dumps(meta))
    scorer = Scorer.load(old)
    assert calibration_values(scorer.profile) is None
    assert estimate_section(ScoreBins.of([0.1], 0.5), LabelCounts(), LabelCounts(), None, 0.5) is None
