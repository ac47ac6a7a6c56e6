"""detectors: PSI vs numpy, KS vs scipy (exact), exact merge, serialisation, edge cases (hypothesis)."""
import math
import time

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy.stats import ks_2samp

from detectors.errors import SketchError
from detectors.ks import ReferenceCells, ks_critical, ks_pvalue
from detectors.profile import build_profile
from detectors.psi import EPSILON, psi
from detectors.records import encode_stats
from detectors.stats import window_statistics
from detectors.window import WindowSketch, merge

RNG = np.random.default_rng(7)
N_REF = 20_000
REF = {
    "amount": RNG.lognormal(8, 1.5, N_REF),
    "flag": (RNG.random(N_REF) < 0.2).astype(float),
    "const": np.full(N_REF, 3.0),
    "steps": RNG.integers(0, 24, N_REF).astype(float),
}
REF_CAT = {"type": RNG.choice(["CASH_IN", "CASH_OUT", "PAYMENT", "TRANSFER"], N_REF, p=[.2, .35, .35, .1])}
PROFILE = build_profile(REF, REF_CAT, RNG.beta(1, 30, N_REF), threshold=0.5)


def _batch(n, rng, scale=1.0):
    num = {"amount": rng.lognormal(8, 1.5, n) * scale, "flag": (rng.random(n) < 0.2).astype(float),
           "const": np.full(n, 3.0), "steps": rng.integers(0, 24, n).astype(float)}
    cat = {"type": rng.choice(["CASH_IN", "CASH_OUT", "PAYMENT", "TRANSFER", "DEBIT"], n, p=[.2, .3, .35, .1, .05])}
    return num, cat, rng.beta(1, 30, n), rng.exponential(2.0, n)


def _direct_psi(values, edges, ref_props):
    """PSI computed independently: np.digitize (right-closed bins) and the formula, epsilon on both sides."""
    idx = np.digitize(values, edges, right=True)
    counts = np.array([(idx == i).sum() for i in range(len(edges) + 1)], dtype=float)
    c = np.clip(counts / counts.sum(), EPSILON, None)
    r = np.clip(np.asarray(ref_props), EPSILON, None)
    return float(np.sum((c - r) * np.log(c / r)))


# -- PSI ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 1.3, 2.0, 10.0])
def test_psi_matches_direct_numpy(scale):
    rng = np.random.default_rng(int(scale * 10))
    num, cat, scores, lags = _batch(10_000, rng, scale)
    sk = WindowSketch(PROFILE)
    sk.update_batch(num, cat, scores, lags)
    st_ = window_statistics(sk, PROFILE)
    for name in REF:
        e = PROFILE["numeric"][name]
        assert st_["features"][name]["psi"] == pytest.approx(_direct_psi(num[name], e["edges"], e["proportions"]),
                                                              abs=1e-9)
    e = PROFILE["score"]
    assert st_["score"]["psi"] == pytest.approx(_direct_psi(scores, e["edges"], e["proportions"]), abs=1e-9)
    # categorical: reference categories then "other"
    ref = PROFILE["categorical"]["type"]
    counts = [np.sum(cat["type"] == c) for c in ref["categories"]] + [np.sum(~np.isin(cat["type"], ref["categories"]))]
    c = np.clip(np.array(counts) / 10_000, EPSILON, None)
    r = np.clip(np.array(ref["proportions"]), EPSILON, None)
    assert st_["features"]["type"]["psi"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))), abs=1e-9)


def test_psi_basic_properties():
    assert psi([10, 10], [0.5, 0.5]) == 0.0
    assert psi([0, 0], [0.5, 0.5]) == 0.0
    assert psi([5, 5], [1.0, 0.0]) > 0
    with pytest.raises(ValueError, match="differ in length"):
        psi([1, 2, 3], [0.5, 0.5])


# -- KS -------------------------------------------------------------------------------------------------
KS_CASES = {
    "continuous": (RNG.normal(0, 1, 3000), RNG.normal(0.1, 1, 2000)),
    "ties": (RNG.integers(0, 5, 3000).astype(float), RNG.integers(0, 6, 2000).astype(float)),
    "constant_ref": (np.full(500, 2.0), RNG.integers(0, 4, 700).astype(float)),
    "constant_both": (np.full(500, 2.0), np.full(10, 2.0)),
    "out_of_range": (RNG.uniform(0, 1, 1000), RNG.uniform(-5, 10, 1000)),
    "single": (np.array([1.0]), np.array([0.5])),
    "window_larger": (RNG.normal(0, 1, 200), RNG.normal(0, 1.5, 12_000)),
}


