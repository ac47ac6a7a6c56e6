"""CLI for ``breeboost report``: the stream's window statistics over a data file, as JSON and HTML.

``breeboost report --model DIR --data FILE [--window N] [--json STATS.json] [--out REPORT.html]`` reads the
file (csv, jsonl, parquet), validates and scores it with the model (rows that fail validation count as
dead-lettered in their window, as in the stream), cuts it into windows of N rows in file order, and writes
``{"windows": [drift.stats payload, ...], "summary": {...}}``. Offline there is no processing time, so
freshness lags are not measured (``freshness.count`` is 0).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from breeboost.errors import BreeBoostError
from breeboost.logs import log

__all__ = ["add_report_arguments", "run_report"]

_log = logging.getLogger("detectors.report")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", default=None,
                   help="model artifact directory (default: the --model-dir setting)")
    p.add_argument("--data", metavar="FILE", required=True, help="data file: .csv, .jsonl or .parquet")
    p.add_argument("--window", metavar="N", type=int, default=None,
                   help="window size in rows (default: the --window-size setting)")
    p.add_argument("--json", metavar="STATS.json", default=None, help="write the window statistics here")
    p.add_argument("--out", metavar="REPORT.html", default=None, help="write the HTML report here")


def run_report(args: argparse.Namespace, settings) -> int:
    import numpy as np
    import orjson

    from detectors.report import render_html, report_windows, summarize
    from models.io import read_table
    from models.scorer import Scorer
    from models.validation import validate_columns

    window = args.window if args.window is not None else settings.window_size
    if window < 1:
        raise BreeBoostError(f"--window must be >= 1, got {window}")
    if not args.json and not args.out:
        raise BreeBoostError("nothing to write: give --json STATS.json and/or --out REPORT.html")
    scorer = Scorer.load(args.model or settings.model_dir, getattr(settings, "nthread", 1))
    if not scorer.profile:
        raise BreeBoostError(f"model {scorer.path} has no drift profile (profile.json); retrain it")
    columns = read_table(args.data)
    total = len(next(iter(columns.values()))) if columns else 0
    validated = validate_columns(columns, scorer.spec)
    scored = scorer.score_columns(validated.columns)
    et = scorer.spec.event_time
    times = validated.columns.get(et) if et else None
    rejects = [(int(r.position), r.reason, r.field) for r in validated.rejects]
    stats = report_windows(scorer.profile, scored.features.numeric, scored.features.categorical,
                           np.asarray(scored.probability, dtype=np.float64), window, settings,
                           positions=validated.accepted, event_times=times, rejects=rejects, total_rows=total,
                           model_version=scorer.version)
    summary = summarize(stats)
    summary.update(data=str(args.data), window_size=window)
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"windows": stats, "summary": summary},
                                                 option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if args.out:
        Path(args.out).write_text(render_html(stats, summary, f"BreeBoost drift report: {Path(args.data).name}"),
                                  encoding="utf-8")
    log(_log, "report written", windows=summary["windows"], events=summary["events"],
        drifted_windows=len(summary["drifted_windows"]), json=args.json, html=args.out)
    print(f"{summary['windows']} windows, {summary['events']} events; windows with drift: "
          f"{', '.join(summary['drifted_windows']) or 'none'}")
    return 0
