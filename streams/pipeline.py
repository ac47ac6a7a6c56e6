"""The scoring and drift logic the Faust agents call: plain Python, tested without Kafka.

:class:`StreamProcessor` takes a micro-batch of ``transactions`` messages and returns what to publish:
one score per transaction, one dead letter per event that cannot be scored (with the reason, the
original bytes and where they came from), and the window partials that closed. Every event that enters
leaves as exactly one of the first two (per delivery), which :mod:`streams.audit` checks from the topics.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Iterable, Protocol

import numpy as np
import orjson

from breeboost.logs import log
from breeboost.settings import Settings
from streams.decode import TypedDecoder, decode_messages, dlq_record
from streams.metrics import observe_many
from streams.windows import Aggregator, PartitionWindows, window_messages

__all__ = ["BufferedSketch", "Message", "Outcome", "RecentMap", "RecentTransactions", "StreamProcessor", "encode_scores"]

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
    score_partitions: list[int] = field(default_factory=list)        # input partition of each score record
    dead_letter_partitions: list[int] = field(default_factory=list)  # and of each dead letter


PARTIALS_KEY = b"drift-partials"  # one key: every partial reaches the same aggregator, which publishes in order


class StreamProcessor:
    """Decode, de-duplicate, validate, score and window micro-batches; merge window partials; join labels."""

    def __init__(self, scorer: Any, settings: Settings, metrics: Any = None, model_dir: str | None = None,
                 horizon: int = 500_000, sketch_buffer: int = 4096) -> None:
        from detectors.window import WindowSketch

        self.settings = settings
        self.metrics = metrics
        self.model_dir = model_dir
        self.horizon = horizon
        if sketch_buffer < 1:
            raise ValueError(f"sketch_buffer must be >= 1, got {sketch_buffer}")
        self.sketch_buffer = sketch_buffer
        self._recent = RecentTransactions(horizon)   # de-duplication and the label join
        self._label_counts: dict[int, dict[str, float]] = {}
        self._sketch_cls = WindowSketch
        from detectors.window import compile_profile
        self._compile = compile_profile
        self._warm_up()
        self._use(scorer)
        self.aggregator = Aggregator(settings.partitions, grace_s=max(3.0 * settings.window_idle_s, 3.0),
                                     merge_partials=self.merge_partials)

    @staticmethod
    def _warm_up() -> None:
        """Import what the first window close needs (scipy is ~0.5 s) at start-up, not mid-stream."""
        import detectors.stats  # noqa: F401
        import scipy.stats  # noqa: F401
        import models.validation  # noqa: F401

    # -- model -----------------------------------------------------------------------------------
    def _use(self, scorer: Any) -> None:
        self.scorer = scorer
        self.spec = scorer.spec
        self.profile = scorer.profile
        self.compiled = self._compile(scorer.profile)   # compiled once: new windows are cheap
        self._typed = typed_decoder(self.spec)
        self._profiles = getattr(self, "_profiles", {})
        self._profiles[scorer.version] = (scorer.profile, self.compiled)
        size = window_messages(self.settings.window_size, self.settings.partitions)
        self.windows = PartitionWindows(
            lambda: BufferedSketch(self._sketch_cls(self.compiled, threshold=scorer.threshold), self.sketch_buffer),
            size, self.settings.topic_transactions, scorer.version)
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
        from models.validation import validate_pulled, validate_records

        t0 = time.perf_counter()
        now = time.time() if now is None else now
        out = Outcome()
        # columns of the batch's messages, read once (Faust's Message attributes are not free)
        keys, part_l, off_l, ts_l, values = [list(map(g, messages)) for g in _MSG_ATTRS]
        # (message index, item, reason, detail, transaction id, record or None, field)
        rejected: list[tuple[int, int | None, str, str, str | None, Any, str | None]] = []
        typed = self._typed.decode(values, self.settings.max_message_bytes) if self._typed else None
        if typed is not None:   # the usual batch: columns straight from the bytes, no dict per event
            columns, origins, items = typed.columns, typed.origins, typed.items
            ids = columns["transaction_id"]
            original = _Originals(values).record

            def record_at(j: int) -> Any:   # after de-duplication: of the records it kept
                return original(origins[j], items[j])

            keep, seqs = self._dedup(ids, origins, items, part_l, off_l, rejected, record_at)
            if keep is not None:
                columns = {k: [v[j] for j in keep] for k, v in columns.items()}
                origins, items, ids = [origins[j] for j in keep], [items[j] for j in keep], columns["transaction_id"]
            validated = validate_pulled(columns, self.spec)
        else:   # anything odd in the batch: decoded one message at a time, each odd one with its reason
            decoded = decode_messages(values, self.settings.max_message_bytes)
            rejected += [(r.message, r.item, r.reason, r.detail, None, None, None) for r in decoded.rejects]
            records, origins, items = decoded.records, decoded.origins, decoded.items
            try:
                ids = list(map(_GET_ID, records))
            except KeyError:
                ids = [r.get("transaction_id") for r in records]
            keep, seqs = self._dedup(ids, origins, items, part_l, off_l, rejected, records.__getitem__)
            if keep is not None:
                records, origins = [records[j] for j in keep], [origins[j] for j in keep]
                items, ids = [items[j] for j in keep], [ids[j] for j in keep]
            validated = validate_records(records, self.spec, {"transaction_id": ids})
            record_at = records.__getitem__
        for rej in validated.rejects:
            tid = ids[rej.position]
            rejected.append((origins[rej.position], items[rej.position], rej.reason, rej.detail,
                             tid if isinstance(tid, str) else None, record_at(rej.position), rej.field))

        accepted = np.asarray(validated.accepted, dtype=np.int64)
        n_ok = int(accepted.size)
        part_of_msg = np.asarray(part_l, dtype=np.int64)
        off_of_msg = np.asarray(off_l, dtype=np.int64)
        if n_ok:
            scored = self.scorer.score_columns(validated.columns)
            prob = np.asarray(scored.probability, dtype=np.float64)
            label = np.asarray(scored.label, dtype=np.int64)
            if validated.rejects:
                acc_origin = np.asarray(origins, dtype=np.int64)[accepted]
                acc_item = [items[i] for i in accepted.tolist()]
            else:   # every record accepted, in order
                acc_origin, acc_item = np.asarray(origins, dtype=np.int64), items
            self._recent.set_scores(seqs[accepted] if validated.rejects else seqs, prob, label)
            self._score_records(validated.columns, prob, label, acc_origin, acc_item, keys, part_l, off_l, ts_l,
                                now, out)
        for origin, item, reason, detail, tid, rec, fld in rejected:
            m = messages[origin]
            raw = m.value if item is None else None
            out.dead_letters.append((m.key, dlq_record(reason, detail, raw, m.topic, m.partition, m.offset,
                                                       transaction_id=tid, item=item, record=rec if raw is None else None)))
            out.dead_letter_partitions.append(m.partition)
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
            ts = np.array(ts_l) if set(map(type, ts_l)) == _FLOAT else np.asarray([t or 0.0 for t in ts_l], np.float64)
            observe_many(mt.event_latency, np.maximum(0.0, now - ts[ts > 0]))
        return out

    def _dedup(self, ids: list, origins: list[int], items: list, part_l: list[int], off_l: list[int],
               rejected: list, record_at: Any) -> tuple[list[int] | None, np.ndarray]:
        """Dead-letter records whose transaction_id was seen at another position. Returns the positions
        kept (``None``: every record is kept) and each kept record's entry in :class:`RecentTransactions`
        (-1 without a string id), where its score goes for the label join. The common case, a batch of
        new distinct string ids, takes C-level passes only. ``record_at(j)``: the record at position
        ``j``, for its dead letter.

        Where an id was first seen is ``(partition, offset, item)``, or in the common case just
        ``(partition, offset)``. The short form is exact: it is only stored when every id of the batch is
        distinct, so the id occurs once in that message, and a message at a given offset never changes;
        seeing the id again in the same message is therefore seeing the same record again (a
        redelivery), never a duplicate."""
        recent = self._recent
        if ids and set(map(type, ids)) == _STR and len(set(ids)) == len(ids) and recent.isdisjoint(ids):
            return None, recent.add_batch(ids, part_l, off_l, origins)
        keep: list[int] = []
        seqs: list[int] = []
        for j, (tid, origin, item) in enumerate(zip(ids, origins, items)):
            seq = -1
            if type(tid) is str:
                where = (part_l[origin], off_l[origin], item)
                seq, prev = recent.find(tid)
                if prev is not None and prev != where and prev != where[:2]:
                    rejected.append((origin, item, "duplicate_id",
                                     f"transaction_id {tid!r} already seen at partition {prev[0]} offset {prev[1]}",
                                     tid, record_at(j), None))
                    continue
                if prev is None:
                    seq = recent.add(tid, *where)
            keep.append(j)
            seqs.append(seq)
        return (None if len(keep) == len(ids) else keep), np.array(seqs, dtype=np.int64)

    def _score_records(self, columns: dict, prob: np.ndarray, label: np.ndarray, acc_origin: np.ndarray,
                       acc_item: list, keys: list, part_l: list[int], off_l: list[int], ts_l: list,
                       now: float, out: Outcome) -> None:
        """One score message per transaction message, one array of scores per envelope; remember the
        scores for the label join. No per-event dict: see :func:`encode_scores`."""
        n = prob.size
        id_col = columns.get(self.spec.id) if self.spec.id else None
        if id_col is None:
            tids = [None] * n
        else:
            tids = id_col.tolist()
            if set(map(type, tids)) != _STR:
                tids = [t if t is None or type(t) is str else str(t) for t in tids]
        prob_l, label_l, origin_l = prob.tolist(), label.tolist(), acc_origin.tolist()
        if len(set(ts_l[:64])) * 4 <= min(64, len(ts_l)):
            # once per distinct timestamp (Kafka's are whole milliseconds, shared by the messages of a busy
            # stream, as the first 64 show): round() to decimals is ~0.25 us a call
            lat_of = {t: round((now - t) * 1000.0, 3) if t else None for t in set(ts_l)}
            lat_l = list(map(lat_of.__getitem__, ts_l))
        else:
            lat_l = [round((now - t) * 1000.0, 3) if t else None for t in ts_l]
        if acc_item.count(None) == n:        # one transaction per message: one score message each
            firsts, msg_origin = None, origin_l
        else:
            # a batch envelope in, one envelope of scores out (the producer's cost is per message)
            firsts = np.flatnonzero(np.diff(acc_origin, prepend=-1)).tolist()
            msg_origin = [origin_l[j] for j in firsts]
        messages = encode_scores(tids, prob_l, label_l, origin_l, acc_item, lat_l, part_l, off_l,
                                 float(self.scorer.threshold), self.scorer.version, now, firsts)
        out.scores += zip(map(keys.__getitem__, msg_origin), messages)
        out.score_partitions += map(part_l.__getitem__, msg_origin)

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

    def tick(self, now: float | None = None, caught_up: Any = None, assigned: Iterable[int] = (),
             has_backlog: Any = None) -> Outcome:
        """Ship the windows of partitions that went quiet (Faust's window close needs a later event), and
        progress heartbeats. ``caught_up(partition, last_offset) -> bool``: see
        :meth:`PartitionWindows.idle`; ``assigned``/``has_backlog``: see :meth:`PartitionWindows.heartbeats`."""
        out = Outcome()
        now = time.time() if now is None else now
        self._ship(self.windows.idle(now, self.settings.window_idle_s, caught_up), out)
        out.partials += [(PARTIALS_KEY, orjson.dumps(h)) for h in self.windows.heartbeats(now, assigned, has_backlog)]
        return out

    # -- aggregation -----------------------------------------------------------------------------
    def merge_partials(self, partials: list[dict]) -> dict:
        from detectors.stats import window_statistics

        # A window that spans a model reload has partials of two models, whose sketches cannot be merged
        # (other reference bins): keep the newest model's that this worker knows, count the others.
        versions = [p.get("model_version") for p in partials]
        known = [v for v in dict.fromkeys(reversed(versions)) if v in self._profiles]
        version = self.scorer.version if self.scorer.version in versions else (known[0] if known else None)
        if version is None:
            raise ValueError(f"window {partials[0]['window_index']}: no partial of a model this worker knows "
                             f"({sorted(set(map(str, versions)))})")
        profile, compiled = self._profiles[version]
        kept = [p for p in partials if p.get("model_version") == version]
        sketch = self._sketch_cls.from_dict(compiled, kept[0]["sketch"])
        for p in kept[1:]:
            sketch.merge(self._sketch_cls.from_dict(compiled, p["sketch"]))
        k = kept[0]["window_index"]
        labels = [p["labels"] for p in kept if p.get("labels")]
        stats = window_statistics(sketch, profile, self.settings, index=k, model_version=version,
                                  concept=_concept(labels))
        stats["window"]["offsets"] = {str(p["partition"]): [p["first_offset"], p["last_offset"]] for p in kept}
        stats["window"]["partials_of_other_models"] = len(partials) - len(kept)
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
            # one key per input stream: every window lands in one partition, so consumers (the incident
            # agent) see windows in index order; the window id is in the payload for idempotency
            out.append((self.settings.topic_transactions.encode(), orjson.dumps(s, option=orjson.OPT_SERIALIZE_NUMPY)))
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
            hit = recent.score(tid)
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


class RecentTransactions:
    """Where each recent transaction was first seen and how it was scored, in one entry per id: the
    de-duplication check and the delayed-label join read the same entry, so a transaction costs one map
    insert (the largest per-event cost after the model when they were two maps).

    A :class:`RecentMap` keeps id -> sequence number (at least the last ``horizon`` ids); numpy rings of
    ``2 * horizon`` slots keep each sequence number's partition, offset, item (-2: any item of that
    message, the short form of :meth:`StreamProcessor._dedup`; -1: not in an envelope) and, once scored,
    probability and label. A slot remembers whose it is, so an id whose slot was reused reads as unknown.

    >>> r = RecentTransactions(2)
    >>> r.add_batch(["a", "b"], [3], [40], [0, 0]).tolist(), r.add("c", 3, 41, None)
    ([0, 1], 2)
    >>> r.set_scores(np.array([1, 2]), np.array([0.9, 0.25]), np.array([1, 0]))
    >>> r.find("a"), r.find("c"), r.find("x"), r.isdisjoint(["x", "y"]), r.isdisjoint(["b"])
    ((0, (3, 40)), (2, (3, 41, None)), (-1, None), True, False)
    >>> r.score("a"), r.score("b"), r.score("x")
    (None, (0.9, 1, 3), None)
    """

    def __init__(self, horizon: int) -> None:
        self._ids = RecentMap(horizon)
        size = self._size = 2 * horizon
        self._owner = np.full(size, -1, dtype=np.int64)   # the sequence number a slot holds
        self._partition = np.zeros(size, dtype=np.int32)
        self._offset = np.zeros(size, dtype=np.int64)
        self._item = np.zeros(size, dtype=np.int32)
        self._prob = np.full(size, np.nan)                 # NaN: not scored (rejected, or not yet)
        self._label = np.zeros(size, dtype=np.int8)
        self._next = 0

    def __len__(self) -> int:
        return len(self._ids)

    def isdisjoint(self, ids: list) -> bool:
        return self._ids.isdisjoint(ids)

    def _claim(self, n: int) -> np.ndarray:
        seqs = np.arange(self._next, self._next + n, dtype=np.int64)
        self._next += n
        slots = seqs % self._size
        self._owner[slots] = seqs
        self._prob[slots] = np.nan
        return seqs

    def add_batch(self, ids: list, part_l: list[int], off_l: list[int], origins: list[int]) -> np.ndarray:
        """New distinct ids, each at (partition, offset) of its message ``origins[j]`` (the short form);
        returns their sequence numbers."""
        seqs = self._claim(len(ids))
        slots = seqs % self._size
        origin = np.asarray(origins, dtype=np.int64)
        self._partition[slots] = np.asarray(part_l, dtype=np.int32)[origin]
        self._offset[slots] = np.asarray(off_l, dtype=np.int64)[origin]
        self._item[slots] = -2
        self._ids.update(zip(ids, seqs.tolist()))
        return seqs

    def add(self, tid: str, partition: int, offset: int, item: int | None) -> int:
        """One new id at ``(partition, offset, item)``; returns its sequence number."""
        seq = int(self._claim(1)[0])
        slot = seq % self._size
        self._partition[slot], self._offset[slot] = partition, offset
        self._item[slot] = -1 if item is None else item
        self._ids.update(((tid, seq),))
        return seq

    def _slot(self, tid: Any) -> tuple[int, int]:
        seq = self._ids.get(tid)
        if seq is None:
            return -1, -1
        slot = seq % self._size
        return (seq, slot) if self._owner[slot] == seq else (-1, -1)

    def find(self, tid: Any) -> tuple[int, tuple | None]:
        """``(sequence number, where first seen)``: ``(partition, offset)`` or ``(partition, offset,
        item)``; ``(-1, None)`` for an id not seen within the horizon."""
        seq, slot = self._slot(tid)
        if seq < 0:
            return -1, None
        where = (int(self._partition[slot]), int(self._offset[slot]))
        item = int(self._item[slot])
        return seq, (where if item == -2 else (*where, None if item == -1 else item))

    def set_scores(self, seqs: np.ndarray, prob: np.ndarray, label: np.ndarray) -> None:
        """Record the scores of the entries ``seqs`` (-1: a record without an id, skipped)."""
        ok = seqs >= 0
        if not ok.all():
            seqs, prob, label = seqs[ok], prob[ok], label[ok]
        slots = seqs % self._size
        self._prob[slots] = prob
        self._label[slots] = label

    def score(self, tid: Any) -> tuple[float, int, int] | None:
        """``(probability, label, partition)`` of a recent scored transaction, else ``None``."""
        seq, slot = self._slot(tid)
        if seq < 0 or self._prob[slot] != self._prob[slot]:   # unknown, or never scored (NaN)
            return None
        return float(self._prob[slot]), int(self._label[slot]), int(self._partition[slot])


class RecentMap:
    """A map that remembers at least the last ``horizon`` keys put in it (at most twice as many).

    Two plain dicts, a young and an old generation: when the young one holds ``horizon`` keys it becomes
    the old one and the previous old one is dropped. Batch inserts are one ``dict.update`` (C), where an
    ``OrderedDict`` with per-key eviction cost ~1 µs a key in the hot path.

    >>> m = RecentMap(2)
    >>> m.update([("a", 1), ("b", 2)]); m.update([("c", 3)])
    >>> m.get("a"), m.get("c"), m.isdisjoint(["x", "b"]), len(m)
    (1, 3, False, 3)
    >>> m.update([("d", 4)]); m.get("a"), m.get("b"), m.get("d")
    (None, None, 4)
    """

    def __init__(self, horizon: int) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self._young: dict = {}
        self._old: dict = {}

    def get(self, key: Any, default: Any = None) -> Any:
        v = self._young.get(key)
        if v is None:
            v = self._old.get(key, default)
        return v

    def isdisjoint(self, keys: list) -> bool:
        """No key of ``keys`` is in the map (C-level set operations)."""
        return self._young.keys().isdisjoint(keys) and self._old.keys().isdisjoint(keys)

    def update(self, pairs: Iterable[tuple[Any, Any]]) -> None:
        self._young.update(pairs)
        if len(self._young) >= self.horizon:
            self._old, self._young = self._young, {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def __contains__(self, key: Any) -> bool:
        return key in self._young or key in self._old


class BufferedSketch:
    """A window sketch that applies scored events in chunks of at least ``min_events``.

    A drift update costs ~1 ms a call whatever its size (one bin search per feature), which at Faust's
    micro-batches of 50-500 events was the largest fixed cost of a batch. The counts are exact under
    concatenation, so the window is the same; everything that reads the sketch (``to_dict``, which every
    partial goes through) applies the buffer first.

    >>> import numpy as np
    >>> from detectors.profile import build_profile
    >>> from detectors.window import WindowSketch
    >>> rng = np.random.default_rng(0)
    >>> prof = build_profile({"amount": rng.lognormal(5, 1, 2000)}, {}, rng.beta(1, 20, 2000), threshold=0.5)
    >>> direct, buffered = WindowSketch(prof), BufferedSketch(WindowSketch(prof), min_events=1000)
    >>> for _ in range(3):
    ...     x, p = rng.lognormal(5, 1, 300), rng.beta(1, 20, 300)
    ...     direct.update_batch({"amount": x}, {}, p, partition=0)
    ...     buffered.update_batch({"amount": x}, {}, p, partition=0)
    >>> buffered.sketch.count, buffered.to_dict() == direct.to_dict(), buffered.sketch.count
    (0, True, 900)
    """

    def __init__(self, sketch: Any, min_events: int = 4096) -> None:
        if min_events < 1:
            raise ValueError(f"min_events must be >= 1, got {min_events}")
        self.sketch = sketch
        self.min_events = min_events
        self._chunks: list[tuple] = []
        self._n = 0

    def update_batch(self, numeric: dict, categorical: dict, scores: Any, event_lags_s: Any = None, *,
                     event_times: Any = None, balance_mismatch: Any = None, partition: int | None = None) -> None:
        self._chunks.append((numeric, categorical, scores, event_lags_s, event_times, balance_mismatch, partition))
        self._n += len(scores) if scores is not None else 1
        if self._n >= self.min_events:
            self.apply()

    def apply(self) -> None:
        """Apply the buffered events in one update per partition (a window has one partition)."""
        chunks, self._chunks, self._n = self._chunks, [], 0
        by_part: dict[Any, list[tuple]] = {}
        for c in chunks:
            by_part.setdefault(c[6], []).append(c)
        for partition, cs in by_part.items():
            if len(cs) == 1:
                num, cat, sc, lag, et, bm, _ = cs[0]
            else:
                def cat_(i: int) -> Any:
                    parts = [c[i] for c in cs]
                    return None if any(x is None for x in parts) else np.concatenate(parts)
                num = {k: np.concatenate([c[0][k] for c in cs]) for k in cs[0][0]}
                cat = {k: np.concatenate([c[1][k] for c in cs]) for k in cs[0][1]}
                sc, lag, et, bm = cat_(2), cat_(3), cat_(4), cat_(5)
            self.sketch.update_batch(num, cat, sc, lag, event_times=et, balance_mismatch=bm, partition=partition)

    def add_rejects(self, *args: Any, **kwargs: Any) -> None:
        self.sketch.add_rejects(*args, **kwargs)

    def to_dict(self) -> dict:
        self.apply()
        return self.sketch.to_dict()

    def __getattr__(self, name: str) -> Any:   # read-only views (count, events, ...) see every event
        if name.startswith("_") or name in ("sketch", "min_events"):
            raise AttributeError(name)
        self.apply()
        return getattr(self.sketch, name)


def balance_mismatch(features: Any) -> np.ndarray | None:
    """Events whose origin balance does not add up although the account had funds: PaySim's own quirks
    keep this rare on genuine traffic, so a jump means corrupted bookkeeping upstream."""
    num = features.numeric
    if "errorBalanceOrig" not in num or "oldbalanceOrg" not in num:
        return None
    return (np.abs(num["errorBalanceOrig"]) > 0.01) & (num["oldbalanceOrg"] > 0)


def typed_decoder(spec: Any) -> TypedDecoder | None:
    """The columnar decoder of ``spec``'s transactions: its required fields with their JSON types, the
    transaction_id (de-duplication's key) and the event time optional. ``None`` when the spec names
    another id column (de-duplication reads transaction_id; such a stream takes the general path)."""
    if spec.id not in (None, "transaction_id"):
        return None
    strings = [f for f in spec.required_fields if f in spec.category_map or f in spec.categorical]
    numeric = [f for f in spec.required_fields if f not in strings]
    optional_numeric = [spec.event_time] if spec.event_time and spec.event_time not in spec.required_fields else []
    optional_strings = ["transaction_id"] if "transaction_id" not in spec.required_fields else []
    return TypedDecoder(numeric, strings, optional_numeric, optional_strings)


class _Originals:
    """The original record of a transaction, for its dead letter, when the batch was decoded into columns:
    its message parsed again (once) with orjson, as :func:`streams.decode.decode_messages` gives it."""

    def __init__(self, values: list[bytes]) -> None:
        self.values = values
        self._docs: dict[int, Any] = {}

    def record(self, origin: int, item: int | None) -> Any:
        doc = self._docs.get(origin)
        if doc is None:
            doc = self._docs[origin] = orjson.loads(self.values[origin])
        return doc if item is None else doc[item]


_STR = {str}
_FLOAT = {float}
_GET_ID = itemgetter("transaction_id")
_MSG_ATTRS = tuple(map(attrgetter, ("key", "partition", "offset", "timestamp", "value")))


def _dumped(values: list) -> list[bytes]:
    """``[orjson.dumps(v) for v in values]``, in one call when no encoded value holds a comma (numbers,
    null, most ids): orjson writes a list's items exactly as it writes each alone."""
    whole = orjson.dumps(values)
    parts = whole[1:-1].split(b",")
    return parts if len(parts) == len(values) else list(map(orjson.dumps, values))


def encode_scores(tids: list, prob: list, label: list, origin: list[int], item: list, lat_ms: list,
                  part: list[int], off: list[int], threshold: float, version: str, now: float,
                  firsts: list[int] | None = None) -> list[bytes]:
    """The score messages of a batch: for each run of rows from one message (``origin[j]`` is row
    ``j``'s message index), the score object of a single-transaction message (``item`` None), or the
    array of score objects of an envelope. Each object is exactly ``orjson.dumps`` of
    ``{"transaction_id", "fraud_probability", "fraud_label", "threshold", "model_version", "latency_ms",
    "partition", "offset", "item", "scored_at"}`` (tests/test_pipeline_fastpath.py checks byte equality),
    but built from each column encoded once and joined in C, not from a dict per event (~1 us an event).
    ``lat_ms``, ``part``, ``off`` are per message; ``firsts``, if given, the first row of each run.

    >>> encode_scores(["t1", "t2", "t3"], [0.25, 0.5, 1.0], [0, 1, 1], [0, 1, 1], [None, 0, 2], [1.5, None],
    ...               [3, 3], [41, 42], 0.5, "v1", 7.0)[1]
    b'[{"transaction_id":"t2","fraud_probability":0.5,"fraud_label":1,"threshold":0.5,"model_version":"v1","latency_ms":null,"partition":3,"offset":42,"item":0,"scored_at":7.0},{"transaction_id":"t3","fraud_probability":1.0,"fraud_label":1,"threshold":0.5,"model_version":"v1","latency_ms":null,"partition":3,"offset":42,"item":2,"scored_at":7.0}]'
    """
    n = len(prob)
    if not n:
        return []
    dumps = orjson.dumps
    start, prob_key = b'{"transaction_id":', b',"fraud_probability":'
    mid = b',"threshold":' + dumps(threshold) + b',"model_version":' + dumps(version) + b',"latency_ms":'
    by_label = (b',"fraud_label":0' + mid, b',"fraud_label":1' + mid)
    lat_b, part_b, off_b = _dumped(lat_ms), _dumped(part), _dumped(off)
    end = b',"scored_at":' + dumps(now) + b"}"
    if item.count(None) == n:   # single-transaction messages: one object each, one join each
        return list(map(b"".join, zip(repeat(start), _dumped(tids), repeat(prob_key), _dumped(prob),
                                      map(by_label.__getitem__, label), map(lat_b.__getitem__, origin),
                                      repeat(b',"partition":'), map(part_b.__getitem__, origin),
                                      repeat(b',"offset":'), map(off_b.__getitem__, origin),
                                      repeat(b',"item":null' + end))))
    per_msg = list(map(b"".join, zip(lat_b, repeat(b',"partition":'), part_b, repeat(b',"offset":'), off_b,
                                     repeat(b',"item":'))))
    # envelopes: the pieces of every row interleaved in one list (slice assignments, C), one join a message
    rows = [end + b"," + start] * (7 * n)
    rows[0::7] = _dumped(tids)
    rows[1::7] = [prob_key] * n
    rows[2::7] = _dumped(prob)
    rows[3::7] = map(by_label.__getitem__, label)
    rows[4::7] = map(per_msg.__getitem__, origin)
    rows[5::7] = _dumped(item)
    close = end + b"]"
    if firsts is None:
        firsts = [0] + [j for j in range(1, n) if origin[j] != origin[j - 1]]
    out = []
    for a, b in zip(firsts, firsts[1:] + [n]):
        if item[a] is None:
            out.append(start + b"".join(rows[7 * a:7 * b - 1]) + end)
        else:
            out.append(b"[" + start + b"".join(rows[7 * a:7 * b - 1]) + close)
    return out


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
