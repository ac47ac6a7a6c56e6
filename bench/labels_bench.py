"""The label join: what it costs per label, how many labels a worker joins a second, the memory of pending
scores, and what routing the scores costs the scoring path.

``python -m bench.labels_bench [--labels N] [--repeats R]`` prints one JSON line:

- ``join``: :meth:`streams.label_join.LabelJoiner.join` on ``N`` labels (one JSON object a message, as the
  simulator sends them) over 4 partitions, their scores routed first as the workers route them (records of
  250 ids): CPU µs per label (median of R repeats; decoding the label included), ``labels_per_s`` for one
  worker (the goal is >= 50,000), and the cost of taking in the routed scores per transaction;
- ``memory``: bytes per pending transaction (``tracemalloc``: every allocation the join holds, ids and
  probabilities decoded from routed records, as in the worker), and per million;
- ``scoring``: CPU µs per transaction of :meth:`streams.scoring.ScoringStage.process` on batch envelopes
  with the route off and on (back-to-back pairs, medians), their ratio, and the route's own cost per
  transaction (:meth:`streams.label_route.ScoreRoute.add` on 1000-transaction batches over 4 partitions).

A Faust table with a changelog was the other design: one changelog message per transaction, ~5 µs a record
through aiokafka's ``send`` or ~40 µs through Faust's ``topic.send`` (docs/broker.md, streams.delivery),
against one routed record per batch and labels partition here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any

import numpy as np
import orjson

__all__ = ["end_to_end", "in_bench", "join_cost", "memory_per_pending", "scoring_cost"]


def _routed(n: int, partitions: int = 4, batch: int = 1000, seed: int = 1) -> tuple[list, list, np.ndarray]:
    """Routed-score messages and label messages for ``n`` transactions, and the labels' partitions."""
    from streams.label_route import ScoreRoute, label_partitions
    from streams.records import Msg

    rng = np.random.default_rng(seed)
    ids = [f"tx-{seed}-{i}" for i in range(n)]
    prob = rng.random(n)
    route = ScoreRoute(partitions).activate()
    for s in range(0, n, batch):
        route.add(ids[s:s + batch], prob[s:s + batch], (prob[s:s + batch] > 0.5).astype(np.int64), [0], 1e9,
                  np.full(min(batch, n - s), 1e9))
    scores = [Msg("scores.by_id", p, i, v, key=k) for i, (p, k, v) in enumerate(route.take())]
    parts = label_partitions(ids, partitions)
    y = (rng.random(n) < 0.01).astype(int).tolist()
    labels = [Msg("labels", int(p), i, orjson.dumps({"transaction_id": t, "isFraud": v, "labelled_at": 1e9}),
                  key=t.encode(), timestamp=1e9) for i, (t, v, p) in enumerate(zip(ids, y, parts.tolist()))]
    return scores, labels, parts


def _joiner() -> Any:
    from prometheus_client import CollectorRegistry

    from breeboost.settings import Settings
    from streams.label_join import LabelJoiner
    from streams.metrics import WorkerMetrics

    return LabelJoiner(Settings.from_env({}, label_horizon_count=2_000_000), WorkerMetrics(CollectorRegistry()))


def join_cost(n: int = 200_000, repeats: int = 3, batch: int = 1000) -> dict[str, Any]:
    """CPU µs per label of the join (micro-batches of ``batch`` labels), and per routed transaction."""
    scores, labels, _ = _routed(n)
    per_label, per_score = [], []
    for _ in range(repeats):
        j = _joiner()
        t = time.process_time()
        j.join(scores)
        per_score.append((time.process_time() - t) / n * 1e6)
        t = time.process_time()
        for i in range(0, n, batch):
            j.join(labels[i:i + batch])
        per_label.append((time.process_time() - t) / n * 1e6)
        joined = j.metrics.labels_joined.labels("joined")._value.get()
        assert joined == n, joined
    us = statistics.median(per_label)
    return {"labels": n, "repeats": repeats, "us_per_label": round(us, 3), "labels_per_s": int(1e6 / us),
            "us_per_routed_score": round(statistics.median(per_score), 3), "goal_labels_per_s": 50_000}


def memory_per_pending(n: int = 1_000_000) -> dict[str, Any]:
    """Bytes the join holds per pending transaction (``tracemalloc``), ids decoded from routed records."""
    import gc

    scores, _, _ = _routed(n, partitions=1)
    values = [m.value for m in scores]
    from streams.label_pending import PendingScores
    from streams.label_route import decode_routed

    del scores
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    s = PendingScores(horizon_s=1e9, count=2 * n)
    for v in values:
        rec = decode_routed(v)
        s.add(rec.ids, rec.values(), rec.event_time_min, rec.event_time_max, 0.0)
        del rec
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(s) == n
    return {"pending": n, "bytes_per_pending": round(held / n, 1), "mb_per_million": round(held / n, 1)}


