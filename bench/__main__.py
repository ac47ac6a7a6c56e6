"""BreeBoost performance benchmark: ``python -m bench [--quick] [--out FILE]``.

Starts its own embedded broker, trains (once, cached in bench/.cache/) a PaySim model, and measures in
one run: the ceilings and peers, alternated with the real pipeline on one transaction per message (the
aiokafka ``getmany`` and confluent-kafka ``consume`` loops, a do-nothing Faust agent with the project's
settings, a Quix Streams app that JSON-decodes and counts: :mod:`bench.peers`), Faust settings that move the floor, batch envelopes,
scoring and drift costs, Evidently on the same window, produce-to-score latency at a fixed rate,
scale-out to 2 workers and memory over a long run, the label join end to end (one real worker over N
transactions and their N labels, fetch batches against Faust's per-event path). Writes the full results as JSON (``--out``, default
bench/.cache/results.json) and ends by printing one JSON line of the headline figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.env import CACHE_DIR, BenchEnv, ratio, train_or_load_model

#: Run sizes: quick mode keeps the same measurements at smaller counts (< 2 minutes).
SIZES = {
    "quick": dict(events=40_000, repeats=3, raw_events=100_000, peer_events=100_000, batched_tx=300_000, envelope=500,
                  latency_s=4.0, latency_waits=(), scale_tx=300_000, memory_tx=0, floor_variants=False,
                  evidently_install=False, scale_compressed=False, labels_e2e=(30_000, 2)),
    "full": dict(events=150_000, repeats=3, raw_events=300_000, peer_events=200_000, batched_tx=1_000_000, envelope=500,
                 latency_s=12.0, latency_waits=(0.01, 0.05, 0.1, 0.25), scale_tx=2_000_000, memory_tx=5_000_000,
                 floor_variants=True, evidently_install=True, scale_compressed=True, labels_e2e=(200_000, 3)),
}

#: Faust settings tried on the do-nothing agent ("before" = Faust's own defaults where we changed them).
FLOOR_VARIANTS = {
    "faust_monitor (before)": {"Monitor": "faust"},
    "project settings (after)": {},
    "stream_buffer_maxsize=65536": {"stream_buffer_maxsize": 65536},
    "broker_max_poll_records=5000": {"broker_max_poll_records": 5000},
    "consumer_max_fetch_size=16MB": {"consumer_max_fetch_size": 16 * 1024 * 1024},
    "broker_commit_every=10000": {"broker_commit_every": 10000},
    "stream_wait_empty=False": {"stream_wait_empty": False},
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(quick: bool, out_path: Path) -> dict[str, Any]:
    cfg = SIZES["quick" if quick else "full"]
    t_start = time.monotonic()
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg()}, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sizes": cfg}
    _log("model ...")
    model = train_or_load_model()
    from bench import micro
    from bench.kafka_runs import Runs

    _log("scoring and drift (in process) ...")
    results["scoring"] = micro.scoring_costs(model)
    results["drift"], window = micro.drift_costs(model)
    results["drift"]["evidently"] = micro.evidently_compare(window, results["drift"], CACHE_DIR,
                                                            install=cfg["evidently_install"])
    from bench import reasons_bench

    _log("reason codes and attribution (in process) ...")
    results["reasons"] = reasons_bench.in_bench(model, quick)
    from bench import labels_bench

    _log("label join (in process) ...")
    results["labels"] = labels_bench.in_bench(model, quick)
    workdir = CACHE_DIR / "run"
    with BenchEnv(workdir) as env:
        runs = Runs(env, model, workdir, _log)
        _log("ceilings, peers and the per-message pipeline (alternated) ...")
        from bench.peers import quix_python

        quix, why = quix_python(CACHE_DIR)
        peers = runs.peers_and_pipeline(cfg["raw_events"], cfg["peer_events"], cfg["repeats"], quix,
                                        n_faust=cfg["events"], extra=cfg["floor_variants"])
        if why:
            peers["quix_json"] = {"skipped": why}
        results["peers"] = peers
        results["raw_consume"], results["faust_floor"], results["pipeline"] = peers["raw"], peers["noop"], peers["pipeline"]
        floor, pipe = results["faust_floor"], results["pipeline"]
        if cfg["floor_variants"]:
            _log("Faust settings on the do-nothing agent ...")
            results["floor_variants"] = runs.floor_variants(cfg["events"], FLOOR_VARIANTS)
        _log("labels end to end: one real worker, batches and events alternated ...")
        results["labels"]["end_to_end"] = labels_bench.end_to_end(env, model, workdir, *cfg["labels_e2e"], log=_log)
        _log("batch envelopes ...")
        results["batched"] = runs.consume("pipeline", cfg["batched_tx"], batch=cfg["envelope"])
        results["batched"]["envelope"] = cfg["envelope"]
        _log("latency ...")
        results["latency"] = runs.latency(5000, cfg["latency_s"])
        results["latency_curve"] = [runs.latency(5000, cfg["latency_s"], batch_wait_s=w)
                                    for w in cfg["latency_waits"]]
        _log("scale-out ...")
        one = runs.scaleout(cfg["scale_tx"], cfg["envelope"], 1)
        two = runs.scaleout(cfg["scale_tx"], cfg["envelope"], 2)
        results["scaleout"] = {"one": one, "two": two, "speedup": ratio(two["rate"], one["rate"]),
                               "speedup_sum_of_worker_rates": ratio(two["sum_of_worker_rates"], one["rate"])}
        if cfg["scale_compressed"]:   # zstd on the input and the outputs: less for the broker to move
            one_z = runs.scaleout(cfg["scale_tx"], cfg["envelope"], 1, compression="zstd")
            two_z = runs.scaleout(cfg["scale_tx"], cfg["envelope"], 2, compression="zstd")
            results["scaleout_zstd"] = {"one": one_z, "two": two_z, "speedup": ratio(two_z["rate"], one_z["rate"]),
                                        "two_workers_vs_uncompressed": ratio(two_z["rate"], two["rate"])}
        if cfg["memory_tx"]:
            _log("memory ...")
            results["memory"] = runs.memory(cfg["memory_tx"], cfg["envelope"])
        else:   # quick mode: the RSS samples of the batched run
            results["memory"] = {"note": "quick mode: RSS at the end of the batched run",
                                 "rss_end_mb": round(results["batched"].get("rss_kb", 0) / 1024, 1)}
        results["batched"].pop("samples", None)
    floor_rate = floor.get("rate")
    headline = {
        "mode": results["mode"],
        "raw_consume_per_s": results["raw_consume"].get("rate"),
        "faust_floor_per_s": floor_rate,
        "pipeline_per_s": pipe.get("rate"),
        "pipeline_vs_faust_floor": ratio(pipe.get("rate"), floor_rate),
        "pipeline_vs_faust_floor_cpu": ratio(pipe.get("cpu_rate"), floor.get("cpu_rate")),
        "confluent_consume_per_s": results["peers"]["confluent"].get("rate"),
        "quix_decode_per_s": results["peers"]["quix_json"].get("rate"),
        "pipeline_vs_quix_decode": ratio(pipe.get("rate"), results["peers"]["quix_json"].get("rate")),
        "pipeline_vs_quix_decode_cpu": ratio(pipe.get("cpu_rate"), results["peers"]["quix_json"].get("cpu_rate")),
        # the client underneath Faust (aiokafka's getmany loop)
        "pipeline_vs_client_ceiling": ratio(pipe.get("rate"), results["raw_consume"].get("rate")),
        "pipeline_vs_confluent": ratio(pipe.get("rate"), results["peers"]["confluent"].get("rate")),
        "batched_tx_per_s": results["batched"].get("rate"),
        "batched_vs_faust_floor": ratio(results["batched"].get("rate"), floor_rate, 2),
        "batched_vs_client_ceiling": ratio(results["batched"].get("rate"), results["raw_consume"].get("rate")),
        "load_avg_at_start": results["machine"]["load_avg_at_start"][0],
        "scoring_speedup": results["scoring"]["speedup"],
        "drift_update_ns_per_event_feature": results["drift"]["update_ns_per_event_feature"],
        "drift_close_window_ms": results["drift"]["close_window_ms"],
        "evidently_cost_ratio": results["drift"]["evidently"].get("cost_ratio"),
        "evidently_report_cost_ratio": results["drift"]["evidently"].get("report_cost_ratio"),
        "reasons_flagged_vs_without": results["reasons"]["throughput"]["flagged_vs_without"],
        "reasons_all_cost_us_per_tx": results["reasons"]["throughput"]["all_cost_us_per_tx"],
        "attribution_window_ms": results["reasons"]["attribution"]["median_ms"],
        "labels_join_us_per_label": results["labels"]["join"]["us_per_label"],
        "labels_per_s_per_worker": results["labels"]["join"]["labels_per_s"],
        "labels_pending_mb_per_million": results["labels"]["memory"]["mb_per_million"],
        "labels_route_scoring_ratio": results["labels"]["scoring"]["on_vs_off_throughput"],
        "labels_route_us_per_tx": results["labels"]["scoring"]["route_alone_us_per_tx"],
        # one real worker, N transactions and their N labels pre-filled (one a message): labels joined per
        # second from its first batch to the last join, input_path batches and events in the same run
        "labels_e2e_per_s": results["labels"]["end_to_end"]["batches"]["labels_per_s"],
        "labels_e2e_events_per_s": results["labels"]["end_to_end"]["events"]["labels_per_s"],
        "labels_e2e_vs_events": results["labels"]["end_to_end"]["batches_vs_events"],
        "labels_e2e_scoring_tx_per_s": results["labels"]["end_to_end"]["batches"]["scoring_tx_per_s"],
        "labels_e2e_scoring_events_tx_per_s": results["labels"]["end_to_end"]["events"]["scoring_tx_per_s"],
        "latency_p50_ms": results["latency"]["p50_ms"],
        "latency_p99_ms": results["latency"]["p99_ms"],
        "scaleout_2_workers": results["scaleout"]["speedup"],
        "scaleout_2_workers_sum_of_rates": results["scaleout"]["speedup_sum_of_worker_rates"],
        "scaleout_broker_cpu_per_worker_cpu": results["scaleout"]["two"].get("broker_cpu_per_worker_cpu"),
        "scaleout_2_workers_zstd": results.get("scaleout_zstd", {}).get("speedup"),
        "memory_growth_mb_per_million": results["memory"].get("growth_mb_per_million_after_warmup"),
        "memory_growth_mb_per_million_second_half": results["memory"].get("growth_mb_per_million_second_half"),
        "seconds": round(time.monotonic() - t_start, 1),
    }
    results["headline"] = headline
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=str))
    _log(f"full results: {out_path}")
    return headline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller counts, same measurements (< 2 minutes)")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default bench/.cache/results[-quick].json)")
    a = p.parse_args(argv)
    out = a.out or CACHE_DIR / ("results-quick.json" if a.quick else "results.json")
    headline = run(a.quick, out)
    print(json.dumps(headline), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
