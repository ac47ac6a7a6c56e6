"""``breeboost model retrain``: a challenger trained on the topics' labelled history.

1. The transactions topic is read over the chosen range, and only it: ``--windows N`` (each partition from
   the first to the last offset of the last N drift windows on ``drift.stats``), ``--since TIME`` (each
   partition from its first record at or after TIME, a seek by timestamp), or everything (the default).
   Messages are decoded as the worker decodes them (envelopes included).
2. The labels topic is read from ``--label-lookback`` s before the range's first transaction (a seek by
   timestamp) until every transaction of the range has a label, or ``--label-wait`` s past its last one:
   ``transaction_id -> isFraud`` (a later label for the same id wins); each transaction is joined to its label.
3. Every row is accounted for: outside the range, undecodable (by reason), without a transaction id,
   unlabelled, or labelled; the counts are printed and kept in the challenger's ``metadata.json``
   (``retrain.rows``). Nothing is dropped without being counted.
4. The newest ``--eval-fraction`` of the labelled rows (by event time) is held out; the rest (plus, with
   ``--with-original``, the champion's own training data) trains a model with the champion's spec.
5. Champion and challenger score the held-out rows (the same rows: those both accept); the comparison is
   printed and kept in ``retrain.comparison``, and the challenger is registered as the registry's challenger
   (``breeboost model promote VERSION`` makes it champion).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["add_retrain_arguments", "run_retrain", "StreamRows", "read_labels", "window_ranges",
           "read_labelled_transactions", "compare"]

#: the label field of a ``labels`` record (as streams.labels reads it)
LABEL_FIELD = "isFraud"


def add_retrain_arguments(p: argparse.ArgumentParser) -> None:
    rng = p.add_mutually_exclusive_group()
    rng.add_argument("--windows", type=int, metavar="N", help="the transactions of the last N drift windows")
    rng.add_argument("--since", metavar="TIME", help="transactions published since TIME (epoch seconds or "
                     "ISO 8601 UTC, e.g. 2026-12-02T01:00:00)")
    rng.add_argument("--all", action="store_true", help="every transaction on the topic (the default)")
    p.add_argument("--with-original", action="store_true",
                   help="add the champion's own training data (its data file, or the simulator run it names)")
    p.add_argument("--eval-fraction", type=float, default=0.25, metavar="F",
                   help="newest share of the labelled rows held out to compare the models [default 0.25]")
    p.add_argument("--min-labelled", type=int, default=1000, metavar="N",
                   help="refuse to train on fewer labelled stream rows [default 1000]")
    p.add_argument("--seed", type=int, default=0, help="seed of XGBoost [default 0]")
    p.add_argument("--n-estimators", type=int, default=400, metavar="N", help="most boosting rounds [default 400]")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="XGBoost training threads [default 2]")
    p.add_argument("--stop-on", choices=("aucpr", "logloss"), default="aucpr",
                   help="validation metric early stopping watches [default aucpr: what the promotion guard judges; "
                        "on the closed loop's rows, bench/retrain_stop.py, it kept 108 trees where logloss kept 168, "
                        "same held-out AUPRC 0.997]")
    p.add_argument("--read-timeout", type=float, default=3.0, metavar="S",
                   help="a topic is read to its end once no record came for S seconds [default 3]")
    p.add_argument("--label-lookback", type=float, default=2.0, metavar="S",
                   help="read labels published from S seconds before the range's first transaction (negative: "
                        "the whole labels topic) [default 2: labels come after their transactions]")
    p.add_argument("--label-wait", type=float, default=30.0, metavar="S",
                   help="and up to S seconds after its last one, or until every transaction has its label "
                        "[default 30]")
    p.add_argument("--policy", default=None, metavar="POLICY.toml",
                   help="incident policy whose [actions.promote] guard judges the challenger (default: the shipped "
                        "policy: never automatic); with auto = true a challenger that passes is promoted")
    p.add_argument("--promote-if-better", action="store_true",
                   help="promote the challenger if it passes the guard (you confirm now; without auto = true)")
    p.add_argument("--no-announce", action="store_true", help="do not publish the new challenger on the models topic")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout (progress on stderr)")


@dataclass
class StreamRows:
    """Labelled transactions from the topics, and the count of every row that is not one."""

    records: list[dict] = field(default_factory=list)
    stamps: list[tuple[float, int, int]] = field(default_factory=list)   # (timestamp ms, partition, offset)
    counts: dict[str, int] = field(default_factory=lambda: {
        "messages": 0, "outside_range": 0, "transactions": 0, "no_transaction_id": 0, "unlabelled": 0,
        "labelled": 0})
    rejected: dict[str, int] = field(default_factory=dict)              # undecodable, by reason code


def read_labels(settings: Any, idle_timeout_s: float, *, since_ms: int | None = None, until_ms: int | None = None,
                wanted: set[str] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """``transaction_id -> 0/1`` from the labels topic, and ``{records, bad, relabelled}``.

    Whole by default; ``since_ms``: from each partition's first label at or after it (a seek by timestamp),
    ``until_ms``: a partition ends at its first label newer than it; ``wanted``: the read ends as soon as
    every one of these ids has a label (a later relabel of one of them is then not seen)."""
    import orjson

    from breeboost.kafka_io import read_topic

    labels: dict[str, int] = {}
    counts = {"records": 0, "bad": 0, "relabelled": 0}
    missing = None if wanted is None else set(wanted)
    enough = None if missing is None else (lambda: not missing)
    for r in read_topic(settings, settings.topic_labels, idle_timeout_s=idle_timeout_s, timeout_s=None,
                        topic_wait_s=10, since_ms=since_ms, seek_since=since_ms is not None, until_ms=until_ms,
                        enough=enough):
        counts["records"] += 1
        try:
            doc = orjson.loads(r.value)
            tid, y = str(doc["transaction_id"]), int(doc[LABEL_FIELD])
            if y not in (0, 1):
                raise ValueError(y)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            counts["bad"] += 1
            continue
        counts["relabelled"] += tid in labels
        labels[tid] = y
        if missing is not None:
            missing.discard(tid)
    return labels, counts


def window_ranges(settings: Any, last: int, idle_timeout_s: float, indices: tuple[int, int] | None = None
                  ) -> dict[int, list[tuple[int, int]]]:
    """``partition -> [(first offset, last offset), ...]`` of the last ``last`` drift windows (by index), or
    of the windows ``indices[0]..indices[1]`` (inclusive)."""
    from breeboost.errors import BreeBoostError
    from breeboost.kafka_io import read_topic_json

    windows: dict[int, dict] = {}
    # the windows closed when the read began: on a live stream drift.stats never goes quiet for
    # idle_timeout_s, and reading until it did waited for the stream to end (#18: 29 s in the check)
    for doc in read_topic_json(settings, settings.topic_drift_stats, idle_timeout_s=idle_timeout_s,
                               timeout_s=None, topic_wait_s=10, to_highwater=True):
        w = doc.get("window") or {}
        if isinstance(w.get("index"), int) and w.get("offsets"):
            windows[w["index"]] = w["offsets"]     # a window republished later replaces the earlier one
    if not windows:
        raise BreeBoostError(f"no drift window with offsets on {settings.topic_drift_stats!r}: use --since or --all")
    chosen = sorted(windows)[-last:] if indices is None else [i for i in sorted(windows)
                                                             if indices[0] <= i <= indices[1]]
    if not chosen:
        raise BreeBoostError(f"no drift window {indices[0]}..{indices[1]} on {settings.topic_drift_stats!r} "
                             f"(windows there: {min(windows)}..{max(windows)})")
    ranges: dict[int, list[tuple[int, int]]] = {}
    for index in chosen:
        for part, (first, end) in windows[index].items():
            ranges.setdefault(int(part), []).append((int(first), int(end)))
    return ranges


def _in_ranges(ranges: dict[int, list[tuple[int, int]]] | None, partition: int, offset: int) -> bool:
    return ranges is None or any(a <= offset <= b for a, b in ranges.get(partition, ()))


def read_labelled_transactions(settings: Any, labels: dict[str, int] | None, label_column: str, *,
                               ranges: dict[int, list[tuple[int, int]]] | None = None,
                               since_ms: int | None = None, idle_timeout_s: float = 3.0,
                               say: Callable[[str], None] = lambda line: None) -> StreamRows:
    """The transactions of the chosen range joined to ``labels`` (the label set as ``label_column``);
    ``labels=None``: every transaction of the range, unlabelled (the re-baselining reads them so)."""
    from breeboost.kafka_io import read_topic

    out = StreamRows()
    chunk: list[Any] = []
    # only what the range needs: each partition from the range's first offset to its last (window ranges),
    # or from its first record at or after since_ms (a seek by timestamp); the whole topic otherwise
    starts = None if ranges is None else {p: min(a for a, _ in rs) for p, rs in ranges.items() if rs}
    ends = None if ranges is None else {p: max(b for _, b in rs) for p, rs in ranges.items() if rs}
    for r in read_topic(settings, settings.topic_transactions, idle_timeout_s=idle_timeout_s, timeout_s=None,
                        since_ms=since_ms, seek_since=since_ms is not None, starts=starts, ends=ends,
                        topic_wait_s=10):
        out.counts["messages"] += 1
        if not _in_ranges(ranges, r.partition, r.offset):
            out.counts["outside_range"] += 1
            continue
        chunk.append(r)
        if len(chunk) >= 5000:
            _join_chunk(chunk, labels, label_column, out, settings)
            chunk = []
            if out.counts["messages"] % 50_000 < 5000:
                say(f"read {out.counts['messages']} transaction messages, {out.counts['labelled']} labelled rows")
    _join_chunk(chunk, labels, label_column, out, settings)
    return out


def _join_chunk(chunk: list[Any], labels: dict[str, int] | None, label_column: str, out: StreamRows,
                settings: Any) -> None:
    from streams.decode import decode_messages

    if not chunk:
        return
    batch = decode_messages([r.value for r in chunk], settings.max_message_bytes, settings.max_envelope_items)
    for rej in batch.rejects:
        out.rejected[rej.reason] = out.rejected.get(rej.reason, 0) + 1
    counts = out.counts
    for rec, origin in zip(batch.records, batch.origins):
        counts["transactions"] += 1
        if labels is None:
            r = chunk[origin]
            out.records.append(rec)
            out.stamps.append((float(r.timestamp or 0), r.partition, r.offset))
            continue
        tid = rec.get("transaction_id")
        if tid is None:
            counts["no_transaction_id"] += 1
            continue
        y = labels.get(str(tid))
        if y is None:
            counts["unlabelled"] += 1
            continue
        counts["labelled"] += 1
        r = chunk[origin]
        out.records.append({**rec, label_column: y})
        out.stamps.append((float(r.timestamp or 0), r.partition, r.offset))


def _since_ms(text: str) -> int:
    from breeboost.errors import BreeBoostError

    if re.fullmatch(r"\d+(\.\d*)?", text):
        return int(float(text) * 1000)
    try:
        t = time.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S" if "T" in text else "%Y-%m-%d")
    except ValueError:
        raise BreeBoostError(f"--since {text!r}: expected epoch seconds or YYYY-MM-DD[THH:MM:SS] (UTC)") from None
    import calendar

    return calendar.timegm(t) * 1000


def _split_newest(rows: StreamRows, spec: Any, fraction: float) -> tuple[list[dict], list[dict]]:
    """(older rows to train on, newest ``fraction`` to compare on), ordered by event time then offset."""
    def key(i: int) -> tuple:
        t = rows.records[i].get(spec.event_time) if spec.event_time else None
        return (t if isinstance(t, (int, float)) else rows.stamps[i][0] / 1000.0, rows.stamps[i])

    order = sorted(range(len(rows.records)), key=key)
    n_eval = max(1, int(round(len(order) * fraction)))
    return [rows.records[i] for i in order[:-n_eval]], [rows.records[i] for i in order[-n_eval:]]


def compare(champion: Any, challenger: Any, records: list[dict], label_column: str) -> dict[str, Any]:
    """Both models on the same labelled rows (those both accept): AUPRC, and precision/recall at each
    model's own threshold; ``better``: the challenger's AUPRC is higher and its recall not lower."""
    import numpy as np

    from models.evaluation import evaluate_scores

    a, b = champion.score_records(records), challenger.score_records(records)
    both = np.intersect1d(a.validated.accepted, b.validated.accepted)
    y = np.array([records[i][label_column] for i in both], dtype=np.int8)
    out: dict[str, Any] = {"rows": int(both.size), "positives": int(y.sum()),
                           "rejected": int(len(records) - both.size)}
    for role, scorer, res in (("champion", champion, a), ("challenger", challenger, b)):
        p = res.scored.probability[np.searchsorted(res.validated.accepted, both)]
        rep = evaluate_scores(y, p, scorer.threshold)
        out[role] = {"version": scorer.version, "auprc": rep["auprc"], "recall": rep["at_threshold"]["recall"],
                     "precision": rep["at_threshold"]["precision"], "threshold": scorer.threshold}
    ca, cb = out["champion"], out["challenger"]
    out["better"] = bool(cb["auprc"] is not None and (ca["auprc"] is None or cb["auprc"] > ca["auprc"])
                         and (cb["recall"] or 0.0) >= (ca["recall"] or 0.0))
    return out


def _original_columns(champion: Any, say: Callable[[str], None]) -> dict | None:
    """The champion's own training data: the data file or the simulator run its metadata names."""
    from models.io import read_table

    source = str((champion.metadata.get("training") or {}).get("source") or "")
    m = re.fullmatch(r"simulator\(count=(\d+), seed=(-?\d+)\)", source)
    if m:
        from breeboost.commands.train import simulated_rows

        say(f"adding the champion's training data: {source}")
        return simulated_rows(int(m.group(1)), int(m.group(2)))
    try:
        columns = read_table(source)
    except Exception as e:   # a file that moved: say so and train on the stream alone
        say(f"warning: the champion's training data {source!r} cannot be read ({e}); the stream rows only")
        return None
    say(f"adding the champion's training data: {source}")
    return columns