def scoring_cost(n: int = 100_000, pairs: int = 3, model_dir: str | None = None) -> dict[str, Any]:
    """CPU µs per transaction of process() on batch envelopes with the route off and on (back-to-back
    pairs), and ScoreRoute.add alone."""
    import gc

    from bench.process_bench import make_batches, make_processor
    from streams.agents import tune_gc
    from streams.label_route import ScoreRoute

    batches = make_batches(n, "envelope")
    tune_gc()
    off, on = [], []
    for _ in range(pairs):
        for routed, out in ((False, off), (True, on)):
            proc = make_processor(model_dir)
            if routed:
                proc.route.activate()
            gc.collect()
            t = time.process_time()
            for b in batches:
                proc.scoring.process(b)
                proc.route.take()
            out.append((time.process_time() - t) / n * 1e6)
    ids = [f"tx-7-{i}" for i in range(1000)]
    prob, label, times = np.random.default_rng(0).random(1000), np.zeros(1000, np.int64), np.full(1000, 1e9)
    route = ScoreRoute(4).activate()
    t = time.process_time()
    for _ in range(200):
        route.add(ids, prob, label, [0], 1e9, times)
        route.take()
    alone = (time.process_time() - t) / 200_000 * 1e6
    off_us, on_us = statistics.median(off), statistics.median(on)
    return {"transactions": n, "pairs": pairs, "route_off_us_per_tx": round(off_us, 3),
            "route_on_us_per_tx": round(on_us, 3), "on_vs_off_throughput": round(off_us / on_us, 3),
            "route_alone_us_per_tx": round(alone, 3)}


def label_payloads(n: int, seed: int, partitions: int) -> tuple[list[bytes], list[bytes], list[int]]:
    """The labels of :func:`bench.env.encode_payloads` ``(n, seed)``'s transactions, as the simulator sends
    them (simulator/producer.py): one ``{"transaction_id", "isFraud", "labelled_at"}`` a message, keyed
    by ``transaction_id``, on its murmur2 partition."""
    from simulator import generate
    from streams.label_route import label_partitions

    cols = generate(n, seed=seed)
    ids = cols["transaction_id"].tolist()
    at = round(time.time(), 3)
    values = [orjson.dumps({"transaction_id": t, "isFraud": int(y), "labelled_at": at})
              for t, y in zip(ids, cols["isFraud"].tolist())]
    return [t.encode() for t in ids], values, label_partitions(ids, partitions).tolist()



#: Worker-log lines that mean the label path went wrong (counted per run from the child's own log).
LOG_PROBLEMS = ("Stream has not started processing", "Traceback", "CRITICAL", "ERROR", "Crashed")


def _labels_after_scores(env: Any, model_dir: str, workdir: Any, path: str, keys: list, values: list, lkeys: list,
                         lvalues: list, lparts: list, partitions: int = 4) -> dict[str, Any]:
    """One worker scores the pre-filled transactions first; the labels are produced once it says so and
    the clock runs from its first join() of a label to the last label joined (the label side alone)."""
    import asyncio
    import os

    from bench.env import _produce, prefill
    from bench.kafka_runs import _Worker

    s = env.settings(partitions=partitions, input_path=path)
    prefill(s, keys, values)
    load = os.getloadavg()[0]
    w = _Worker(s, ["labels", "--events", str(len(keys)), "--model", model_dir, "--after"], workdir)
    try:
        first = w.result(timeout_s=240)
        if "scored" not in first:
            raise RuntimeError(f"labels worker ended before it scored every transaction: {first}")
        w.last = None
        t = time.perf_counter()
        asyncio.run(_produce(s.bootstrap, s.topic_labels, lkeys, lvalues, 1, parts=lparts))
        produce_s = time.perf_counter() - t
        r = w.result(timeout_s=240)
    finally:
        w.kill()
    r["produce_s"] = round(produce_s, 3)
    r["load_avg_before"] = load
    r["log_problems"] = {}
    return r