@pytest.mark.parametrize("case", sorted(KS_CASES))
def test_ks_d_equals_scipy_exactly(case):
    ref, win = KS_CASES[case]
    cells = ReferenceCells(ref)
    counts = np.zeros(cells.n_cells, dtype=np.int64)
    for chunk in np.array_split(win, 7):   # counted in batches, as a stream would
        counts += cells.count(chunk)
    d = cells.statistic(counts)
    assert d == ks_2samp(win, ref).statistic     # bit-for-bit, scipy's default method
    expected = ks_2samp(win, ref, method="asymp")
    assert d == pytest.approx(expected.statistic, rel=1e-15, abs=1e-15)
    want = float(expected.pvalue) if math.isfinite(expected.pvalue) else 1.0   # scipy: NaN when round(en) < 1
    assert ks_pvalue(d, win.size, ref.size) == pytest.approx(want, rel=1e-12, abs=1e-300)


def test_ks_pvalue_and_critical_agree():
    for n, m in [(10_000, 2000), (500, 2000), (50, 30)]:
        for alpha in (1e-3, 1e-5):
            d = ks_critical(n, m, alpha)
            assert ks_pvalue(d, n, m) == pytest.approx(alpha, rel=1e-3)   # kstwo.isf is not exact
    assert ks_pvalue(0.3, 0, 10) == 1.0 and ks_critical(0, 10, 0.01) == 1.0


def test_sketch_ks_matches_scipy_against_profile_sample():
    rng = np.random.default_rng(3)
    num, cat, scores, lags = _batch(5000, rng, 1.5)
    sk = WindowSketch(PROFILE)
    sk.update_batch(num, cat, scores, lags)
    st_ = window_statistics(sk, PROFILE)
    for name in REF:
        ref = np.array(PROFILE["numeric"][name]["ks_sample"])
        assert st_["features"][name]["ks_d"] == ks_2samp(num[name], ref).statistic
        r = ks_2samp(num[name], ref, method="asymp")
        assert st_["features"][name]["ks_pvalue"] == pytest.approx(float(r.pvalue), rel=1e-9, abs=1e-300)


# -- merge and serialisation ------------------------------------------------------------------------------
def _filled(parts=5, n=3000, seed=11):
    rng = np.random.default_rng(seed)
    batches = []
    for p in range(parts):
        num, cat, scores, lags = _batch(n, rng, 1.1)
        num["amount"][:5] = np.nan
        num["steps"][5:7] = np.inf
        batches.append((num, cat, scores, lags, 1000.0 + p * 7 + rng.random(n) * 100, rng.random(n) < 0.05))
    sketches = []
    for p, (num, cat, scores, lags, times, bal) in enumerate(batches):
        s = WindowSketch(PROFILE)
        for lo in range(0, n, 700):
            sl = slice(lo, lo + 700)
            s.update_batch({k: v[sl] for k, v in num.items()}, {k: v[sl] for k, v in cat.items()}, scores[sl],
                           lags[sl], event_times=times[sl], balance_mismatch=bal[sl], partition=p)
        s.add_rejects({"missing_field": p, "invalid_json": 1}, {"amount": p})
        sketches.append(s)
    whole = WindowSketch(PROFILE)
    for p, (num, cat, scores, lags, times, bal) in enumerate(batches):
        whole.update_batch(num, cat, scores, lags, event_times=times, balance_mismatch=bal, partition=p)
        whole.add_rejects({"missing_field": p, "invalid_json": 1}, {"amount": p})
    return sketches, whole


def test_merge_of_partials_equals_sketch_of_concatenation():
    sketches, whole = _filled()
    merged = WindowSketch(PROFILE)
    for s in reversed(sketches):        # any order
        merged.merge(s)
    assert merged.to_dict() == whole.to_dict()
    a = window_statistics(merged, PROFILE, closed_at=5.0, index=3)
    b = window_statistics(whole, PROFILE, closed_at=5.0, index=3)
    assert a == b
    assert a["window"]["events"] == 5 * 3000 + 10 + 5 and a["window"]["partitions"] == [0, 1, 2, 3, 4]
    pair = merge(sketches[0], sketches[1])
    assert pair.count == 6000 and sketches[0].count == 3000


def test_serialisation_round_trip_through_orjson():
    sketches, _ = _filled(parts=2)
    for s in sketches:
        raw = orjson.dumps(s.to_dict())
        back = WindowSketch.from_dict(PROFILE, orjson.loads(raw))
        assert back.to_dict() == s.to_dict()
        assert window_statistics(back, PROFILE, closed_at=1.0) == window_statistics(s, PROFILE, closed_at=1.0)
    # sparse: a small window ships far fewer cells than the reference sample holds
    assert len(raw) < 60_000