def _training_columns(train: list[dict], original: dict | None) -> dict:
    import numpy as np

    from models.io import records_to_columns

    columns = records_to_columns(train)
    if not original:
        return columns
    n_orig = len(next(iter(original.values())))
    out = {}
    for k in set(columns) | set(original):
        ours = columns.get(k, np.full(len(train), None, dtype=object))
        theirs = np.asarray(original[k]) if k in original else np.full(n_orig, None, dtype=object)
        out[k] = np.concatenate([theirs, ours]) if ours.dtype == theirs.dtype or \
            (ours.dtype.kind in "if" and theirs.dtype.kind in "if") else \
            np.concatenate([theirs.astype(object), ours.astype(object)])
    return out


def join_labels(rows: StreamRows, labels: dict[str, int], label_column: str) -> StreamRows:
    """The labelled rows of ``rows`` (read with ``labels=None``), every other one counted as
    :func:`read_labelled_transactions` counts it."""
    out = StreamRows(counts=dict(rows.counts), rejected=dict(rows.rejected))
    for rec, stamp in zip(rows.records, rows.stamps):
        tid = rec.get("transaction_id")
        if tid is None:
            out.counts["no_transaction_id"] += 1
            continue
        y = labels.get(str(tid))
        if y is None:
            out.counts["unlabelled"] += 1
            continue
        out.counts["labelled"] += 1
        out.records.append({**rec, label_column: y})
        out.stamps.append(stamp)
    return out


