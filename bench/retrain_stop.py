"""How long the closed loop's retrain trains, by the metric early stopping watches (#18).

The rows `breeboost model retrain --windows 8` gets in the closed-loop check once its incident has 20,000
labels after it: 80,000 transactions (seed 9, ``concept_shift`` from event 40,000), windows 1-8 of 10,000,
of which the oldest 75% train (split again by time: train / validation / test) and the newest 20,000 are
held out. Each variant trains with the shipped spec and is judged on those held-out rows, as the
promotion guard judges it. Run on an idle machine, then beside a loaded one (the worker scores meanwhile).

    .venv/bin/python bench/retrain_stop.py
"""
import tempfile
import time

import numpy as np

from models.evaluation import evaluate_scores
from models.scorer import Scorer
from models.spec import load_spec
from models.training import TrainConfig, train_model
from simulator.generator import generate
from simulator.scenarios import parse_scenario


def main() -> None:
    cols = generate(100_000, seed=9, scenarios=[parse_scenario("concept_shift", 40_000)])
    train = {k: v[20_000:80_000] for k, v in cols.items()}
    held = {k: v[80_000:100_000] for k, v in cols.items()}
    spec = load_spec()
    for stop_on in ("logloss", "aucpr"):
        for threads in (2, 1):
            t0 = time.perf_counter()
            model = train_model(train, spec, TrainConfig(stop_on=stop_on, nthread=threads))
            total = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as d:
                model.save(d)
                scorer = Scorer.load(d)
                p = scorer.score_columns(held).probability
            t = model.metadata["training"]
            line = {"stop_on": stop_on, "threads": threads, "trees": t["n_trees"],
                    "boost_s": t["boosting_seconds"], "train_model_s": round(total, 2)}
            r = evaluate_scores(np.asarray(held["isFraud"]), np.asarray(p), model.threshold)
            line.update(held_auprc=r["auprc"], held_recall=r["at_threshold"]["recall"])
            print(line, flush=True)


if __name__ == "__main__":
    main()
