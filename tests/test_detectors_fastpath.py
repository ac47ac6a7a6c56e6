"""detectors: the fast window close (perf #10) against the scipy path it replaced.

``kstwo_sf`` / ``kstwo_isf`` against ``scipy.stats.kstwo`` over every branch, and ``window_statistics`` against
a payload recomputed here the old way (``ks_2samp`` D, ``kstwo.sf`` p-values, ``chi2.sf``, ``chi2.isf`` and
``kstwo.isf`` thresholds, PSI with numpy) on random windows and edge cases: empty bins, tiny windows, all-equal
values, strongly drifted windows, empty windows.
"""
import math

import numpy as np
import pytest
from scipy.stats import chi2, ks_2samp, kstwo

from detectors.ks import kstwo_isf, kstwo_sf
from detectors.profile import build_profile
from detectors.psi import EPSILON
from detectors.stats import window_statistics
from detectors.window import WindowSketch

# Below this scipy's smirnov result is subnormal (few significant bits): compared with an absolute tolerance.
TINY = 1e-290


def _close(ours, want, rel):
    if want < TINY:
        return abs(ours - want) <= TINY
    return abs(ours - want) <= rel * want


def _grid(seed):
    """(n, x) pairs hitting each branch of scipy's _kolmogn(cdf=False)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 2, 7, 50, 140, 141, 150, 500, 1200, 1961, 2000, 5000, 20_000, 100_000, 150_000):
        out += [(n, 0.0), (n, 1.0), (n, 0.4 / n), (n, 0.75 / n), (n, 1.0 / n), (n, 1 - 1.5 / n), (n, 0.5),
                (n, 0.7)]
        for nx2 in np.concatenate([rng.uniform(0.0005, 2.2, 12), rng.uniform(2.2, 370, 12), [0.754, 2.2, 18, 369.9, 371]]):
            x = math.sqrt(nx2 / n)
            if 0 < x < 1:
                out.append((n, x))
    return [(n, x) for n, x in out if 0 <= x <= 1]


def test_kstwo_sf_matches_scipy_on_every_branch():
    worst = 0.0
    for n, x in _grid(1):
        ours, want = kstwo_sf(x, n), float(kstwo.sf(x, n))
        assert 0.0 <= ours <= 1.0
        assert _close(ours, want, 1e-12), (n, x, ours, want)
        if want >= TINY:
            worst = max(worst, abs(ours - want) / want)
    assert worst < 1e-12


def test_kstwo_isf_matches_scipy():
    for n in (50, 141, 400, 1961, 2000, 9000):
        for q in (0.2, 0.05, 1e-3, 1e-5, 3.4e-5, 1e-9):
            # scipy finds the root of CDF - (1 - q): at q = 1e-9 the CDF is flat to ~1e-16 over ~1e-9 of x,
            # so a last-bit difference in the CDF moves the root by that much
            rel = 1e-9 if q >= 1e-6 else 1e-7
            assert kstwo_isf(q, n) == pytest.approx(float(kstwo.isf(q, n)), rel=rel, abs=1e-13)


# -- window_statistics against the old (scipy.stats) path ----------------------------------------------
RNG = np.random.default_rng(21)
N_REF = 8000
REF = {"amount": RNG.lognormal(6, 1.4, N_REF), "flag": (RNG.random(N_REF) < 0.1).astype(float),
       "const": np.full(N_REF, 2.0), "slot": RNG.integers(0, 24, N_REF).astype(float)}
REF_CAT = {"type": RNG.choice(["A", "B", "C"], N_REF, p=[.5, .3, .2])}
PROFILE = build_profile(REF, REF_CAT, RNG.beta(1, 25, N_REF), threshold=0.4)


def _window(kind, n, rng):
    if kind == "calm":
        num = {"amount": rng.lognormal(6, 1.4, n), "flag": (rng.random(n) < 0.1).astype(float),
               "const": np.full(n, 2.0), "slot": rng.integers(0, 24, n).astype(float)}
        cat, scores = rng.choice(["A", "B", "C"], n, p=[.5, .3, .2]), rng.beta(1, 25, n)
    elif kind == "drifted":
        num = {"amount": rng.lognormal(7, 1.0, n), "flag": (rng.random(n) < 0.6).astype(float),
               "const": np.full(n, 2.5), "slot": rng.integers(20, 24, n).astype(float)}
        cat, scores = rng.choice(["C", "D", "E"], n), rng.beta(2, 5, n)
    elif kind == "all_equal":      # every feature one value: most bins empty on the window side
        num = {"amount": np.full(n, 400.0), "flag": np.zeros(n), "const": np.full(n, 2.0), "slot": np.full(n, 3.0)}
        cat, scores = np.full(n, "B"), np.full(n, 0.01)
    else:                          # outside the reference range: all mass in the outer bins / "other"
        num = {"amount": np.full(n, 1e9), "flag": np.full(n, 7.0), "const": np.full(n, -1.0),
               "slot": rng.uniform(100, 200, n)}
        cat, scores = np.full(n, "Z"), rng.uniform(0.9, 1.0, n)
    return num, {"type": cat}, scores


def _old_pvalue(d, n, m):
    if n <= 0 or m <= 0:
        return 1.0
    big, small = max(n, m), min(n, m)
    en = np.round(big * small / (big + small))
    return 1.0 if en < 1 else float(np.clip(kstwo.sf(d, en), 0, 1))


def _old_psi(counts, ref_props):
    c = np.asarray(counts, dtype=float)
    if c.sum() <= 0:
        return 0.0
    cp, rp = np.maximum(c / c.sum(), EPSILON), np.maximum(np.asarray(ref_props), EPSILON)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


CASES = [(k, n) for k in ("calm", "drifted", "all_equal", "out_of_range") for n in (1, 3, 40, 150, 2500, 30_000)]


@pytest.mark.parametrize("kind,n", CASES)
def test_window_statistics_equals_the_scipy_path(kind, n):
    rng = np.random.default_rng(n + len(kind))
    num, cat, scores = _window(kind, n, rng)
    sk = WindowSketch(PROFILE)
    sk.update_batch(num, cat, scores)
    st_ = window_statistics(sk, PROFILE)
    th = st_["thresholds"]
    a = th["alpha_per_test"]
    m_ks = th["ks_reference_points"]
    big, small = max(n, m_ks), min(n, m_ks)
    en = np.round(big * small / (big + small))
    assert th["ks_critical"] == pytest.approx(min(float(kstwo.isf(a, en)), 1.0), rel=1e-9, abs=1e-13)
    assert th["psi_critical"] == float(chi2.isf(a, th["bins"] - 1) * (1.0 / n + 1.0 / th["reference_count"]))
    for name, values in list(num.items()) + [("__score__", scores)]:
        f = st_["score"] if name == "__score__" else st_["features"][name]
        entry = PROFILE["score"] if name == "__score__" else PROFILE["numeric"][name]
        ref = np.asarray(entry["ks_sample"])
        d = ks_2samp(values, ref).statistic
        assert f["ks_d"] == d                                                # bit-for-bit
        assert _close(f["ks_pvalue"], _old_pvalue(d, n, ref.size), 1e-12), (name, f["ks_pvalue"])
        idx = np.digitize(values, entry["edges"], right=True)
        counts = np.bincount(idx, minlength=len(entry["edges"]) + 1)
        assert f["psi"] == pytest.approx(_old_psi(counts, entry["proportions"]), abs=1e-9)
        drifted = n >= th["min_events"] and (f["psi"] > th["psi"] or d > th["ks_d"])
        assert f["drifted"] == drifted
    t = st_["features"]["type"]
    ref_t = PROFILE["categorical"]["type"]
    counts = np.array([np.sum(cat["type"] == c) for c in ref_t["categories"]]
                      + [np.sum(~np.isin(cat["type"], ref_t["categories"]))], dtype=float)
    table = np.vstack([counts, np.asarray(ref_t["proportions"]) * ref_t["count"]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] >= 2:
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        stat = float(((table - expected) ** 2 / expected).sum())
        assert t["chi2"] == stat and t["chi2_pvalue"] == float(chi2.sf(stat, table.shape[1] - 1))
    else:
        assert (t["chi2"], t["chi2_pvalue"]) == (0.0, 1.0)


def test_empty_window_keeps_its_defaults():
    st_ = window_statistics(WindowSketch(PROFILE), PROFILE)
    for f in list(st_["features"].values()) + [st_["score"]]:
        assert f["psi"] == 0.0 and not f["drifted"]
        if "ks_d" in f:
            assert (f["ks_d"], f["ks_pvalue"]) == (0.0, 1.0)
    assert st_["thresholds"]["ks_critical"] == 1.0 and st_["thresholds"]["psi_critical"] == 1e6