def _gather(args: argparse.Namespace, settings: Any, spec: Any, say: Callable[[str], None]) -> tuple[StreamRows, dict]:
    """The range's transactions first (read from the range's offsets or time, not the whole topic), then
    the labels published from ``--label-lookback`` seconds before the range's first transaction to
    ``--label-wait`` seconds after its last (or until every one has its label), joined to them."""
    t0 = time.perf_counter()
    ranges = window_ranges(settings, args.windows, args.read_timeout) if args.windows else None
    since = _since_ms(args.since) if args.since else None
    what = (f"the last {args.windows} windows" if ranges is not None else f"since {args.since}" if since
            else "every transaction")
    say(f"reading {settings.topic_transactions!r}: {what}"
        f"{f' ({sum(len(r) for r in ranges.values())} partition ranges, {time.perf_counter() - t0:.1f} s)' if ranges else ''}")
    raw = read_labelled_transactions(settings, None, spec.label, ranges=ranges, since_ms=since,
                                     idle_timeout_s=args.read_timeout, say=say)
    t1 = time.perf_counter()
    say(f"read {raw.counts['messages']} transaction messages ({t1 - t0:.1f} s)")
    stamps = [ts for ts, _, _ in raw.stamps if ts > 0]
    wanted = {str(r["transaction_id"]) for r in raw.records if r.get("transaction_id") is not None}
    if stamps and args.label_lookback >= 0:
        labels, label_counts = read_labels(settings, args.read_timeout,
                                           since_ms=int(min(stamps) - args.label_lookback * 1000),
                                           until_ms=int(max(stamps) + args.label_wait * 1000), wanted=wanted)
    else:
        labels, label_counts = read_labels(settings, args.read_timeout, wanted=wanted)
    say(f"read {label_counts['records']} label records from {settings.topic_labels!r} ({label_counts['bad']} bad, "
        f"{label_counts['relabelled']} relabelled; {time.perf_counter() - t1:.1f} s)")
    rows = join_labels(raw, labels, spec.label)
    c = rows.counts
    say(f"{c['messages']} messages: {c['outside_range']} outside the range, {c['transactions']} transactions "
        f"({sum(rows.rejected.values())} undecodable {rows.rejected or ''}), {c['no_transaction_id']} without a "
        f"transaction id, {c['unlabelled']} unlabelled, {c['labelled']} labelled "
        f"({time.perf_counter() - t0:.1f} s)")
    return rows, label_counts


