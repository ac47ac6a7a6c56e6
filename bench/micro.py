"""In-process measurements that need no broker: scoring cost per event, drift sketch costs, Evidently.

Costs are CPU time (``time.process_time``) of the best of a few repeats, so a busy machine inflates them
less than wall time would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["scoring_costs", "drift_costs", "evidently_compare"]


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def _records(n: int, seed: int) -> list[dict]:
    import orjson

    from simulator import encode_events, generate

    return [orjson.loads(v) for v in encode_events(generate(n, seed=seed), with_label=False, seed=seed)]


def scoring_costs(model_dir: str, n_batch: int = 20_000, n_single: int = 300, seed: int = 3) -> dict[str, Any]:
    """µs per event: validated columns scored with one ``inplace_predict`` per 1000 rows, against one
    1-row ``DMatrix`` + ``predict`` per event (what a per-event Faust agent does)."""
    from models.scorer import Scorer
    from models.validation import validate_records

    scorer = Scorer.load(model_dir)
    records = _records(n_batch, seed)
    cols = validate_records(records, scorer.spec).columns
    chunks = [{k: v[i:i + 1000] for k, v in cols.items()} for i in range(0, n_batch, 1000)]
    batched = _best(lambda: [scorer.score_columns(c) for c in chunks], 3) / n_batch
    singles = records[:n_single]
    single = _best(lambda: [scorer.predict_one_dmatrix(r) for r in singles], 1) / n_single
    return {"batched_us_per_event": round(batched * 1e6, 3), "per_event_dmatrix_us": round(single * 1e6, 2),
            "speedup": round(single / batched, 1), "trees": scorer.booster.num_boosted_rounds()}


def drift_costs(model_dir: str, n: int = 100_000, seed: int = 4) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-event per-feature cost of the window sketch update (batches of 1000) and the cost of closing
    a window (sketch -> drift.stats with PSI, KS, chi2, thresholds). Also returns the window's data for
    the Evidently comparison."""
    from breeboost.settings import Settings
    from detectors.stats import window_statistics
    from detectors.window import WindowSketch, compile_profile
    from models.scorer import Scorer
    from models.validation import validate_records

    scorer = Scorer.load(model_dir)
    cols = validate_records(_records(n, seed), scorer.spec).columns
    scored = scorer.score_columns(cols)
    feats = scored.features
    compiled = compile_profile(scorer.profile)
    n_features = len(compiled.numeric) + len(compiled.categorical)
    chunks = [({k: v[i:i + 1000] for k, v in feats.numeric.items()},
               {k: v[i:i + 1000] for k, v in feats.categorical.items()},
               scored.probability[i:i + 1000].astype(np.float64)) for i in range(0, n, 1000)]

    def update() -> WindowSketch:
        s = WindowSketch(compiled, threshold=scorer.threshold)
        for num, cat, p in chunks:
            s.update_batch(num, cat, p, partition=0)
        return s

    per_event = _best(update, 3) / n
    sketch = update()
    settings = Settings.from_env({})
    close = _best(lambda: window_statistics(sketch, scorer.profile, settings, index=0), 5)
    stats = window_statistics(sketch, scorer.profile, settings, index=0)
    out = {"features": n_features, "update_ns_per_event_feature": round(per_event / (n_features + 1) * 1e9, 1),
           "update_us_per_event": round(per_event * 1e6, 3), "close_window_ms": round(close * 1e3, 3),
           "window_events": n}
    numeric_names = [k for k in compiled.numeric if k in feats.numeric]
    ref_cols = validate_records(_records(n, seed + 1), scorer.spec).columns   # a reference table of equal size
    ref_feats = scorer.score_columns(ref_cols).features
    data = {"stats": {k: stats["features"][k] for k in numeric_names if k in stats["features"]},
            "profile": {k: scorer.profile["numeric"][k] for k in numeric_names},
            "current": {k: feats.numeric[k] for k in numeric_names},
            "reference": {k: ref_feats.numeric[k] for k in numeric_names}}
    return out, data


EVIDENTLY_PINS = ["evidently==0.7.23", "pandas<3"]
_EVIDENTLY_SCRIPT = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
from evidently.legacy.core import ColumnType
d = np.load(sys.argv[1])
names = json.loads(str(d["names"]))
num = ColumnType.Numerical
# 1. cost: Evidently's PSI (its own bins) and KS per numeric feature, reference table vs window
t0 = time.process_time()
for name in names:
    ref, cur = pd.Series(d["ref_" + name]), pd.Series(d["cur_" + name])
    _psi(ref, cur, num, 0.1)
    _ks_stat_test(ref, cur, num, 0.05)
