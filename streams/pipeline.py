"""The scoring and drift logic the Faust agents call: plain Python, tested without Kafka.

:class:`StreamProcessor` takes a micro-batch of ``transactions`` messages and returns what to publish:
one score per transaction, one dead letter per event that cannot be scored (with the reason, the
original bytes and where they came from), and the window partials that closed. Every event that enters
leaves as exactly one of the first two (per delivery), which :mod:`streams.audit` checks from the topics.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import numpy as np
import orjson

from breeboost.logs import log
from breeboost.settings import Settings
from streams.decode import decode_messages, dlq_record
from streams.windows import Aggregator, PartitionWindows, window_messages

__all__ = ["Message", "Outcome", "StreamProcessor"]

_log = logging.getLogger("breeboost.pipeline")
Record = tuple[bytes | None, bytes]


class Message(Protocol):
    """The parts of a Kafka record the pipeline reads (Faust's ``Message`` and :class:`Msg` have them)."""
    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


@dataclass
class Msg:
    """A plain record, for tests and tools that do not go through Faust."""
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: float = field(default_factory=time.time)


@dataclass
class Outcome:
    scores: list[Record] = field(default_factory=list)
    dead_letters: list[Record] = field(default_factory=list)
    partials: list[Record] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


PARTIALS_KEY = b"drift-partials"  # one key: every partial reaches the same aggregator, which publishes in order


class StreamProcessor:
    """Decode, de-duplicate, validate, score and window micro-batches; merge window partials; join labels."""

    def __init__(self, scorer: Any, settings: Settings, metrics: Any = None, model_dir: str | None = None,
                 dedup_horizon: int = 200_000, label_horizon: int = 500_000) -> None:
        from detectors.window import WindowSketch

        self.settings = settings
        self.metrics = metrics
        self.model_dir = model_dir
        self.dedup_horizon = dedup_horizon
        self.label_horizon = label_horizon
        self._seen: OrderedDict[str, tuple] = OrderedDict()
        self._recent: OrderedDict[str, tuple[float, int, int]] = OrderedDict()   # id -> (prob, label, partition)
        self._label_counts: dict[int, dict[str, float]] = {}
        self._sketch_cls = WindowSketch
        from detectors.window import compile_profile
        self._compile = compile_profile
        self._use(scorer)
        self.aggregator = Aggregator(settings.partitions, grace_s=max(3.0 * settings.window_idle_s, 3.0),
                                     merge_partials=self.merge_partials)

    # -- model -----------------------------------------------------------------------------------
    def _use(self, scorer: Any) -> None:
        self.scorer = scorer
        self.spec = scorer.spec
        self.profile = scorer.profile
        self.compiled = self._compile(scorer.profile)   # compiled once: new windows are cheap
        size = window_messages(self.settings.window_size, self.settings.partitions)
        self.windows = PartitionWindows(lambda: self._sketch_cls(self.compiled, threshold=scorer.threshold), size,
                                        self.settings.topic_transactions, scorer.version)
        if self.metrics is not None:
            self.metrics.model.info({"version": scorer.version, "threshold": f"{scorer.threshold:.6g}"})

    def reload(self, scorer: Any) -> list[Record]:
        """Serve ``scorer`` from the next batch on. Open windows are shipped first: a window never mixes
        two models' reference profiles."""
        flushed = [(PARTIALS_KEY, orjson.dumps(p)) for p in self.windows.flush()]
        self._use(scorer)
        log(_log, "model reloaded", version=scorer.version)
        return flushed

    # -- scoring ---------------------------------------------------------------------------------
    def process(self, messages: list[Message], now: float | None = None) -> Outcome:
        from models.validation import validate_records

        t0 = time.perf_counter()
        now = time.time() if now is None else now
        out = Outcome()
        decoded = decode_messages([m.value for m in messages], self.settings.max_message_bytes)
        # (message index, item, reason, detail, transaction id, record or None)
        rejected: list[tuple[int, int | None, str, str, str | None, Any, str | None]] = [
            (r.message, r.item, r.reason, r.detail, None, None, None) for r in decoded.rejects]

        records: list[dict] = []
        origins: list[int] = []
        items: list[int | None] = []
        seen = self._seen
        for rec, origin, item in zip(decoded.records, decoded.origins, decoded.items):
            tid = rec.get("transaction_id")
            if type(tid) is str:
                m = messages[origin]
                where = (m.partition, m.offset, item)
                prev = seen.get(tid)
                if prev is not None and prev != where:
                    rejected.append((origin, item, "duplicate_id",
                                     f"transaction_id {tid!r} already seen at partition {prev[0]} offset {prev[1]}",
                                     tid, rec, None))
                    continue
                if prev is None:
                    seen[tid] = where
                    if len(seen) > self.dedup_horizon:
                        seen.popitem(last=False)
            records.append(rec)
            origins.append(origin)
            items.append(item)

        validated = validate_records(records, self.spec)
        for rej in validated.rejects:
            rec = records[rej.position]
            tid = rec.get("transaction_id") if isinstance(rec, dict) else None
            rejected.append((origins[rej.position], items[rej.position], rej.reason, rej.detail,
                             tid if isinstance(tid, str) else None, rec, rej.field))

        accepted = np.asarray(validated.accepted, dtype=np.int64)
        n_ok = int(accepted.size)
        part_of_msg = np.fromiter((m.partition for m in messages), dtype=np.int64, count=len(messages))
        off_of_msg = np.fromiter((m.offset for m in messages), dtype=np.int64, count=len(messages))
        if n_ok:
            scored = self.scorer.score_columns(validated.columns)
            prob = np.asarray(scored.probability, dtype=np.float64)
            label = np.asarray(scored.label, dtype=np.int64)
            acc_origin = np.asarray(origins, dtype=np.int64)[accepted]
            acc_item = [items[i] for i in accepted.tolist()]
            id_col = validated.columns.get(self.spec.id) if self.spec.id else None
            tids = id_col if id_col is not None else [None] * n_ok
            version, threshold = self.scorer.version, float(self.scorer.threshold)
            dumps = orjson.dumps
            recent = self._recent
            envelopes: dict[int, list[dict]] = {}
            for j in range(n_ok):
                origin = int(acc_origin[j])
                m = messages[origin]
                tid = None if tids[j] is None else str(tids[j])
                p = float(prob[j])
                doc = {"transaction_id": tid, "fraud_probability": p, "fraud_label": int(label[j]),
                       "threshold": threshold, "model_version": version,
                       "latency_ms": round((now - m.timestamp) * 1000.0, 3) if m.timestamp else None,
                       "partition": m.partition, "offset": m.offset, "item": acc_item[j], "scored_at": now}
                if acc_item[j] is None:
                    out.scores.append((m.key, dumps(doc)))
                else:  # a batch envelope in, one envelope of scores out (the producer's cost is per message)
                    envelopes.setdefault(origin, []).append(doc)
                if tid is not None:
                    recent[tid] = (p, int(label[j]), m.partition)
            for origin, docs in envelopes.items():
                out.scores.append((messages[origin].key, dumps(docs)))
            while len(recent) > self.label_horizon:
                recent.popitem(last=False)
        for origin, item, reason, detail, tid, rec, fld in rejected:
            m = messages[origin]
            raw = m.value if item is None else None
            out.dead_letters.append((m.key, dlq_record(reason, detail, raw, m.topic, m.partition, m.offset,
                                                       transaction_id=tid, item=item, record=rec if raw is None else None)))
            out.reasons[reason] = out.reasons.get(reason, 0) + 1
        if n_ok:
            self._window_all(scored, prob, acc_origin, rejected, part_of_msg, off_of_msg, validated.columns, now, out)
        else:
            self._window_all(None, None, np.empty(0, np.int64), rejected, part_of_msg, off_of_msg, {}, now, out)
        if self.metrics is not None:
            mt = self.metrics
            mt.events.labels("scored").inc(n_ok)
            if rejected:
                mt.events.labels("dead_lettered").inc(len(rejected))
                for reason, c in out.reasons.items():
                    mt.dead_letters.labels(reason).inc(c)
            if n_ok:
                mt.predicted_fraud.inc(int(label.sum()))
            mt.batch_size.observe(n_ok + len(rejected))
            mt.batch_seconds.observe(time.perf_counter() - t0)
            lat = mt.event_latency
            for m in messages:
                if m.timestamp:
                    lat.observe(max(0.0, now - m.timestamp))
        return out

    # -- windows ---------------------------------------------------------------------------------
    def _window_all(self, scored: Any, prob: np.ndarray | None, acc_origin: np.ndarray, rejected: list,
                    part_of_msg: np.ndarray, off_of_msg: np.ndarray, columns: dict, now: float, out: Outcome) -> None:
        """Add the batch's scored and dead-lettered events to their partitions' windows, in offset order,
        so a window boundary inside the batch is crossed exactly once."""
        rej_origin = np.fromiter((r[0] for r in rejected), dtype=np.int64, count=len(rejected))
        origin = np.concatenate([acc_origin, rej_origin])
        if origin.size == 0:
            return
        is_rej = np.concatenate([np.zeros(acc_origin.size, bool), np.ones(rej_origin.size, bool)])
        parts, offs = part_of_msg[origin], off_of_msg[origin]
        size = self.windows.size
        order = np.lexsort((offs, parts))
        key_p, key_w = parts[order], offs[order] // size
        brk = np.flatnonzero((np.diff(key_p) != 0) | (np.diff(key_w) != 0)) + 1
        if scored is not None:
            feats = scored.features
            et_col = self.spec.event_time
            times = np.asarray(columns[et_col], dtype=np.float64) if et_col and et_col in columns else None
            lags = None if times is None else now - times
            mismatch = balance_mismatch(feats)
        shipped: list[dict] = []
        n_acc = acc_origin.size
        for chunk in np.split(order, brk):
            partition = int(parts[chunk[0]])
            w = self.windows.window(partition, int(offs[chunk].min()), now, shipped)
            w.last_offset = max(w.last_offset, int(offs[chunk].max()))
            acc = chunk[~is_rej[chunk]]
            if acc.size:
                w.sketch.update_batch({k: v[acc] for k, v in feats.numeric.items()},
                                      {k: v[acc] for k, v in feats.categorical.items()},
                                      prob[acc], None if lags is None else lags[acc],
                                      event_times=None if times is None else times[acc],
                                      balance_mismatch=None if mismatch is None else mismatch[acc],
                                      partition=partition)
            rej = chunk[is_rej[chunk]] - n_acc
            if rej.size:
                reasons: dict[str, int] = {}
                missing: dict[str, int] = {}
                for i in rej:
                    reason, fld = rejected[i][2], rejected[i][6]
                    reasons[reason] = reasons.get(reason, 0) + 1
                    if reason == "missing_field" and fld:
                        missing[fld] = missing.get(fld, 0) + 1
                w.sketch.add_rejects(reasons, missing, int(rej.size), partition=partition)
        self._ship(shipped, out)

    def _ship(self, shipped: list[dict], out: Outcome) -> None:
        for partial in shipped:
            counts = self._label_counts.pop(partial["partition"], None)
            if counts:
                partial["labels"] = counts
            out.partials.append((PARTIALS_KEY, orjson.dumps(partial, option=orjson.OPT_SERIALIZE_NUMPY)))
        if self.metrics is not None and shipped:
            self.metrics.partials_sent.inc(len(shipped))

    def tick(self, now: float | None = None, caught_up: Any = None) -> Outcome:
        """Ship the windows of partitions that went quiet (Faust's window close needs a later event).
        ``caught_up(partition, last_offset) -> bool``: see :meth:`PartitionWindows.idle`."""
        out = Outcome()
        now = time.time() if now is None else now
        self._ship(self.windows.idle(now, self.settings.window_idle_s, caught_up), out)
        out.partials += [(PARTIALS_KEY, orjson.dumps(h)) for h in self.windows.heartbeats(now)]
        return out

    # -- aggregation -----------------------------------------------------------------------------
    def merge_partials(self, partials: list[dict]) -> dict:
        from detectors.stats import window_statistics

        sketch = self._sketch_cls.from_dict(self.compiled, partials[0]["sketch"])
        for p in partials[1:]:
            sketch.merge(self._sketch_cls.from_dict(self.compiled, p["sketch"]))
        k = partials[0]["window_index"]
        labels = [p["labels"] for p in partials if p.get("labels")]
        stats = window_statistics(sketch, self.profile, self.settings, index=k,
                                  model_version=partials[0].get("model_version"), concept=_concept(labels))
        stats["window"]["offsets"] = {str(p["partition"]): [p["first_offset"], p["last_offset"]] for p in partials}
        return stats

    def aggregate(self, values: list[bytes], now: float | None = None) -> list[Record]:
        now = time.time() if now is None else now
        stats: list[dict] = []
        for v in values:
            try:
                partial = orjson.loads(v)
            except orjson.JSONDecodeError:
                log(_log, "bad partial skipped", level=logging.WARNING)
                continue
            late_before = self.aggregator.late
            stats += self.aggregator.add(partial, now)
            if self.aggregator.late > late_before and self.metrics is not None:
                self.metrics.late_partials.inc()
        return self._published(stats)

    def aggregate_tick(self, now: float | None = None) -> list[Record]:
        return self._published(self.aggregator.ready(time.time() if now is None else now))

    def _published(self, stats: list[dict]) -> list[Record]:
        out = []
        for s in stats:
            if self.metrics is not None:
                self.metrics.observe_window(s)
            log(_log, "window closed", window_id=s["window_id"], events=s.get("window", {}).get("events"),
                drifted=s.get("drifted_features"))
            out.append((s["window_id"].encode(), orjson.dumps(s, option=orjson.OPT_SERIALIZE_NUMPY)))
        return out

    # -- delayed labels --------------------------------------------------------------------------
    def join_labels(self, messages: list[Message]) -> None:
        """Join delayed labels to recent scores; the counts travel with the next partial of the partition."""
        recent = self._recent
        joined = missed = 0
        for m in messages:
            try:
                doc = orjson.loads(m.value)
                tid, y = doc["transaction_id"], int(doc["isFraud"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                missed += 1
                continue
            hit = recent.get(tid)
            if hit is None:
                missed += 1
                continue
            prob, pred, partition = hit
            c = self._label_counts.setdefault(partition, {"n": 0, "tp": 0, "fp": 0, "fn": 0, "tn": 0,
                                                          "brier": 0.0, "abs_error": 0.0})
            c["n"] += 1
            c["tp" if (pred and y) else "fp" if pred else "fn" if y else "tn"] += 1
            c["brier"] += (prob - y) ** 2
            c["abs_error"] += abs(prob - y)
            joined += 1
        if self.metrics is not None:
            self.metrics.labels_joined.labels("joined").inc(joined)
            self.metrics.labels_joined.labels("unmatched").inc(missed)


def balance_mismatch(features: Any) -> np.ndarray | None:
    """Events whose origin balance does not add up although the account had funds: PaySim's own quirks
    keep this rare on genuine traffic, so a jump means corrupted bookkeeping upstream."""
    num = features.numeric
    if "errorBalanceOrig" not in num or "oldbalanceOrg" not in num:
        return None
    return (np.abs(num["errorBalanceOrig"]) > 0.01) & (num["oldbalanceOrg"] > 0)


def _concept(label_counts: list[dict]) -> dict:
    tot = {"n": 0, "tp": 0, "fp": 0, "fn": 0, "tn": 0, "brier": 0.0, "abs_error": 0.0}
    for c in label_counts:
        for k in tot:
            tot[k] += c.get(k, 0)
    n = tot["n"]
    out: dict[str, Any] = {"labelled": n}
    if n:
        tp, fp, fn = tot["tp"], tot["fp"], tot["fn"]
        out.update(precision=tp / (tp + fp) if tp + fp else None, recall=tp / (tp + fn) if tp + fn else None,
                   brier=tot["brier"] / n, error_rate=(fp + fn) / n, tp=tp, fp=fp, fn=fn, tn=tot["tn"])
    return out
