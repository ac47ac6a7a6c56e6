"""In-process micro-benchmark of :meth:`streams.scoring.ScoringStage.process` (no broker, no Faust).

``python -m bench.process_bench [--events N] [--repeats R] [--profile]`` prints one JSON line with the CPU
µs per transaction (``time.process_time``, median and min of R repeats) for the two input shapes:

- ``envelope``: messages holding a JSON array of 500 transactions, ~170 messages a call (one Faust
  micro-batch of ~85k transactions),
- ``single``: one transaction per message, 1000 messages a call.

Each repeat gets a fresh processor (empty dedup map, no open window), so every transaction is new and
takes the path it takes in production; building the processor and the messages is not timed. The
garbage collector is tuned as the worker tunes it (:func:`streams.agents.tune_gc`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

__all__ = ["make_batches", "make_processor", "measure"]

SHAPES = {"envelope": (500, 170), "single": (1, 1000)}   # (transactions a message, messages a call)


def make_processor(model_dir: str | None = None, **settings_kw: Any) -> Any:
    """The worker's :class:`streams.stages.WorkerStages` as ``bench.runner`` builds them (default settings,
    fresh metrics)."""
    from prometheus_client import CollectorRegistry

    from bench.env import train_or_load_model
    from breeboost.settings import Settings
    from models.scorer import Scorer
    from streams.metrics import WorkerMetrics
    from streams.stages import WorkerStages

    model_dir = model_dir or train_or_load_model()
    settings = Settings.from_env({}, **settings_kw)
    scorer = Scorer.load(model_dir, nthread=settings.nthread)
    return WorkerStages.build(scorer, settings, WorkerMetrics(CollectorRegistry()))


def make_batches(n: int, shape: str, seed: int = 11, partition: int = 0, topic: str = "transactions") -> list[list]:
    """``n`` simulated transactions as lists of :class:`streams.records.Msg`, one list per process() call."""
    from bench.env import encode_payloads
    from streams.records import Msg

    per_msg, per_call = SHAPES[shape]
    keys, values = encode_payloads(n, seed=seed, batch=per_msg)
    # Kafka timestamps are whole milliseconds: 20 messages a millisecond, as a producer at ~20k messages/s
    t0 = int(time.time() * 1000)
    msgs = [Msg(topic, partition, i, v, key=k, timestamp=(t0 + i // 20) / 1000.0)
            for i, (k, v) in enumerate(zip(keys, values))]
    return [msgs[i:i + per_call] for i in range(0, len(msgs), per_call)]


def measure(shape: str, n: int = 100_000, repeats: int = 5, model_dir: str | None = None,
            batches: list[list] | None = None, **settings_kw: Any) -> dict[str, Any]:
    """CPU µs per transaction of process() over ``n`` transactions, per repeat; median and min (and the
    median wall µs, which differs when XGBoost runs more than one thread)."""
    import gc

    from streams.agents import tune_gc

    batches = batches if batches is not None else make_batches(n, shape)
    tune_gc()   # the worker's GC settings (streams.agents): they change the cost of allocating per event
    runs, walls = [], []
    for _ in range(repeats):
        proc = make_processor(model_dir, **settings_kw)
        gc.collect()
        t, w = time.process_time(), time.perf_counter()
        for b in batches:
            proc.scoring.process(b)
        runs.append(time.process_time() - t)
        walls.append(time.perf_counter() - w)
    n_tx = sum(int(proc.metrics.events.labels(o)._value.get()) for o in ("scored", "dead_lettered"))
    us = sorted(r / n_tx * 1e6 for r in runs)
    return {"shape": shape, "transactions": n_tx, "calls": len(batches), "repeats": repeats,
            "median_us_per_tx": round(statistics.median(us), 3), "min_us_per_tx": round(us[0], 3),
            "median_wall_us_per_tx": round(statistics.median(walls) / n_tx * 1e6, 3),
            "runs_us_per_tx": [round(u, 3) for u in us]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.process_bench")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--single-events", type=int, default=None, help="transactions for the single shape (default --events)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shape", choices=(*SHAPES, "both"), default="both")
    p.add_argument("--profile", action="store_true", help="cProfile one repeat of each shape (stderr)")
    p.add_argument("--nthread", type=int, default=None, help="XGBoost threads (default: the settings' default)")
    a = p.parse_args(argv)
    shapes = list(SHAPES) if a.shape == "both" else [a.shape]
    kw = {} if a.nthread is None else {"nthread": a.nthread}
    res = {}
    for s in shapes:
        n = a.events if s == "envelope" else (a.single_events or a.events)
        batches = make_batches(n, s)
        if a.profile:
            import cProfile
            import pstats

            from streams.agents import tune_gc

            tune_gc()
            proc = make_processor()
            pr = cProfile.Profile()
            pr.enable()
            for b in batches:
                proc.scoring.process(b)
            pr.disable()
            sys.stderr.write(f"== {s}\n")
            pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        res[s] = measure(s, n, a.repeats, batches=batches, **kw)
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
