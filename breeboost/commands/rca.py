"""``breeboost rca``: root-cause analysis over the incident log and the drift.stats history.

    breeboost rca --mode summary [--log incident_log.jsonl] [--stats STATS.jsonl] [--json]
    breeboost rca --mode top_drift --n 10 [--stats STATS.jsonl] [--json]

Without ``--stats`` the history is read from the ``drift.stats`` topic; without ``--log`` from
``./incident_log.jsonl`` if it exists, else from the ``incidents`` topic (both at ``--bootstrap``).
"""
from __future__ import annotations

import argparse
import os

from breeboost.errors import BreeBoostError
from breeboost.settings import Settings

__all__ = ["add_rca_arguments", "run_rca", "DEFAULT_LOG"]

DEFAULT_LOG = "incident_log.jsonl"


def add_rca_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("summary", "top_drift"), default="summary",
                   help="summary: incidents with where they started and the likely cause, drifted features, "
                        "missing percentages; top_drift: the features ranked by max PSI")
    p.add_argument("--n", type=int, default=10, metavar="N", help="how many features to list (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--log", metavar="FILE",
                   help=f"incident log (JSON lines; default ./{DEFAULT_LOG} if present, else the incidents topic)")
    p.add_argument("--stats", metavar="FILE",
                   help="drift.stats history (JSON lines, one payload per line; default: the drift.stats topic)")
    p.add_argument("--policy", metavar="FILE", help="incident policy TOML overriding the shipped defaults")
    p.add_argument("--read-timeout", type=float, default=2.0, metavar="S",
                   help="when reading a topic, stop after S seconds without a new record (default 2)")


def _read_file(path: str, what: str) -> list[dict]:
    from incident.log import read_jsonl

    if not os.path.isfile(path):
        raise BreeBoostError(f"{what} file {path!r} does not exist")
    return read_jsonl(path)


def run_rca(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from breeboost.windows_order import order_windows
    from incident import rca
    from incident.policy import Policy

    if args.n < 1:
        raise BreeBoostError(f"--n: expected an integer >= 1, got {args.n}")
    policy = Policy.load(args.policy)
    if args.stats:
        stats = _read_file(args.stats, "--stats")
    else:
        from breeboost.kafka_io import read_topic_json
        from incident.topic import TOPIC_WAIT_S

        stats = list(read_topic_json(settings, settings.topic_drift_stats, idle_timeout_s=args.read_timeout,
                                     topic_wait_s=TOPIC_WAIT_S))
    if args.mode == "top_drift":
        rows = rca.top_drift(stats, args.n, policy)
        print(orjson.dumps({"mode": "top_drift", "windows": len(order_windows(stats)), "features": rows},
                           option=orjson.OPT_INDENT_2).decode() if args.json else rca.render_top_drift(rows))
        return 0
    log_path = args.log or (DEFAULT_LOG if os.path.isfile(DEFAULT_LOG) else None)
    if log_path:
        events = _read_file(log_path, "--log")
    else:
        from incident.topic import read_events

        events = read_events(settings, idle_timeout_s=args.read_timeout)
    s = rca.summary(events, stats, args.n, policy)
    print(orjson.dumps({"mode": "summary", **s}, option=orjson.OPT_INDENT_2).decode() if args.json
          else rca.render_summary(s))
    return 0
