"""``breeboost report``: window statistics as JSON and one self-contained HTML page.

``breeboost report --model DIR --data FILE [--window N] [--json STATS.json] [--out REPORT.html]`` reads the
file (csv, jsonl, parquet), validates and scores it with the model (rows that fail validation count as
dead-lettered in their window, as in the stream), cuts it into windows of N rows in file order, and writes
``{"windows": [drift.stats payload, ...], "summary": {...}}``. Offline there is no processing time, so
freshness lags are not measured (``freshness.count`` is 0).

``breeboost report --bootstrap HOST:PORT [--json STATS.json] [--out REPORT.html]`` (no ``--data``) reads the
stream's own history instead: every ``drift.stats`` window and every ``incidents`` event on the topics (from
the earliest offset, by assignment, until ``--read-timeout`` seconds pass without a record), and draws the
incidents on the same window axis as the statistics. The JSON then also holds ``incidents`` (the events)
and ``spans`` (one per incident: breached windows, resolve window, peak severity).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Mapping

from breeboost.commands.options import model_dir
from breeboost.errors import BreeBoostError
from breeboost.logs import log
from breeboost.settings import Settings

__all__ = ["add_report_arguments", "run_report"]

_log = logging.getLogger("breeboost.report")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", default=None,
                   help="model artifact directory (default: the --model-dir setting)")
    p.add_argument("--data", metavar="FILE", default=None,
                   help="data file: .csv, .jsonl or .parquet (default: read the drift.stats and incidents topics)")
    p.add_argument("--window", metavar="N", type=int, default=None,
                   help="window size in rows (default: the --window-size setting)")
    p.add_argument("--json", metavar="STATS.json", default=None, help="write the window statistics here")
    p.add_argument("--out", metavar="REPORT.html", default=None, help="write the HTML report here")
    p.add_argument("--read-timeout", metavar="S", type=float, default=2.0,
                   help="without --data: stop reading a topic after S seconds without a new record (default 2)")


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    if not args.json and not args.out:
        raise BreeBoostError("nothing to write: give --json STATS.json and/or --out REPORT.html")
    if args.data is None:
        return _report_from_topics(args, settings)
    return _report_from_file(args, settings)


def _write(args: argparse.Namespace, doc: Mapping[str, Any], page: str | None) -> None:
    import orjson

    if args.json:
        Path(args.json).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if args.out and page is not None:
        Path(args.out).write_text(page, encoding="utf-8")


def _report_from_topics(args: argparse.Namespace, settings: Settings) -> int:
    from breeboost.kafka_io import read_topic_json
    from breeboost.report import incident_spans, render_html, summarize
    from breeboost.windows_order import order_windows

    if args.read_timeout <= 0:
        raise BreeBoostError(f"--read-timeout must be > 0, got {args.read_timeout}")
    read = dict(idle_timeout_s=args.read_timeout, timeout_s=max(30.0, 10 * args.read_timeout))
    windows = order_windows(read_topic_json(settings, settings.topic_drift_stats, **read))
    if not windows:
        raise BreeBoostError(f"no drift.stats windows on topic {settings.topic_drift_stats!r} at "
                             f"{settings.bootstrap}: is a worker running and has traffic reached it?")
    events = [e for e in read_topic_json(settings, settings.topic_incidents, **read)
              if isinstance(e.get("incident_id"), str)]
    spans = incident_spans(events)
    summary = summarize(windows)
    summary.update(source="topics", topic=settings.topic_drift_stats, incidents_topic=settings.topic_incidents,
                   incidents=len(spans), window_range=[windows[0]["window"]["index"], windows[-1]["window"]["index"]])
    page = render_html(windows, summary, f"BreeBoost drift report: {settings.topic_drift_stats}",
                       incidents=events) if args.out else None
    _write(args, {"windows": windows, "incidents": events, "spans": spans, "summary": summary}, page)
    log(_log, "report written", source="topics", windows=summary["windows"], incidents=len(spans),
        json=args.json, html=args.out)
    print(f"{summary['windows']} windows (index {summary['window_range'][0]}..{summary['window_range'][1]}), "
          f"{summary['events']} events, {len(spans)} incident(s); windows with drift: "
          f"{', '.join(summary['drifted_windows']) or 'none'}")
    return 0


def _report_from_file(args: argparse.Namespace, settings: Settings) -> int:
    import numpy as np

    from breeboost.report import render_html, report_windows, summarize
    from breeboost.report.windows import window_attribution
    from detectors.calibration import DetectorConfig
    from models.explain import Explainer
    from models.io import read_table
    from models.scorer import Scorer
    from models.validation import validate_columns

    window = args.window if args.window is not None else settings.window_size
    if window < 1:
        raise BreeBoostError(f"--window must be >= 1, got {window}")
    scorer = Scorer.load(model_dir(args, settings), settings.nthread)
    if not scorer.profile:
        raise BreeBoostError(f"model {scorer.path} has no drift profile (profile.json); retrain it")
    columns = read_table(args.data)
    total = len(next(iter(columns.values()))) if columns else 0
    validated = validate_columns(columns, scorer.spec)
    scored = scorer.score_columns(validated.columns)
    et = scorer.spec.event_time
    stats = report_windows(scorer.profile, scored.features.numeric, scored.features.categorical,
                           np.asarray(scored.probability, dtype=np.float64), window,
                           DetectorConfig.from_settings(settings),
                           positions=validated.accepted, event_times=validated.columns.get(et) if et else None,
                           rejects=validated.rejects, total_rows=total, model_version=scorer.version,
                           attribution=window_attribution(Explainer.of(scorer), scored.features.matrix(),
                                                          validated.accepted, settings.attribution_sample)
                           if settings.attribution_sample else None)
    summary = summarize(stats)
    summary.update(data=str(args.data), window_size=window)
    page = render_html(stats, summary, f"BreeBoost drift report: {Path(args.data).name}") if args.out else None
    _write(args, {"windows": stats, "summary": summary}, page)
    log(_log, "report written", windows=summary["windows"], events=summary["events"],
        drifted_windows=len(summary["drifted_windows"]), json=args.json, html=args.out)
    print(f"{summary['windows']} windows, {summary['events']} events; windows with drift: "
          f"{', '.join(summary['drifted_windows']) or 'none'}")
    return 0
