"""``breeboost reference rebaseline --windows A..B``: accept a range of windows as the new drift reference.

When a shift is real and accepted (the business changed, the model still performs), the drift alarms would
page on every window for ever. Re-baselining builds a new reference profile from the transactions of drift
windows ``A..B`` (read back from the transactions topic by the offsets each window on ``drift.stats`` names),
featurised and scored by the champion exactly as the worker does, with the binning rules of training
(:func:`detectors.profile.build_profile`; the attribution and calibration references of the trained
profile are kept). It is stored as a new reference version of the champion in the registry
(``versions/<v>/references/<n>.json``, named in ``registry.json``: :meth:`models.registry.Registry.rebaseline`),
so the worker picks it up like a model switch: its open windows are shipped with the old reference and the
next window is sketched and compared with the new one. The switch is published on the ``models`` topic and
the open data-drift incidents (``feature_drift``, ``score_drift``) of the stream are closed with the reason
(``--no-close``: left open; the incident agent still resolves them once windows are clean).
"""
from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from typing import Any, Callable

__all__ = ["add_reference_arguments", "run_reference", "parse_window_range", "build_reference",
           "REBASELINE_TYPES"]

#: incident types that a new drift reference ends
REBASELINE_TYPES = ("feature_drift", "score_drift")


def add_reference_arguments(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False
    sub = p.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    r = sub.add_parser("rebaseline", help="accept drift windows A..B as the new drift reference of the champion")
    r.add_argument("--windows", required=True, metavar="A..B", help="window indices, inclusive (e.g. 12..15)")
    r.add_argument("--model", dest="model", default=argparse.SUPPRESS, metavar="DIR",
                   help="model registry directory (alias of --model-dir)")
    r.add_argument("--reason", default="", help="why the shift is accepted (recorded with the switch)")
    r.add_argument("--by", default=None, help="who (default: the login name)")
    r.add_argument("--seed", type=int, default=0, help="seed of the KS reference sample [default 0]")
    r.add_argument("--read-timeout", type=float, default=3.0, metavar="S",
                   help="a topic is read to its end once no record came for S seconds [default 3]")
    r.add_argument("--no-announce", action="store_true", help="do not publish the switch on the models topic")
    r.add_argument("--no-close", action="store_true", help="leave the open data-drift incidents open")
    r.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    from breeboost.commands.model import add_settings_after_action

    add_settings_after_action(r, ("kafka", "topics", "process", "model"))
    p.add_argument("--model", dest="model", default=None, metavar="DIR", help=argparse.SUPPRESS)


def parse_window_range(text: str) -> tuple[int, int]:
    """``"12..15"`` -> ``(12, 15)``; a single index is a range of one.

    >>> parse_window_range("3..5"), parse_window_range("7")
    ((3, 5), (7, 7))
    """
    from breeboost.errors import BreeBoostError

    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", text)
    if not m:
        raise BreeBoostError(f"--windows {text!r}: expected A..B (window indices, e.g. 12..15)")
    a, b = int(m.group(1)), int(m.group(2) or m.group(1))
    if b < a:
        raise BreeBoostError(f"--windows {text!r}: the range ends before it starts")
    return a, b


def build_reference(champion: Any, records: list[dict], seed: int) -> tuple[dict, dict]:
    """A drift profile of ``records`` as the champion sees them (features and scores), and the row counts."""
    import numpy as np

    from detectors.profile import build_profile

    res = champion.score_records(records)
    feats = res.scored.features
    excluded = set(champion.spec.drift_exclude)
    profile = build_profile({k: v for k, v in feats.numeric.items() if k not in excluded},
                            {k: v for k, v in feats.categorical.items() if k not in excluded},
                            res.scored.probability.astype(np.float64), seed=seed, threshold=champion.threshold)
    for kept in ("attribution", "calibration"):   # references of the trained model, not of the data
        if kept in champion.profile:
            profile[kept] = champion.profile[kept]
    rejected: dict[str, int] = {}
    for rej in res.validated.rejects:
        rejected[rej.reason] = rejected.get(rej.reason, 0) + 1
    return profile, {"rows": len(records), "used": int(len(res.validated.accepted)), "rejected": rejected}


def _close_incidents(settings: Any, note: str, author: str, say: Callable[[str], None]) -> list[str]:
    from breeboost.commands.incidents import annotate_incident
    from incident.events import latest_by_incident
    from incident.topic import read_events

    from breeboost.errors import BrokerError

    try:
        events = read_events(settings)
    except BrokerError as e:   # no incidents topic yet: nothing to close
        say(f"no incident closed: {e}")
        return []
    closed = []
    for iid, ev in latest_by_incident(events).items():
        if ev.get("type") in REBASELINE_TYPES and not ev.get("closed") and ev.get("stream") in (
                None, settings.topic_transactions):
            annotate_incident(settings, iid, "close", note, author)
            closed.append(iid)
            say(f"closed {iid} ({ev.get('type')}, {ev.get('status')})")
    return closed


def run_reference(args: argparse.Namespace, settings: Any) -> int:
    from breeboost.commands.model import announce_quietly
    from breeboost.commands.options import model_dir
    from breeboost.commands.retrain import read_labelled_transactions, window_ranges
    from models.registry import Registry
    from models.scorer import Scorer

    stream = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(f"rebaseline: {line}", file=stream, flush=True)

    first, last = parse_window_range(args.windows)
    registry = Registry(model_dir(args, settings))
    champion = Scorer.load(registry.path)
    t0 = time.perf_counter()
    ranges = window_ranges(settings, 0, args.read_timeout, indices=(first, last))
    rows = read_labelled_transactions(settings, None, "", ranges=ranges, idle_timeout_s=args.read_timeout, say=say)
    if not rows.records:
        from breeboost.errors import BreeBoostError

        raise BreeBoostError(f"windows {first}..{last}: no transaction left on {settings.topic_transactions!r} "
                             "(retention?): nothing to build a reference from")
    profile, counts = build_reference(champion, rows.records, args.seed)
    counts["undecodable"] = rows.rejected
    profile["rebaselined"] = {"windows": [first, last], "model_version": champion.version, **counts,
                              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    say(f"windows {first}..{last}: {counts['rows']} transactions, {counts['used']} used "
        f"({time.perf_counter() - t0:.1f} s)")
    by = args.by or getpass.getuser()
    reason = f"windows {first}..{last} accepted as the drift reference" + (f": {args.reason}" if args.reason else "")
    n, state = registry.rebaseline(profile, by=by, reason=reason)
    say(f"reference {n} of {champion.version} in use from the worker's next window")
    if not args.no_announce:
        announce_quietly(settings, state.history[-1])
    closed = [] if args.no_close else _close_incidents(settings, f"rebaselined: {reason}", by, say)
    if args.json:
        print(json.dumps({"version": champion.version, "reference": n, "windows": [first, last], **counts,
                          "closed": closed}))
    return 0
