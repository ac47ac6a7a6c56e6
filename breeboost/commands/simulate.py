"""``breeboost simulate``: PaySim-like transactions to Kafka or to a file, with drift/bad-input scenarios.

Prints one JSON summary line on stdout; a progress line on stderr when it is a terminal. Exit status 1
if any event or label was not acknowledged by the broker.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_simulate_arguments(p)
>>> a = p.parse_args(["--count", "10", "--scenario", "fraud_burst:factor=5", "--scenario-start", "4"])
>>> [s.describe()["start"] for s in scenarios_from_args(a)]
[4]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from typing import Any

from breeboost.errors import BreeBoostError

__all__ = ["add_simulate_arguments", "run_simulate", "scenarios_from_args", "parse_start_time"]

_DEFAULT_START = "2026-01-01T00:00:00Z"


def parse_start_time(text: str) -> float:
    """Epoch seconds from an ISO-8601 time (``Z`` or an offset; naive means UTC) or a number.

    >>> parse_start_time("2026-01-01T00:00:00Z"), parse_start_time("86400")
    (1767225600.0, 86400.0)
    """
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BreeBoostError(f"--start-time: expected ISO-8601 (2026-01-01T00:00:00Z) or epoch seconds, "
                             f"got {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--count", type=int, metavar="N", help="number of transactions to generate")
    what.add_argument("--duration", type=float, metavar="S", help="publish for S seconds (Kafka only)")
    p.add_argument("--rate", type=float, metavar="EV_PER_S",
                   help="events per second (default: as fast as possible)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same events (default 0)")
    p.add_argument("--out", metavar="FILE", help="write labelled events to FILE.jsonl or FILE.csv instead of Kafka")
    p.add_argument("--scenario", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="drift/bad-input scenario (repeatable): amount_scale:factor=F, type_mix:TYPE=SHARE,..., "
                        "missing_fields:fraction=X[,fields=a|b], schema_break:field=F,mode=rename|string, "
                        "stale_clock:lag=S, fraud_burst:factor=F, balance_corruption:fraction=X, "
                        "malformed:fraction=X[,kinds=binary|truncated|oversized]; see docs/simulator.md")
    p.add_argument("--scenario-start", action="append", type=int, default=[], metavar="EVENT_INDEX",
                   help="event index where the scenario of the same position starts (default 0)")
    p.add_argument("--scenario-end", action="append", type=int, default=[], metavar="EVENT_INDEX",
                   help="event index where the scenario of the same position stops (default: never)")
    p.add_argument("--start-index", type=int, default=0, metavar="I", help="index of the first event (default 0)")
    p.add_argument("--start-time", default=_DEFAULT_START, metavar="TIME",
                   help=f"event time of step 1 in files, ISO-8601 or epoch seconds (default {_DEFAULT_START})")
    p.add_argument("--events-per-step", type=int, default=None, metavar="N",
                   help="mean events per one-hour step (default 8552, PaySim's)")
    p.add_argument("--label-delay", type=float, default=2.0, metavar="SECONDS",
                   help="publish each label this long after its transaction (default 2.0; 0 = at once)")
    p.add_argument("--no-labels", action="store_true", help="do not publish labels")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="transactions per Kafka message, as a JSON array (default 1: one object per message)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up on an unacknowledged message after this long (default 30)")


def scenarios_from_args(args: argparse.Namespace) -> list:
    from simulator.scenarios import parse_scenario

    n = len(args.scenario)
    for flag, values in (("--scenario-start", args.scenario_start), ("--scenario-end", args.scenario_end)):
        if len(values) > n:
            raise BreeBoostError(f"{flag} given {len(values)} times but --scenario only {n} times")
    return [parse_scenario(spec, args.scenario_start[i] if i < len(args.scenario_start) else 0,
                           args.scenario_end[i] if i < len(args.scenario_end) else None, position=i)
            for i, spec in enumerate(args.scenario)]


def _check(args: argparse.Namespace) -> None:
    if args.count is not None and args.count < 0:
        raise BreeBoostError(f"--count must be >= 0, got {args.count}")
    if args.duration is not None and not args.duration > 0:
        raise BreeBoostError(f"--duration must be > 0 seconds, got {args.duration}")
    if args.rate is not None and not args.rate > 0:
        raise BreeBoostError(f"--rate must be > 0 events/s, got {args.rate}")
    if args.seed < 0:
        raise BreeBoostError(f"--seed must be >= 0, got {args.seed}")
    if args.batch < 1:
        raise BreeBoostError(f"--batch must be >= 1, got {args.batch}")
    if not args.label_delay >= 0:
        raise BreeBoostError(f"--label-delay must be >= 0, got {args.label_delay}")
    if not args.timeout > 0:
        raise BreeBoostError(f"--timeout must be > 0, got {args.timeout}")
    if args.start_index < 0:
        raise BreeBoostError(f"--start-index must be >= 0, got {args.start_index}")
    if args.events_per_step is not None and args.events_per_step < 1:
        raise BreeBoostError(f"--events-per-step must be >= 1, got {args.events_per_step}")
    if args.out and args.duration is not None:
        raise BreeBoostError("--out writes a file: give --count N, not --duration")


def _print(summary: dict[str, Any]) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()


def run_simulate(args: argparse.Namespace, settings) -> int:
    from simulator.paysim import EVENTS_PER_STEP

    _check(args)
    scenarios = scenarios_from_args(args)
    eps = args.events_per_step or EVENTS_PER_STEP
    if args.out:
        from simulator.encode import write_file

        summary = write_file(args.out, args.count, args.seed, scenarios, parse_start_time(args.start_time),
                             eps, args.start_index)
        summary.update(sent=args.count, acked=args.count, failed=0, labels_sent=0)
        _print(summary)
        return 0
    from simulator.producer import Publisher, PublishOptions

    options = PublishOptions(seed=args.seed, count=args.count, duration=args.duration, rate=args.rate,
                             scenarios=scenarios, label_delay=args.label_delay, labels=not args.no_labels,
                             batch=args.batch, start_index=args.start_index, events_per_step=eps,
                             timeout_s=args.timeout)
    progress = sys.stderr if sys.stderr.isatty() else None
    summary = Publisher(settings, options, progress=progress).run()
    _print(summary)
    return 1 if summary["failed"] or summary["aborted"] else 0