def run_retrain(args: argparse.Namespace, settings: Any, registry: Any) -> int:
    from models.errors import DataError
    from models.scorer import Scorer
    from models.training import TrainConfig, train_model

    stream = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(f"retrain: {line}", file=stream, flush=True)

    if not 0.0 < args.eval_fraction < 1.0:
        raise DataError(f"--eval-fraction must be in (0, 1), got {args.eval_fraction}")
    if args.windows is not None and args.windows < 1:
        raise DataError(f"--windows must be >= 1, got {args.windows}")
    champion = Scorer.load(registry.path, nthread=args.threads)
    say(f"champion {champion.version} of {registry.path}; spec {champion.spec.name!r}")
    rows, label_counts = _gather(args, settings, champion.spec, say)
    if len(rows.records) < args.min_labelled:
        raise DataError(f"only {len(rows.records)} labelled transactions in the chosen range (--min-labelled "
                        f"{args.min_labelled}): wait for more labels or widen the range")
    train, held_out = _split_newest(rows, champion.spec, args.eval_fraction)
    original = _original_columns(champion, say) if args.with_original else None
    say(f"training on {len(train)} stream rows{' + the original data' if original else ''}; "
        f"{len(held_out)} newest rows held out")
    config = TrainConfig(seed=args.seed, n_estimators=args.n_estimators, nthread=args.threads, stop_on=args.stop_on)
    model = train_model(_training_columns(train, original), champion.spec, config, progress=say,
                        source=f"stream({settings.topic_transactions}, {len(train)} labelled rows"
                               f"{' + ' + str(champion.metadata['training'].get('source')) if original else ''})")
    return _register(args, settings, registry, champion, model, held_out, rows, label_counts, say)


