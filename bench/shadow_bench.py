"""Shadow scoring: what the challenger costs in the champion's worker, against a consumer group of its own.

``python -m bench.shadow_bench [--events N] [--repeats R]`` prints one JSON line: CPU µs per transaction of
:meth:`streams.scoring.ScoringStage.process` (``bench.process_bench``: batch envelopes and one transaction per
message), without a shadow and with the registry's challenger in shadow (a model of the same spec and size,
trained on other rows), repeats alternated so both see the same machine. ``shadow_extra_us_per_tx`` is what
shadow scoring adds in the same worker (the challenger's booster on the decoded batch, its score records,
its scores in the routed records); ``own_group_us_per_tx`` is what a challenger in its own consumer group
would cost at least: a whole scoring pass of its own (decode, de-duplicate, validate, score, encode, windows),
i.e. the no-shadow figure, before its consumer's fetch. ``same_worker_vs_own_group`` is their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

__all__ = ["measure_shadow", "main"]


def _challenger(seed: int = 77) -> Any:
    """A challenger of the champion's spec and size, trained on other simulated rows (bench/.cache/)."""
    from bench.env import train_or_load_model
    from models.scorer import Scorer

    return Scorer.load(train_or_load_model(seed=seed))


def measure_shadow(shape: str, n: int, repeats: int) -> dict[str, Any]:
    import gc

    from bench.process_bench import make_batches, make_processor
    from streams.agents import tune_gc

    batches = make_batches(n, shape)
    challenger = _challenger()
    tune_gc()
    runs: dict[str, list[float]] = {"without": [], "shadow": []}
    for _ in range(repeats):
        for mode in runs:
            proc = make_processor()
            proc.route.activate()          # the worker routes its scores to the label join: so does the shadow
            if mode == "shadow":
                proc.model.set_shadow(challenger)
            gc.collect()
            t = time.process_time()
            for b in batches:
                proc.scoring.process(b)
                proc.route.take()
            runs[mode].append((time.process_time() - t) / n * 1e6)
            if mode == "shadow":
                assert int(proc.metrics.shadow_scored._value.get()) == n, "the challenger scored every transaction"
    med = {m: statistics.median(v) for m, v in runs.items()}
    extra = med["shadow"] - med["without"]
    return {"shape": shape, "transactions": n, "repeats": repeats,
            "without_us_per_tx": round(med["without"], 3), "shadow_us_per_tx": round(med["shadow"], 3),
            "shadow_extra_us_per_tx": round(extra, 3), "own_group_us_per_tx": round(med["without"], 3),
            "same_worker_vs_own_group": round(extra / med["without"], 3),
            "throughput_with_shadow_vs_without": round(med["without"] / med["shadow"], 3),
            "runs": {m: [round(x, 3) for x in v] for m, v in runs.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.shadow_bench")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    res = {shape: measure_shadow(shape, a.events if shape == "envelope" else min(a.events, 50_000), a.repeats)
           for shape in ("envelope", "single")}
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