seconds = time.process_time() - t0
# 2. agreement on the same bins: our bin index of each value; <= 20 distinct values make Evidently count
#    per value, so its PSI runs on exactly our bins (reference given with the profile's bin counts)
same = {}
for name in names:
    cur = pd.Series(d["curbin_" + name])
    ref = pd.Series(np.repeat(np.arange(d["refcount_" + name].size), d["refcount_" + name]))
    same[name] = float(_psi(ref, cur, num, 0.1)[0])
print(json.dumps({"seconds": seconds, "psi_same_bins": same}))
'''


def _evidently_python(cache: Path, install: bool) -> tuple[str | None, str | None]:
    venv = cache / "evidently-venv"
    py = venv / "bin" / "python"
    if py.exists():
        return str(py), None
    if not install:
        return None, "the Evidently venv is not built (quick mode does not install it; run the full bench once)"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *EVIDENTLY_PINS], capture_output=True,
                           timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode(errors="replace")[-300:])
        subprocess.run([str(py), "-c", "import evidently"], check=True, capture_output=True, timeout=120)
    except Exception as e:   # no network, no wheel: the comparison is skipped, with the reason
        import shutil

        shutil.rmtree(venv, ignore_errors=True)
        return None, f"could not install {' '.join(EVIDENTLY_PINS)}: {str(e)[-200:]}"
    return str(py), None


def evidently_compare(data: dict[str, Any], drift: dict[str, Any], cache: Path, install: bool) -> dict[str, Any]:
    """Evidently (its own venv: it needs pandas < 3) on the same window: cost of its PSI + KS per numeric
    feature against a reference table, versus our update + close; and its PSI formula applied to our bins
    (the profile's edges) next to our PSI."""
    py, reason = _evidently_python(cache, install)
    if py is None:
        return {"available": False, "reason": reason}
    names = [k for k in data["profile"] if data["current"][k].size]
    arrays: dict[str, Any] = {"names": np.array(json.dumps(names))}
    for k in names:
        prof = data["profile"][k]
        cur = data["current"][k]
        cur = cur[np.isfinite(cur)]
        arrays["ref_" + k] = data["reference"][k]
        arrays["cur_" + k] = cur
        arrays["curbin_" + k] = np.searchsorted(np.asarray(prof["edges"]), cur, side="left")  # bin i = (e_i-1, e_i]
        arrays["refcount_" + k] = np.rint(np.asarray(prof["proportions"]) * prof["count"]).astype(np.int64)
    path = cache / "evidently-window.npz"
    np.savez(path, **arrays)
    r = subprocess.run([py, "-c", _EVIDENTLY_SCRIPT, str(path)], capture_output=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if r.returncode != 0:
        return {"available": False, "reason": "evidently run failed: " + r.stderr.decode(errors="replace")[-300:]}
    ev = json.loads(r.stdout.decode().strip().splitlines()[-1])
    n = drift["window_events"]
    ours_s = drift["close_window_ms"] / 1e3 + drift["update_us_per_event"] * 1e-6 * n
    values = {k: {"psi_ours": data["stats"].get(k, {}).get("psi"), "psi_evidently_same_bins": v}
              for k, v in ev["psi_same_bins"].items()}
    diffs = [abs(v["psi_ours"] - v["psi_evidently_same_bins"]) for v in values.values() if v["psi_ours"] is not None]
    return {"available": True, "version": EVIDENTLY_PINS[0], "numeric_features": len(names),
            "evidently_seconds": round(ev["seconds"], 4), "ours_seconds": round(ours_s, 5),
            "cost_ratio": round(ev["seconds"] / (drift["close_window_ms"] / 1e3), 1),
            "cost_ratio_with_updates": round(ev["seconds"] / ours_s, 1), "max_abs_psi_difference": max(diffs) if diffs else None,
            "values": values,
            "note": "cost_ratio: Evidently's PSI + KS functions (numeric features, window vs a reference table "
                    "of the same size) against closing our window (all features); cost_ratio_with_updates also "
                    "counts our per-event sketch updates of the whole window"}