def test_merge_refuses_other_profiles():
    other = build_profile({"amount": np.arange(100.0)}, {}, np.linspace(0, 1, 100))
    with pytest.raises(SketchError, match="different profiles"):
        WindowSketch(PROFILE).merge(WindowSketch(other))
    with pytest.raises(SketchError, match="another profile"):
        WindowSketch.from_dict(other, WindowSketch(PROFILE).to_dict())
    with pytest.raises(SketchError, match="not a window sketch"):
        WindowSketch.from_dict(PROFILE, {"format": "nope"})


def test_update_batch_validates_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        WindowSketch(PROFILE).update_batch({"amount": np.zeros(3)}, {}, np.zeros(4))


def test_payload_ratios_and_freshness():
    sk = WindowSketch(PROFILE)
    n = 1000
    rng = np.random.default_rng(5)
    num, cat, scores, _ = _batch(n, rng)
    num["amount"][:100] = np.nan
    lags = np.r_[np.full(500, 1.0), np.full(450, 10.0), np.full(50, 100.0)]
    sk.update_batch(num, cat, scores, lags, balance_mismatch=np.arange(n) < 30)
    sk.add_rejects({"missing_field": 20, "wrong_type": 10, "oversized": 10}, {"amount": 20})
    out = window_statistics(sk, PROFILE)
    assert out["window"]["events"] == 1040 and out["window"]["dead_lettered"] == 40
    assert out["missing_ratio"] == pytest.approx(120 / 1040)
    assert out["schema_error_ratio"] == pytest.approx(30 / 1040)
    assert out["dlq_ratio"] == pytest.approx(40 / 1040)
    assert out["features"]["amount"]["missing_ratio"] == pytest.approx(120 / 1040)
    assert out["balance_error_ratio"] == pytest.approx(0.03)
    assert out["freshness"]["lag_p50_s"] == pytest.approx(1.0, rel=0.06)
    assert out["freshness"]["lag_p95_s"] == pytest.approx(10.0, rel=0.06)
    assert out["score"]["mean"] == pytest.approx(scores.mean(), abs=1e-9)
    assert out["score"]["predicted_fraud_rate"] == pytest.approx((scores >= 0.5).mean())
    assert out["features"]["type"]["other_ratio"] == pytest.approx((cat["type"] == "DEBIT").mean())


def _no_bad_numbers(obj, path="$"):
    if isinstance(obj, float):
        assert math.isfinite(obj), path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _no_bad_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_bad_numbers(v, f"{path}[{i}]")


def test_thresholds_hold_no_feature_names():
    sk = WindowSketch(PROFILE)
    out = window_statistics(sk, PROFILE)
    names = set(PROFILE["numeric"]) | set(PROFILE["categorical"])
    assert not names & set(orjson.dumps(out["thresholds"]).decode().replace('"', " ").split())
    assert all(not isinstance(v, (dict, list)) for v in out["thresholds"].values())


# -- edge cases (hypothesis) ------------------------------------------------------------------------------
finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                          st.sampled_from([0.0, 3.0, -1e300, 1e300, np.nan]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(finite_or_not, min_size=0, max_size=60),
       cats=st.lists(st.sampled_from(["CASH_IN", "DEBIT", "", "None", "zzz"]), min_size=0, max_size=60),
       split=st.integers(0, 60))
def test_edge_cases_give_finite_payloads_and_exact_merge(values, cats, split):
    n = min(len(values), len(cats))
    x = np.array(values[:n], dtype=float)
    c = np.array(cats[:n], dtype=str) if n else np.array([], dtype=str)
    scores = np.clip(np.nan_to_num(np.abs(x) / (1 + np.abs(x)), nan=0.5), 0, 1)
    num = {"amount": x, "flag": x, "const": x, "steps": x}
    whole = WindowSketch(PROFILE)
    whole.update_batch(num, {"type": c}, scores, np.abs(x))
    out = window_statistics(whole, PROFILE, closed_at=0.0)
    _no_bad_numbers(out)
    orjson.dumps(out)                           # no NaN/inf sneaks in as floats orjson would reject as null
    assert encode_stats(out) == orjson.dumps(out)   # and it is a DriftStats record (bounds, types, no extras)
    k = min(split, n)
    a, b = WindowSketch(PROFILE), WindowSketch(PROFILE)
    a.update_batch({k_: v[:k] for k_, v in num.items()}, {"type": c[:k]}, scores[:k], np.abs(x[:k]))
    b.update_batch({k_: v[k:] for k_, v in num.items()}, {"type": c[k:]}, scores[k:], np.abs(x[k:]))
    assert a.merge(b).to_dict() == whole.to_dict()
    finite = x[np.isfinite(x)]
    if finite.size:
        ref = np.array(PROFILE["numeric"]["amount"]["ks_sample"])
        assert out["features"]["amount"]["ks_d"] == ks_2samp(finite, ref).statistic


