"""The scoring stage: a micro-batch of ``transactions`` messages in, what to publish out.

Decode (:class:`streams.columns.BatchDecoder`: one column batch whatever the path), de-duplicate by
``transaction_id`` (:class:`streams.recent.RecentTransactions`), validate (:func:`models.validation.
validate_pulled`), score (the model's ``score_columns``), encode one score message per transaction
message (:func:`streams.encode.encode_scores`), and dead-letter every event that cannot be scored with
its :class:`breeboost.rejections.Rejection` (an envelope of mostly bad items once, whole: see
:mod:`streams.envelopes`). Every event that enters leaves as exactly one score or one
dead letter (per delivery), which :mod:`streams.audit` checks from the topics. The batch then goes to the
window stage.

Reason codes (``settings.reasons``, default ``flagged``): the rows that get them
(:func:`models.explain.select_rows`: a few per thousand at PaySim's fraud rate) are explained in one
``pred_contribs`` call per batch (:class:`models.explain.Explainer`), and only their score objects change.

Shadow (``settings.shadow``, #18): while the model registry has a challenger, it scores the same accepted
rows of the same decoded batch (:attr:`streams.model.ModelHolder.shadow`); its score messages go to
``scores.shadow`` (same shape, its version and threshold), and its scores travel beside the champion's in
the routed records, so the label join counts both models on the same labelled transactions.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from breeboost.logs import log
from breeboost.rejections import Rejection, count_reasons
from breeboost.settings import Settings
from models.explain import Explainer, select_rows
from models.validation import validate_pulled
from streams.columns import BatchDecoder, ColumnBatch
from streams.decode import dlq_record
from streams.encode import encode_reasons, encode_scores
from streams.envelopes import collapse, malformed_envelopes
from streams.label_route import NO_ROUTE, ScoreRoute
from streams.metrics import WorkerMetrics, observe_many
from streams.model import ModelHolder
from streams.recent import RecentTransactions
from streams.records import Message, Outcome
from streams.windowing import ScoredEvents, WindowStage

__all__ = ["MessageColumns", "ScoringStage"]

_log = logging.getLogger("breeboost.pipeline")

_STR = {str}
_FLOAT = {float}
_MSG_ATTRS = tuple(map(attrgetter, ("key", "partition", "offset", "timestamp", "value")))


@dataclass
class MessageColumns:
    """The Kafka attributes of a micro-batch's messages, read once (Faust's Message attributes are not free)."""
    keys: list
    partitions: list[int]
    offsets: list[int]
    timestamps: list
    values: list

    @classmethod
    def of(cls, messages: list[Message]) -> "MessageColumns":
        return cls(*[list(map(g, messages)) for g in _MSG_ATTRS])


class ScoringStage:
    """Score micro-batches (see the module docstring). ``recent`` is shared with the label join."""

    def __init__(self, model: ModelHolder, settings: Settings, windows: WindowStage, recent: RecentTransactions,
                 metrics: WorkerMetrics, route: ScoreRoute = NO_ROUTE) -> None:
        self.model = model
        self.route = route       # each batch's scores repartitioned by transaction_id, for the label join
        self.settings = settings
        self.windows = windows
        self.recent = recent
        self.metrics = metrics
        self._quiet = WorkerMetrics(CollectorRegistry())   # replays are counted by the worker that scored them
        self._on_reload()
        model.subscribe(self._on_reload)

    def _on_reload(self) -> list:
        self.decoder = BatchDecoder(self.model.spec, self.settings.max_message_bytes, self.settings.max_envelope_items)
        self.explainer = Explainer.of(self.model.scorer, self.settings.reasons_k)
        return []

    def process(self, messages: list[Message], now: float | None = None, replay: bool = False) -> Outcome:
        """Score ``messages``; ``replay``: events re-read to rebuild a window, not counted in the metrics
        (their outputs were published by the worker that scored them; the caller drops them)."""
        t0 = time.perf_counter()
        now = time.time() if now is None else now
        metrics = self._quiet if replay else self.metrics
        out = Outcome()
        msgs = MessageColumns.of(messages)
        batch = self.decoder.decode(msgs.values)
        rejections = list(batch.rejections)
        seqs = self._dedup(batch, msgs, rejections)
        validated = validate_pulled(batch.columns, self.model.spec)
        ids = batch.columns["transaction_id"]
        for rej in validated.rejects:
            tid = ids[rej.position]
            rejections.append(Rejection(batch.origins[rej.position], batch.items[rej.position], rej.reason,
                                        rej.detail, tid if isinstance(tid, str) else None,
                                        batch.record(rej.position), rej.field))
        accepted, columns = np.asarray(validated.accepted, dtype=np.int64), validated.columns
        in_order = not validated.rejects            # every record accepted, in order
        bad = malformed_envelopes(np.asarray(batch.origins, dtype=np.int64)[accepted], rejections) if rejections else ()
        if bad:
            rejections, stay = collapse(bad, rejections, np.asarray(batch.origins, dtype=np.int64)[accepted])
            accepted, columns, in_order = accepted[stay], {k: v[stay] for k, v in columns.items()}, False
        events = self._score(batch, columns, accepted, in_order, seqs, msgs, now, out, metrics)
        self._dead_letter(messages, rejections, out)
        events.rejections = rejections
        self.windows.add(events, out)
        self._count(metrics, out, events, rejections, msgs, now, t0)
        return out

    def _score(self, batch: ColumnBatch, columns: dict, accepted: np.ndarray, in_order: bool, seqs: np.ndarray,
               msgs: MessageColumns, now: float, out: Outcome, metrics: WorkerMetrics) -> ScoredEvents:
        """Score the ``accepted`` rows (``columns``: theirs; ``in_order``: every row of the batch, in order)."""
        events = ScoredEvents(np.empty(0, np.int64), None, None, None, [],
                              np.asarray(msgs.partitions, dtype=np.int64), np.asarray(msgs.offsets, dtype=np.int64), now)
        if not accepted.size:
            return events
        scorer = self.model.scorer     # one model for the whole batch (a reload runs between batches)
        scored = scorer.score_columns(columns)
        prob = np.asarray(scored.probability, dtype=np.float64)
        label = np.asarray(scored.label, dtype=np.int64)
        if in_order:
            acc_origin, acc_item = np.asarray(batch.origins, dtype=np.int64), batch.items
        else:
            acc_origin = np.asarray(batch.origins, dtype=np.int64)[accepted]
            acc_item = [batch.items[i] for i in accepted.tolist()]
        self.recent.set_scores(seqs if in_order else seqs[accepted], prob, label)
        shadow = None if metrics is not self.metrics else self._shadow(columns)   # a replay's were published
        self._score_records(columns, prob, label, acc_origin, acc_item, msgs, now, out,
                            self._reasons(scored.features, prob, label), shadow)
        et_col = self.model.spec.event_time
        times = np.asarray(columns[et_col], dtype=np.float64) if et_col and et_col in columns else None
        events.origins, events.features, events.probability, events.event_times = acc_origin, scored.features, prob, times
        id_col = self.model.spec.id
        if metrics is self.metrics and id_col and id_col in columns:   # a replay's scores were routed already
            self.route.add(columns[id_col].tolist(), prob, label, msgs.partitions, now, times, scorer.version,
                           None if shadow is None else (shadow[0].version, shadow[1], shadow[2]))
        events.items = acc_item
        metrics.predicted_fraud.inc(int(label.sum()))
        return events

    def _dedup(self, batch: ColumnBatch, msgs: MessageColumns, rejections: list[Rejection]) -> np.ndarray:
        """Dead-letter records whose transaction_id was seen at another position (dropping them from
        ``batch``); returns each kept record's entry in :class:`RecentTransactions` (-1 without a string
        id), where its score goes for the label join. The common case, a batch of new distinct string ids,
        takes C-level passes only.

        Where an id was first seen is ``(partition, offset, item)``, or in the common case just
        ``(partition, offset)``. The short form is exact: it is only stored when every id of the batch is
        distinct, so the id occurs once in that message, and a message at a given offset never changes;
        seeing the id again in the same message is therefore seeing the same record again (a
        redelivery), never a duplicate."""
        recent, ids = self.recent, batch.columns["transaction_id"]
        part_l, off_l = msgs.partitions, msgs.offsets
        if ids and set(map(type, ids)) == _STR and len(set(ids)) == len(ids) and recent.isdisjoint(ids):
            return recent.add_batch(ids, part_l, off_l, batch.origins)
        keep: list[int] = []
        seqs: list[int] = []
        for j, (tid, origin, item) in enumerate(zip(ids, batch.origins, batch.items)):
            seq = -1
            if type(tid) is str:
                where = (part_l[origin], off_l[origin], item)
                seq, prev = recent.find(tid)
                if prev is not None and prev != where and prev != where[:2]:
                    rejections.append(Rejection(origin, item, "duplicate_id",
                                                f"transaction_id {tid!r} already seen at partition {prev[0]} "
                                                f"offset {prev[1]}", tid, batch.record(j)))
                    continue
                if prev is None:
                    seq = recent.add(tid, *where)
            keep.append(j)
            seqs.append(seq)
        if len(keep) != len(ids):
            batch.keep(keep)
        return np.array(seqs, dtype=np.int64)

    def _shadow(self, columns: dict) -> tuple[Any, np.ndarray, np.ndarray] | None:
        """The challenger's ``(scorer, probability, label)`` of the accepted rows (``None``: no shadow). A
        challenger that cannot score them is dropped (logged): the champion's scores go on regardless."""
        shadow = self.model.shadow
        if shadow is None:
            return None
        try:
            scored = shadow.score_columns(columns)
        except Exception as e:   # noqa: BLE001 - the shadow must never cost the champion's scores
            log(_log, "shadow model failed: shadow scoring stopped", level=logging.WARNING, version=shadow.version,
                error=repr(e))
            self.model.set_shadow(None)
            return None
        self.metrics.shadow_scored.inc(len(scored.probability))
        return (shadow, np.asarray(scored.probability, dtype=np.float64), np.asarray(scored.label, dtype=np.int64))

    def _reasons(self, features: Any, prob: np.ndarray, label: np.ndarray) -> dict[int, bytes] | None:
        """The encoded reasons of the rows ``settings.reasons`` selects (``None``: no row)."""
        s = self.settings
        if s.reasons == "none":
            return None
        rows = select_rows(s.reasons, prob, label, s.review_threshold)
        if not rows.size:
            return None
        r = self.explainer.reasons(features, rows)
        return encode_reasons(r.rows.tolist(), r.encoded(), r.base_value.tolist())

    def _score_records(self, columns: dict, prob: np.ndarray, label: np.ndarray, acc_origin: np.ndarray,
                       acc_item: list, msgs: MessageColumns, now: float, out: Outcome,
                       reasons: dict[int, bytes] | None = None, shadow: tuple | None = None) -> None:
        """One score message per transaction message, one array of scores per envelope. No per-event
        dict: see :func:`streams.encode.encode_scores` (``reasons``: row -> its encoded reasons). ``shadow``:
        the challenger's ``(scorer, probability, label)``, encoded the same way for ``scores.shadow``."""
        n = prob.size
        spec, scorer = self.model.spec, self.model.scorer
        id_col = columns.get(spec.id) if spec.id else None
        if id_col is None:
            tids = [None] * n
        else:
            tids = id_col.tolist()
            if set(map(type, tids)) != _STR:
                tids = [t if t is None or type(t) is str else str(t) for t in tids]
        prob_l, label_l, origin_l = prob.tolist(), label.tolist(), acc_origin.tolist()
        ts_l = msgs.timestamps
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
        messages = encode_scores(tids, prob_l, label_l, origin_l, acc_item, lat_l, msgs.partitions, msgs.offsets,
                                 float(scorer.threshold), scorer.version, now, firsts, reasons)
        out.scores += zip(map(msgs.keys.__getitem__, msg_origin), messages)
        out.score_partitions += map(msgs.partitions.__getitem__, msg_origin)
        if shadow is not None:
            challenger, s_prob, s_label = shadow
            messages = encode_scores(tids, s_prob.tolist(), s_label.tolist(), origin_l, acc_item, lat_l, msgs.partitions,
                                     msgs.offsets, float(challenger.threshold), challenger.version, now, firsts, None)
            out.shadow_scores += zip(map(msgs.keys.__getitem__, msg_origin), messages)
            out.shadow_partitions += map(msgs.partitions.__getitem__, msg_origin)

    @staticmethod
    def _dead_letter(messages: list[Message], rejections: list[Rejection], out: Outcome) -> None:
        """One dead letter per rejection: the whole message's bytes, or the envelope item re-encoded."""
        for r in rejections:
            m = messages[r.message]
            raw = m.value if r.item is None else None
            out.dead_letters.append((m.key, dlq_record(r.reason, r.detail, raw, m.topic, m.partition, m.offset,
                                                       transaction_id=r.transaction_id, item=r.item,
                                                       record=r.record if raw is None else None)))
            out.dead_letter_partitions.append(m.partition)
        out.reasons = count_reasons(rejections)

    @staticmethod
    def _count(metrics: WorkerMetrics, out: Outcome, events: ScoredEvents, rejections: list[Rejection],
               msgs: MessageColumns, now: float, t0: float) -> None:
        n_ok = int(events.origins.size)
        metrics.events.labels("scored").inc(n_ok)
        if rejections:
            metrics.events.labels("dead_lettered").inc(len(rejections))
            for reason, c in out.reasons.items():
                metrics.dead_letters.labels(reason).inc(c)
        metrics.batch_size.observe(n_ok + len(rejections))
        metrics.batch_seconds.observe(time.perf_counter() - t0)
        ts_l = msgs.timestamps
        ts = np.array(ts_l) if set(map(type, ts_l)) == _FLOAT else np.asarray([t or 0.0 for t in ts_l], np.float64)
        observe_many(metrics.event_latency, np.maximum(0.0, now - ts[ts > 0]))
