"""detectors.profile: the reference profile stored with every model."""
import numpy as np
import orjson
import pytest

from detectors.profile import build_profile, check_profile, quantile_edges
from detectors.errors import ProfileError


def _profile(n=5000, seed=1):
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(8, 1.5, n)
    amount[:10] = np.nan
    return build_profile({"amount": amount, "const": np.full(n, 2.0), "flag": (rng.random(n) < 0.3).astype(float)},
                         {"type": rng.choice(["CASH_OUT", "PAYMENT", "TRANSFER"], n)},
                         rng.beta(1, 30, n), threshold=0.5)


def test_profile_is_json_and_reproducible():
    p = _profile()
    assert orjson.loads(orjson.dumps(p)) == p
    assert _profile() == p
    check_profile(p)


def test_profile_numeric_entries():
    p = _profile()
    a = p["numeric"]["amount"]
    assert len(a["edges"]) == 9 and len(a["proportions"]) == 10
    assert a["missing_ratio"] == pytest.approx(10 / 5000)
    assert a["count"] == 4990 and len(a["ks_sample"]) == 2000
    assert a["ks_sample"] == sorted(a["ks_sample"])
    assert sum(a["proportions"]) == pytest.approx(1.0)
    c = p["numeric"]["const"]
    assert c["proportions"] == [0.0, 1.0, 0.0]
    f = p["numeric"]["flag"]
    assert len(f["proportions"]) == len(f["edges"]) + 1
    assert all(x > 0 for x in f["proportions"][1:-1])


def test_profile_small_reference_keeps_all_points():
    p = build_profile({"x": np.arange(50.0)}, {}, np.linspace(0, 1, 50), ks_points=2000)
    assert p["numeric"]["x"]["ks_sample"] == list(np.arange(50.0))
    assert p["score"]["threshold"] is None and p["score"]["fraud_rate"] is None


def test_profile_empty_and_all_missing():
    p = build_profile({"x": np.full(10, np.nan)}, {"t": np.array([""] * 10)}, np.array([]))
    assert p["numeric"]["x"]["count"] == 0 and p["numeric"]["x"]["missing_ratio"] == 1.0
    assert p["categorical"]["t"]["missing_ratio"] == 1.0
    orjson.dumps(p)


@pytest.mark.parametrize("kw", [{"n_bins": 1}, {"ks_points": 0}, {"threshold": 2.0}])
def test_profile_validates_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        build_profile({"x": np.arange(5.0)}, {}, np.arange(5.0) / 5, **kw)


def test_check_profile_rejects_other_versions():
    p = _profile()
    with pytest.raises(ProfileError, match="version"):
        check_profile({**p, "version": 99})


def test_quantile_edges_discrete():
    e = quantile_edges(np.r_[np.zeros(50), np.ones(50)], 10)
    assert e.tolist() == [np.nextafter(0, -1), 0.0, 1.0]


def test_time_features_are_excluded_by_default():
    x = np.arange(100.0)
    p = build_profile({"amount": x, "hour": x % 24, "day": x // 24}, {}, x / 100)
    assert list(p["numeric"]) == ["amount"] and p["excluded"] == ["day", "hour"]
    p = build_profile({"amount": x, "hour": x % 24}, {}, x / 100, exclude=())
    assert list(p["numeric"]) == ["amount", "hour"] and p["excluded"] == []