def _register(args: argparse.Namespace, settings: Any, registry: Any, champion: Any, model: Any,
              held_out: list[dict], rows: StreamRows, label_counts: dict, say: Callable[[str], None]) -> int:
    import tempfile
    from pathlib import Path

    from breeboost.commands.model import announce_quietly
    from models.scorer import Scorer

    with tempfile.TemporaryDirectory(prefix=".retrain-", dir=Path(registry.path)) as staging:
        model.save(staging)
        comparison = compare(champion, Scorer.load(staging), held_out, champion.spec.label)
    ca, cb = comparison["champion"], comparison["challenger"]
    say(f"on the {comparison['rows']} newest labelled rows ({comparison['positives']} frauds): champion AUPRC "
        f"{ca['auprc']} recall {ca['recall']}; challenger AUPRC {cb['auprc']} recall {cb['recall']} -> "
        f"{'better' if comparison['better'] else 'not better'}")
    model.metadata["retrain"] = {"champion": champion.version, "comparison": comparison, "rows": rows.counts,
                                 "undecodable": rows.rejected, "labels": label_counts,
                                 "range": {"windows": args.windows, "since": args.since},
                                 "with_original": bool(args.with_original)}
    from breeboost.commands.train import register_model

    version, state = register_model(model, registry.path, by="breeboost model retrain", challenger=True,
                                    reason=f"retrained; {'better' if comparison['better'] else 'not better'} "
                                           f"on {comparison['rows']} newest labelled rows")
    role = "challenger" if state.challenger == version else "champion" if state.champion == version else "version"
    say(f"registered {version} as {role}; promote it with: breeboost model promote {version} --model {registry.path}")
    if not args.no_announce and state.history and state.history[-1].version == version:
        announce_quietly(settings, state.history[-1])
    promotion = _guarded_promotion(args, settings, registry, version, comparison, say)
    if promotion["promoted"]:
        role = "champion"
    if args.json:
        print(json.dumps({"version": version, "role": role, "comparison": comparison, "rows": rows.counts,
                          "undecodable": rows.rejected, "labels": label_counts, "promotion": promotion}))
    return 0