def test_empty_window_and_all_missing_documented_values():
    out = window_statistics(WindowSketch(PROFILE), PROFILE, closed_at=0.0)
    f = out["features"]["amount"]
    assert (f["psi"], f["ks_d"], f["ks_pvalue"], f["missing_ratio"], f["drifted"]) == (0.0, 0.0, 1.0, 0.0, False)
    assert out["missing_ratio"] == 0.0 and out["freshness"]["lag_p50_s"] == 0.0 and out["drifted_features"] == []
    sk = WindowSketch(PROFILE)
    sk.update_batch({}, {}, np.full(500, np.nan))      # every feature absent, every score missing
    out = window_statistics(sk, PROFILE, closed_at=0.0)
    _no_bad_numbers(out)
    assert out["missing_ratio"] == 1.0 and out["features"]["amount"]["missing_ratio"] == 1.0
    assert out["features"]["amount"]["psi"] == 0.0 and not out["drift_detected"]
    encode_stats(out)
    empty_ref = build_profile({"x": np.full(10, np.nan)}, {}, np.array([]))
    sk = WindowSketch(empty_ref)
    sk.update_batch({"x": np.arange(200.0)}, {}, np.linspace(0, 1, 200))
    out = window_statistics(sk, empty_ref, closed_at=0.0)
    _no_bad_numbers(out)
    encode_stats(out)
    assert out["stream"] is None and out["concept"]["labelled"] == 0 and "reference" not in out["concept"]


def test_constant_feature_shift_is_seen():
    sk = WindowSketch(PROFILE)
    num, cat, scores, lags = _batch(1000, np.random.default_rng(2))
    num["const"] = np.full(1000, 2.0)          # below the constant reference value
    sk.update_batch(num, cat, scores, lags)
    f = window_statistics(sk, PROFILE)["features"]["const"]
    assert f["ks_d"] == 1.0 and f["psi"] > 5 and f["drifted"]


# -- cost -------------------------------------------------------------------------------------------------
def test_update_cost_per_value_per_feature():
    rng = np.random.default_rng(9)
    batches = [_batch(1000, rng) for _ in range(20)]
    sk = WindowSketch(PROFILE)
    t0 = time.perf_counter()
    for num, cat, scores, lags in batches:
        sk.update_batch(num, cat, scores, lags)
    per_value = (time.perf_counter() - t0) / (20 * 1000 * (len(REF) + len(REF_CAT) + 1))
    print(f"update_batch: {per_value * 1e9:.0f} ns per value per feature (batches of 1000)")
    assert per_value < 5e-6   # target 1 us; generous bound for loaded CI machines


def test_stream_and_concept_sections():
    sk = WindowSketch(PROFILE)
    num, cat, scores, lags = _batch(1000, np.random.default_rng(3))
    sk.update_batch(num, cat, scores, lags)
    labels = [{"n": 600, "tp": 30, "fp": 10, "fn": 10, "tn": 550, "brier": 12.0, "abs_error": 30.0},
              {"n": 400, "tp": 10, "fp": 0, "fn": 30, "tn": 360, "brier": 8.0, "abs_error": 20.0}]
    out = window_statistics(sk, PROFILE, stream="transactions", labels=labels,
                            reference={"precision": 0.9, "recall": 0.8, "f1": 0.85, "auprc": 0.9})
    assert out["stream"] == "transactions"
    c = out["concept"]
    assert (c["labelled"], c["tp"], c["fp"], c["fn"], c["tn"]) == (1000, 40, 10, 40, 910)
    assert c["precision"] == 0.8 and c["recall"] == 0.5 and c["brier"] == 0.02 and c["error_rate"] == 0.05
    assert c["performance_drop"]["recall"] == pytest.approx((0.8 - 0.5) / 0.8)
    assert c["performance_drop"]["precision"] == pytest.approx((0.9 - 0.8) / 0.9)
    assert list(out)[:3] == ["window_id", "stream", "window"]
