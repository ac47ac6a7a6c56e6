"""detectors: river concept-drift wrappers, rolling performance, the drift.stats concept section, offline report (CLI)."""
import numpy as np
import orjson
import pytest

from detectors.adwin import AdwinDrift
from detectors.concept import ConceptMonitor
from detectors.kswin import KswinDrift
from detectors.page_hinkley import PageHinkleyDrift
from detectors.performance import RollingPerformance, average_precision


def _two_regimes(seed=42):
    rng = np.random.default_rng(seed)
    return np.r_[rng.beta(1, 30, 1000), rng.beta(1, 10, 1000)]


@pytest.mark.parametrize("cls, index", [(AdwinDrift, 1183), (PageHinkleyDrift, 1121)])
def test_score_stream_detection_index(cls, index):
    det = cls(mode="up") if cls is PageHinkleyDrift else cls()
    det.update_many(_two_regimes())
    assert det.detections[0] == index and det.n_seen == 2000


@pytest.mark.parametrize("cls", [AdwinDrift, PageHinkleyDrift])
def test_calm_score_stream_rarely_alarms(cls):
    det = cls()
    det.update_many(np.random.default_rng(1).beta(1, 30, 50_000).tolist())
    assert len(det.detections) <= 2


@pytest.mark.parametrize("cls, kwargs", [(AdwinDrift, {"delta": 2}), (PageHinkleyDrift, {"mode": "sideways"}),
                                          (PageHinkleyDrift, {"threshold": 0}), (KswinDrift, {"stat_size": 500}),
                                          (RollingPerformance, {"window": 0}), (ConceptMonitor, {"kswin_sample": -1})])
def test_constructor_arguments_are_validated(cls, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**kwargs)


def _direct_ap(y, p):
    """Average precision by brute force over every distinct threshold."""
    ap, prev_r = 0.0, 0.0
    for t in np.unique(p)[::-1]:
        pred = p >= t
        prec = y[pred].sum() / pred.sum()
        rec = y[pred].sum() / y.sum()
        ap += (rec - prev_r) * prec
        prev_r = rec
    return ap


def test_rolling_performance_is_exact_over_the_last_n():
    rng = np.random.default_rng(0)
    y = (rng.random(5000) < 0.1).astype(int)
    p = np.round(np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1), 2)     # ties on purpose
    perf = RollingPerformance(window=1000, threshold=0.5)
    for lo in range(0, 5000, 333):
        perf.update_many(y[lo:lo + 333], p[lo:lo + 333])
    yw, pw = y[-1000:], p[-1000:]
    assert perf.n == 1000 and perf.positives == yw.sum()
    assert perf.precision == pytest.approx(yw[pw >= 0.5].mean(), abs=1e-12)
    assert perf.recall == pytest.approx((pw[yw == 1] >= 0.5).mean(), abs=1e-12)
    assert perf.auprc == pytest.approx(_direct_ap(yw, pw), abs=1e-12)
    assert RollingPerformance().auprc is None and average_precision(np.zeros(3), np.ones(3)) is None


def test_concept_monitor_flags_error_drift_after_labels():
    rng = np.random.default_rng(5)
    mon = ConceptMonitor(kswin_sample=0)
    y = (rng.random(8000) < 0.05).astype(int)
    good = np.where(y == 1, rng.uniform(0.6, 1, 8000), rng.uniform(0, 0.1, 8000))
    mon.update_labels(y[:4000], good[:4000])
    calm = mon.summary()
    assert not calm["adwin"]["drift_detected"] and not calm["page_hinkley"]["drift_detected"]
    bad = np.where(y == 1, rng.uniform(0, 0.4, 8000), rng.uniform(0, 0.1, 8000))   # the model misses fraud
    mon.update_labels(y[4000:], bad[4000:])
    s = mon.summary()
    assert s["adwin"]["drift_detected"] and s["drift_detected"] and s["labels"] == 8000
    assert s["adwin"]["last_detection"] >= 4000 and s["kswin"]["n"] == 8000
    assert not mon.summary()["drift_detected"]                   # detections are reported once
    orjson.dumps(s)


# -- offline report -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    training = pytest.importorskip("models.training")
    sim = pytest.importorskip("simulator.generator")
    from models.spec import load_spec

    cols = sim.generate(30_000, seed=3)
    cfg = training.TrainConfig(n_estimators=30, early_stopping_rounds=5)
    model = training.train_model(cols, load_spec(), cfg)
    d = tmp_path_factory.mktemp("model")
    model.save(d)
    return d


