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


def _medians(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) of ``repeats`` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        w, t = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - t)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


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


def drift_costs(model_dir: str, n: int = 100_000, seed: int = 4, closes: int = 100) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-event per-feature cost of the window sketch update (batches of 1000) and the cost of closing
    a window (sketch -> drift.stats with PSI, KS, chi2, thresholds): median CPU (and wall) time of
    ``closes`` closes of the calm window, and of a drifted copy (numeric features * 1.3 + 0.5, scores
    + 0.05: KS p-values of drifted features take other branches). Also returns the window's data for the
    Evidently comparison."""
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
    drifted = WindowSketch(compiled, threshold=scorer.threshold)
    for num, cat, p in chunks:
        drifted.update_batch({k: v * 1.3 + 0.5 for k, v in num.items()}, cat, np.clip(p + 0.05, 0.0, 1.0), partition=0)
    settings = Settings.from_env({})
    window_statistics(sketch, scorer.profile, settings, index=0)     # warm: imports, compiled profile
    close, close_wall = _medians(lambda: window_statistics(sketch, scorer.profile, settings, index=0), closes)
    close_drifted, _ = _medians(lambda: window_statistics(drifted, scorer.profile, settings, index=0), closes)
    stats = window_statistics(sketch, scorer.profile, settings, index=0)
    out = {"features": n_features, "update_ns_per_event_feature": round(per_event / (n_features + 1) * 1e9, 1),
           "update_us_per_event": round(per_event * 1e6, 3), "close_window_ms": round(close * 1e3, 3),
           "close_window_wall_ms": round(close_wall * 1e3, 3),
           "close_drifted_window_ms": round(close_drifted * 1e3, 3),
           "drifted_features_in_drifted_window": len(window_statistics(drifted, scorer.profile, settings)["drifted_features"]),
           "closes_timed": closes, "window_events": n,
           "note": "close_window_ms: median CPU time of closes_timed closes (process_time); _wall_ms: median wall"}
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
repeats = int(sys.argv[2])
names = json.loads(str(d["names"]))
num = ColumnType.Numerical

def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out

# 1. cheapest path: Evidently's PSI (its own bins) and KS functions per numeric feature, reference vs window
def functions():
    for name in names:
        ref, cur = pd.Series(d["ref_" + name]), pd.Series(d["cur_" + name])
        _psi(ref, cur, num, 0.1)
        _ks_stat_test(ref, cur, num, 0.05)
fn_runs = [cpu(functions)[0] for _ in range(repeats)]

# 2. what users run: a Report (PSI and KS per numeric column: ValueDrift metrics; and the DataDriftPreset,
#    once with method="psi", once with "ks"), from pandas frames, reference table vs window
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset
ref_df = pd.DataFrame({k: d["ref_" + k] for k in names})
cur_cols = {k: d["cur_" + k] for k in names}
size = max(v.size for v in cur_cols.values())
cur_df = pd.DataFrame({k: np.concatenate([v, np.full(size - v.size, np.nan)]) for k, v in cur_cols.items()})

def report(metrics):
    dd = DataDefinition(numerical_columns=names)
    return Report(metrics).run(Dataset.from_pandas(cur_df, data_definition=dd),
                               Dataset.from_pandas(ref_df, data_definition=dd))
rep_runs, snap = [], None
for _ in range(repeats):
    t, snap = cpu(lambda: report([ValueDrift(column=k, method=m) for k in names for m in ("psi", "ks")]))
    rep_runs.append(t)
report_values = {}
for m in snap.dict()["metrics"]:
    c = m.get("config", {})
    if c.get("type", "").endswith("ValueDrift"):
        report_values.setdefault(c["column"], {})["psi" if c["method"] == "psi" else "ks_pvalue"] = float(m["value"])
preset = (sum(cpu(lambda: report([DataDriftPreset(columns=names, method=m)]))[0] for m in ("psi", "ks"))
          if repeats > 1 else None)

# 3. agreement on the same bins: our bin index of each value; <= 20 distinct values make Evidently count
#    per value, so its PSI runs on exactly our bins (reference given with the profile's bin counts)
same = {}
for name in names:
    cur = pd.Series(d["curbin_" + name])
    ref = pd.Series(np.repeat(np.arange(d["refcount_" + name].size), d["refcount_" + name]))
    same[name] = float(_psi(ref, cur, num, 0.1)[0])
print(json.dumps({"seconds": float(np.median(fn_runs)), "function_runs": fn_runs,
                  "report_seconds": float(np.median(rep_runs)), "report_runs": rep_runs,
                  "preset_seconds": preset, "report_values": report_values, "psi_same_bins": same}))
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


def evidently_compare(data: dict[str, Any], drift: dict[str, Any], cache: Path, install: bool,
                      repeats: int | None = None) -> dict[str, Any]:
    """Evidently (its own venv: it needs pandas < 3) on the same window, CPU time (median of ``repeats``;
    default 3 in the full bench, which installs Evidently, and 1 without the preset in quick mode, which
    does not: a Report run costs seconds), versus our close (and our update + close):

    * ``cost_ratio`` (headline ``evidently_cost_ratio``): Evidently's cheapest path, its PSI and KS
      stat-test functions called directly per numeric feature;
    * ``report_cost_ratio`` (``evidently_report_cost_ratio``): what users run, a ``Report`` of ``ValueDrift``
      metrics (PSI and KS per numeric column) from pandas frames; ``preset_seconds``: the
      ``DataDriftPreset`` run twice (method psi, method ks), once each;

    and its PSI formula applied to our bins (the profile's edges) next to our PSI."""
    repeats = repeats or (3 if install else 1)
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
    r = subprocess.run([py, "-c", _EVIDENTLY_SCRIPT, str(path), str(repeats)], capture_output=True, timeout=900,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if r.returncode != 0:
        return {"available": False, "reason": "evidently run failed: " + r.stderr.decode(errors="replace")[-300:]}
    ev = json.loads(r.stdout.decode().strip().splitlines()[-1])
    n = drift["window_events"]
    close_s = drift["close_window_ms"] / 1e3
    ours_s = close_s + drift["update_us_per_event"] * 1e-6 * n
    values = {k: {"psi_ours": data["stats"].get(k, {}).get("psi"), "psi_evidently_same_bins": v,
                  "psi_evidently_report": ev["report_values"].get(k, {}).get("psi"),
                  "ks_pvalue_ours": data["stats"].get(k, {}).get("ks_pvalue"),
                  "ks_pvalue_evidently_report": ev["report_values"].get(k, {}).get("ks_pvalue")}
              for k, v in ev["psi_same_bins"].items()}
    diffs = [abs(v["psi_ours"] - v["psi_evidently_same_bins"]) for v in values.values() if v["psi_ours"] is not None]
    return {"available": True, "version": EVIDENTLY_PINS[0], "numeric_features": len(names),
            "evidently_seconds": round(ev["seconds"], 4), "ours_seconds": round(ours_s, 5),
            "cost_ratio": round(ev["seconds"] / close_s, 1),
            "cost_ratio_with_updates": round(ev["seconds"] / ours_s, 1),
            "report_seconds": round(ev["report_seconds"], 4),
            "report_cost_ratio": round(ev["report_seconds"] / close_s, 1),
            "report_cost_ratio_with_updates": round(ev["report_seconds"] / ours_s, 1),
            "preset_seconds": None if ev["preset_seconds"] is None else round(ev["preset_seconds"], 4),
            "preset_cost_ratio": None if ev["preset_seconds"] is None else round(ev["preset_seconds"] / close_s, 1),
            "repeats": repeats,
            "runs": {"functions_s": [round(t, 4) for t in ev["function_runs"]],
                     "report_s": [round(t, 4) for t in ev["report_runs"]]},
            "max_abs_psi_difference": max(diffs) if diffs else None,
            "values": values,
            "note": "CPU seconds, median of the runs. cost_ratio: Evidently's PSI + KS stat-test functions called "
                    "directly (its cheapest path; numeric features, window vs a reference table of the same "
                    "size) against closing our window (all features); report_cost_ratio: the same PSI + KS as "
                    "an Evidently Report of ValueDrift metrics (what users run); preset_*: DataDriftPreset "
                    "with method psi and with method ks (one run each); *_with_updates also counts our "
                    "per-event sketch updates of the whole window. Evidently's own PSI/KS use its bins and "
                    "the full reference table (ours: the profile's bins and 2,000-point KS sample), so only "
                    "psi_evidently_same_bins is comparable value for value"}