def _guarded_promotion(args: argparse.Namespace, settings: Any, registry: Any, version: str, comparison: dict,
                       say: Callable[[str], None]) -> dict:
    """The policy's promotion guard on the comparison; promotes when it passes and the policy says
    ``auto = true`` or the user asked (``--promote-if-better``)."""
    import getpass

    from breeboost.commands.model import announce_quietly
    from incident.actions.promotion import PromotionGuard
    from incident.policy import Policy

    decision = PromotionGuard.from_policy(Policy.load(args.policy).config).decide(comparison)
    out = {"passes": decision.promote, "automatic": decision.automatic, "reason": decision.reason,
           "promoted": False}
    if not decision.promote or not (decision.automatic or args.promote_if_better):
        say(f"guard: {'passes' if decision.promote else 'does not pass'} ({decision.reason}); "
            f"{'not promoted: confirm with breeboost model promote' if decision.promote else 'not promoted'}")
        return out
    by = "auto (policy actions.promote)" if decision.automatic else getpass.getuser()
    state = registry.promote(version, by=by, reason=f"guard passed: {decision.reason}")
    say(f"guard passes ({decision.reason}): {version} promoted to champion by {by}")
    if not args.no_announce:
        announce_quietly(settings, state.history[-1])
    out["promoted"] = True
    return out