def test_report_cli_on_a_file(model_dir, tmp_path):
    from breeboost.cli import main
    from models.io import write_table
    sim = pytest.importorskip("simulator.generator")

    calm = sim.generate(10_000, seed=4)
    shifted = sim.generate(10_000, seed=5, start_index=10_000)
    shifted["amount"] = shifted["amount"] * 2
    cols = {k: np.concatenate([calm[k], shifted[k]]) for k in calm}
    cols["amount"][:7] = -1.0                                   # rejected by validation: dead-lettered
    data = tmp_path / "tx.csv"
    write_table(cols, data)
    out_json, out_html = tmp_path / "stats.json", tmp_path / "report.html"
    rc = main(["report", "--model", str(model_dir), "--data", str(data), "--window", "5000",
               "--json", str(out_json), "--out", str(out_html)])
    assert rc == 0
    doc = orjson.loads(out_json.read_bytes())
    w = doc["windows"]
    assert len(w) == 4 and doc["summary"]["windows"] == 4
    assert w[0]["window"]["events"] == 5000 and w[0]["window"]["dead_lettered"] == 7
    assert w[0]["dlq_by_reason"] == {"negative_amount": 7}
    assert not w[0]["features"]["amount"]["drifted"] and not w[1]["features"]["amount"]["drifted"]
    assert w[2]["features"]["amount"]["drifted"] and w[2]["features"]["amount"]["psi"] >= 0.25
    assert doc["summary"]["first_drift"]["amount"] == 2
    # the attribution of the stream's sample, per window, in the report from a file too
    assert all(x.get("attribution") for x in w), [sorted(x) for x in w]
    page = out_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


# -- the drift.stats concept section ------------------------------------------------------------------
def _counts(n, tp, fp, fn):
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn, "brier": 0.01 * n, "abs_error": 0.02 * n}


REFERENCE = {"rows": 1000, "positives": 50, "auprc": 0.9, "roc_auc": 0.99, "precision": 0.9, "recall": 0.8, "f1": 0.85}


def test_concept_section_sums_partitions_and_compares_with_the_reference():
    from detectors.concept import concept_section
    from detectors.records import LabelCounts

    c = concept_section([_counts(500, 20, 5, 20), LabelCounts(**_counts(500, 20, 5, 20))], REFERENCE)
    assert (c["labelled"], c["tp"], c["fp"], c["fn"], c["tn"]) == (1000, 40, 10, 40, 910)
    assert c["precision"] == 0.8 and c["recall"] == 0.5 and c["error_rate"] == 0.05 and c["brier"] == 0.01
    assert c["reference"] == {"precision": 0.9, "recall": 0.8, "f1": 0.85, "auprc": 0.9}
    assert c["performance_drop"]["recall"] == pytest.approx(0.375)


def test_concept_section_undefined_and_gated_values():
    from detectors.concept import concept_section

    empty = concept_section([], None)
    assert empty == {"labelled": 0, "precision": None, "recall": None, "brier": None, "error_rate": None,
                     "tp": 0, "fp": 0, "fn": 0, "tn": 0, "performance_drop": {"precision": None, "recall": None}}
    few = concept_section([_counts(99, 20, 5, 20)], REFERENCE)              # below min_labels = 100
    assert few["recall"] == 0.5 and few["performance_drop"] == {"precision": None, "recall": None}
    rare = concept_section([_counts(5000, 5, 1, 10)], REFERENCE)           # 15 frauds, 6 flagged: < min_positives
    assert rare["performance_drop"] == {"precision": None, "recall": None}
    loose = concept_section([_counts(5000, 5, 1, 10)], REFERENCE, min_labels=1, min_positives=1)
    assert loose["performance_drop"]["recall"] == pytest.approx((0.8 - 5 / 15) / 0.8)
    odd = concept_section([_counts(1000, 40, 10, 40)], {"precision": "high", "recall": None, "f1": float("nan")})
    assert "reference" not in odd and odd["performance_drop"] == {"precision": None, "recall": None}
    partial = concept_section([_counts(1000, 40, 10, 40)], {"recall": 0.8})
    assert partial["reference"] == {"precision": None, "recall": 0.8, "f1": None, "auprc": None}