def end_to_end(env: Any, model_dir: str, workdir: Any, n: int, repeats: int, partitions: int = 4,
               log: Any = None, after_scores: bool = True) -> dict[str, Any]:
    """Labels joined per second by one real scoring worker (``python -m bench.runner labels``) over
    ``transactions`` pre-filled with ``n`` one-transaction messages and ``labels`` with their ``n``
    labels (one a message), ``input_path`` batches and events alternated in each of ``repeats`` rounds
    (so both see the same machine load); medians, their ratio, scoring throughput of the same runs.
    ``after_scores``: also ``repeats`` rounds where the labels are produced once the worker scored every
    transaction (``after_scores``: the label side's own rate, bounded by how fast this process produces)."""
    import asyncio
    import os
    from pathlib import Path

    from bench.env import _produce, encode_payloads, prefill, ratio, run_child

    keys, values = encode_payloads(n, seed=17)
    lkeys, lvalues, lparts = label_payloads(n, 17, partitions)
    runs: dict[str, list[dict[str, Any]]] = {"batches": [], "events": []}
    for i in range(repeats):
        for path in ("batches", "events"):
            s = env.settings(partitions=partitions, input_path=path)
            prefill(s, keys, values)
            asyncio.run(_produce(s.bootstrap, s.topic_labels, lkeys, lvalues, 1, parts=lparts))
            log_path = Path(workdir) / f"labels-{path}-{i}.log"
            log_path.unlink(missing_ok=True)
            load = os.getloadavg()[0]
            r = run_child(s, ["labels", "--events", str(n), "--model", model_dir], timeout_s=240, log_path=log_path)
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            r["log_problems"] = {p: text.count(p) for p in LOG_PROBLEMS if p in text}
            r["load_avg_before"] = load
            runs[path].append(r)
            if log:
                log(f"  labels e2e {path}: {r.get('rate')} labels/s joined ({r['outcomes'].get('joined')}/{n}), "
                    f"scoring {r['scoring'].get('rate')} tx/s, {r.get('seconds')} s, calls {r.get('calls')}, load {load:.1f}"
                    + (f", worker log: {r['log_problems']}" if r["log_problems"] else ""))

    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        rates = [r.get("rate") for r in rs if r.get("complete") and r.get("rate")]
        scoring = [r["scoring"].get("rate") for r in rs if r["scoring"].get("rate")]
        return {"labels_per_s": statistics.median(rates) if rates else None, "runs": [r.get("rate") for r in rs],
                "cpu_rate_runs": [r.get("cpu_rate") for r in rs],
                "scoring_tx_per_s": statistics.median(scoring) if scoring else None,
                "scoring_runs": [r["scoring"].get("rate") for r in rs],
                "complete": all(r.get("complete") for r in rs), "outcomes": [r["outcomes"] for r in rs],
                "consumer_errors": sum(r.get("consumer_errors", 0) for r in rs),
                "log_problems": [r["log_problems"] for r in rs],
                "load_avg_before": [r["load_avg_before"] for r in rs],
                "calls": [r.get("calls") for r in rs]}

    b, e = summary(runs["batches"]), summary(runs["events"])
    after = {"batches": [], "events": []}
    for i in range(repeats if after_scores else 0):
        for path in ("batches", "events"):
            r = _labels_after_scores(env, model_dir, workdir, path, keys, values, lkeys, lvalues, lparts)
            after[path].append(r)
            if log:
                log(f"  labels after their scores, {path}: {r.get('rate')} labels/s joined "
                    f"({r['outcomes'].get('joined')}/{n}; labels produced in {r['produce_s']} s), load {r['load_avg_before']:.1f}")
    return {"transactions": n, "labels": n, "partitions": partitions, "repeats": repeats, "batches": b, "events": e,
            "batches_vs_events": ratio(b["labels_per_s"], e["labels_per_s"], 2),
            "scoring_batches_vs_events": ratio(b["scoring_tx_per_s"], e["scoring_tx_per_s"], 2),
            "after_scores": {path: summary(rs) for path, rs in after.items()} if after_scores else None,
            "goal_labels_per_s": 50_000}


def in_bench(model_dir: str, quick: bool) -> dict[str, Any]:
    """What ``python -m bench`` records."""
    return {"join": join_cost(100_000 if quick else 300_000, 3),
            "memory": memory_per_pending(250_000 if quick else 1_000_000),
            "scoring": scoring_cost(60_000 if quick else 200_000, 3, model_dir)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.labels_bench")
    p.add_argument("--labels", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pending", type=int, default=1_000_000, help="pending transactions for the memory figure")
    p.add_argument("--model", default=None, help="model directory (default: the bench's cached model)")
    p.add_argument("--e2e", type=int, default=0, metavar="N",
                   help="only the end-to-end run: N transactions and N labels through one real worker per path")
    a = p.parse_args(argv)
    if a.e2e:
        from bench.env import CACHE_DIR, BenchEnv, train_or_load_model

        model = a.model or train_or_load_model()
        with BenchEnv(CACHE_DIR / "run") as env:
            res = end_to_end(env, model, CACHE_DIR / "run", a.e2e, a.repeats,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
        sys.stdout.write(json.dumps(res) + "\n")
        return
    res = {"join": join_cost(a.labels, a.repeats), "memory": memory_per_pending(a.pending),
           "scoring": scoring_cost(100_000, a.repeats, a.model)}
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
