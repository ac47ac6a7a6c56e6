"""The label join at any worker count: ``labels`` joined to the routed scores of ``scores.by_id``.

Both topics are partitioned by ``transaction_id`` (labels by their producer's key, the routed scores by
:class:`streams.label_route.ScoreRoute`), and the label agent reads them co-partitioned: labels partition
``p`` and scores.by_id partition ``p`` go to the same worker, so a label meets its score wherever the
transaction was scored. :class:`LabelJoiner` keeps, per labels partition, the scores waiting for their labels
and the labels that came first (:mod:`streams.label_pending`), and counts each label once by outcome in
``breeboost_labels_total{outcome}``:

- ``joined``: matched its score (counted in the partition's :class:`detectors.records.LabelCounts` of the
  model version that scored it, shipped as a :class:`detectors.records.LabelPartial` of that version to
  drift.partials for the next window's ``concept`` section: a window counts its own model's labels only;
  a transaction the challenger also scored in shadow is counted for both, and again in one
  :class:`detectors.records.PairedLabels` of that champion and challenger: both models on the same rows,
  the window's ``shadow`` section);
- ``duplicate``: a second label for a transaction (joined already, or a label held already);
- ``malformed``: not a label (dead-lettered to ``labels_dlq_topic`` with reason ``label_invalid_json`` or
  ``label_invalid``);
- ``late_beyond_horizon``: its ``event_time`` is older than the horizon (stream time) and its score is gone;
- ``expired``: its score was dropped by the count bound of the horizon before the label came;
- ``unknown``: no score came for it within ``label_wait_s`` of its arrival (never scored, dead-lettered,
  or a label without ``event_time`` whose score is beyond the horizon).

>>> import numpy as np, orjson
>>> from prometheus_client import CollectorRegistry
>>> from breeboost.settings import Settings
>>> from streams.label_route import RoutedScores, encode_routed
>>> from streams.metrics import WorkerMetrics
>>> from streams.records import Msg
>>> join = LabelJoiner(Settings.from_env({}), WorkerMetrics(CollectorRegistry()))
>>> routed = RoutedScores(["t1", "t2"], np.array([-0.9, 0.2]).tobytes(), [3], 5.0, 6.0, 7.0)
>>> scores = Msg("scores.by_id", 0, 0, encode_routed(routed))
>>> label = lambda tid, y, o: Msg("labels", 0, o, orjson.dumps({"transaction_id": tid, "isFraud": y}), timestamp=8.0)
>>> out = join.join([label("t3", 0, 0), scores, label("t1", 1, 1), label("t1", 1, 2), Msg("labels", 0, 3, b"{")])
>>> out.outcomes, len(out.dead_letters), join.counts[0][""].tp     # "": the record named no model
({'joined': 1, 'duplicate': 1, 'malformed': 1}, 1, 1)
>>> join.expire(now=1000.0), [type(r).__name__ for r in join.take_partials(now=1000.0)]
({'unknown': 1}, ['LabelPartial'])
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec
import orjson

from breeboost.logs import log
from breeboost.settings import Settings
from detectors.records import LabelCounts, LabelPartial, PairedLabels
from streams.decode import dlq_record
from streams.label_pending import EarlyLabels, PendingByModel
from streams.label_route import decode_routed
from streams.records import Message, Record

__all__ = ["JoinOutcome", "LabelJoiner", "OUTCOMES", "parse_labels"]

_log = logging.getLogger("breeboost.labels")

#: Every outcome of a label, in the order of the docs.
OUTCOMES = ("joined", "unknown", "expired", "duplicate", "malformed", "late_beyond_horizon")

#: How many labels one labels partition holds while they wait for their scores.
EARLY_LABELS = 200_000


@dataclass
class JoinOutcome:
    """What one micro-batch of the label agent produced: the dead letters of malformed labels (with the
    labels partition each came from) and the outcomes counted."""
    dead_letters: list[Record] = field(default_factory=list)
    dead_letter_partitions: list[int] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)     # each dead letter's reason code


@dataclass
class _Partition:
    scores: PendingByModel
    early: EarlyLabels
    counts: dict[str, LabelCounts] = field(default_factory=dict)   # by the model version that scored
    # challenger version -> the champion it was scored in shadow beside (from the routed records)
    shadow_of: dict[str, str] = field(default_factory=dict)
    # (champion, challenger) -> both models' counts on the labels both scored
    paired: dict[tuple[str, str], tuple[LabelCounts, LabelCounts]] = field(default_factory=dict)

    def count(self, label: int, hits: list[tuple[str, float, int]]) -> None:
        for version, probability, predicted in hits:
            c = self.counts.get(version)
            if c is None:
                c = self.counts[version] = LabelCounts()
            c.add(label, probability, predicted)
        if len(hits) > 1 and self.shadow_of:   # scored by a champion and, in shadow, by its challenger
            by_version = {v: (p, pred) for v, p, pred in hits}
            for challenger, (p, pred) in by_version.items():
                champion = self.shadow_of.get(challenger)
                if champion is None or champion not in by_version:
                    continue
                pair = self.paired.get((champion, challenger))
                if pair is None:
                    pair = self.paired[(champion, challenger)] = (LabelCounts(), LabelCounts())
                pair[0].add(label, *by_version[champion])
                pair[1].add(label, p, pred)


class _Bad(Exception):
    """A label that cannot be read: its reason code and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_labels(value: bytes | None) -> list[tuple[str, int, float | None] | _Bad]:
    """The labels of one message (an object, or an array of them): ``(transaction_id, isFraud 0/1,
    event_time or None)``, or a :class:`_Bad` for an item that is not a label.

    >>> parse_labels(b'[{"transaction_id": "a", "isFraud": true, "event_time": 5}, {"isFraud": 2}]')[0]
    ('a', 1, 5.0)
    """
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError as e:
        return [_Bad("label_invalid_json", f"not JSON: {e}")]
    items = doc if isinstance(doc, list) else [doc]
    out: list = []
    for d in items:
        if not isinstance(d, dict):
            out.append(_Bad("label_invalid", f"not a JSON object: {type(d).__name__}"))
            continue
        tid, y, t = d.get("transaction_id"), d.get("isFraud"), d.get("event_time")
        if type(tid) is not str or not tid:
            out.append(_Bad("label_invalid", "transaction_id is not a non-empty string"))
        elif y not in (0, 1) or type(y) not in (int, bool):
            out.append(_Bad("label_invalid", f"isFraud is not 0, 1, true or false: {y!r}"))
        elif t is not None and (type(t) not in (int, float) or t != t):
            out.append(_Bad("label_invalid", f"event_time is not a number: {t!r}"))
        else:
            out.append((tid, int(y), None if t is None else float(t)))
    return out


class LabelJoiner:
    """Join labels to routed scores per labels partition (see the module docstring). ``metrics``: a
    :class:`streams.metrics.WorkerMetrics` (its ``labels_joined`` counter)."""

    def __init__(self, settings: Settings, metrics: Any, early_labels: int = EARLY_LABELS) -> None:
        self.settings = settings
        self.metrics = metrics
        self.labels_topic = settings.topic_labels
        self.scores_topic = settings.scores_by_id
        self.early_labels = early_labels
        self.partitions: dict[int, _Partition] = {}

    def _state(self, partition: int) -> _Partition:
        st = self.partitions.get(partition)
        if st is None:
            s = self.settings
            st = self.partitions[partition] = _Partition(PendingByModel(s.label_horizon_s, s.label_horizon_count),
                                                         EarlyLabels(s.label_wait_s, self.early_labels))
        return st

    @property
    def counts(self) -> dict[int, dict[str, LabelCounts]]:
        """Joined label counts not yet shipped, by labels partition and model version (read-only view)."""
        return {p: dict(st.counts) for p, st in self.partitions.items() if st.counts}

    def pending(self) -> tuple[int, int]:
        """``(scores waiting for a label, labels waiting for a score)`` over the partitions held."""
        return (sum(len(st.scores) for st in self.partitions.values()),
                sum(len(st.early) for st in self.partitions.values()))

    # -- the micro-batch -------------------------------------------------------------------------
    def join(self, messages: list[Message], quiet: bool = False) -> JoinOutcome:
        """Join a micro-batch of ``labels`` and ``scores.by_id`` messages, in their order. ``quiet``: a
        re-read after assignment (:meth:`restore`): state is rebuilt, nothing is counted or dead-lettered."""
        out = JoinOutcome()
        tally: dict[str, int] = {}
        for m in messages:
            st = self._state(m.partition)
            if m.topic == self.scores_topic:
                self._add_scores(st, m, tally)
            else:
                self._add_labels(st, m, tally, out)
        if quiet:
            return JoinOutcome()
        out.outcomes = tally
        for outcome, n in tally.items():
            self.metrics.labels_joined.labels(outcome).inc(n)
        for reason in out.reasons:
            self.metrics.dead_letters.labels(reason).inc()
        return out

    def restore(self, partition: int, scores: list[Message], labels: list[Message]) -> dict:
        """Rebuild ``partition`` from a re-read of its routed scores and its labels before the committed
        offsets (scores first: a re-read label finds its score whatever the order they first came in).
        Labels joined then were counted by the worker that held the partition: here they only mark their
        ids joined. Returns a report."""
        self.partitions.pop(partition, None)
        st = self._state(partition)
        self.join(scores, quiet=True)
        self.join(labels, quiet=True)
        st.counts, st.paired = {}, {}  # nothing re-read is counted again
        return {"partition": partition, "scores_read": len(scores), "labels_read": len(labels),
                "scores_pending": len(st.scores), "labels_waiting": len(st.early)}

    def _add_scores(self, st: _Partition, m: Message, tally: dict[str, int]) -> None:
        try:
            rec = decode_routed(m.value or b"")
        except msgspec.DecodeError as e:
            log(_log, "bad routed scores skipped", level=logging.WARNING, partition=m.partition, offset=m.offset,
                error=str(e))
            return
        at = time.time() if m.timestamp is None else m.timestamp
        st.scores.add(rec.model_version, rec.ids, rec.values(), rec.event_time_min, rec.event_time_max, at)
        if rec.shadow_version and rec.shadow_scores:
            st.scores.add(rec.shadow_version, rec.ids, rec.shadow_values(), rec.event_time_min, rec.event_time_max, at)
            st.shadow_of[rec.shadow_version] = rec.model_version
        early = st.early
        if len(early):
            # from the smaller side: ~25k labels can wait on a partition behind a lagging scorer, and a
            # routed record holds one micro-batch's ids
            hits = (set(early.ids()).intersection(rec.ids) if len(early) < len(rec.ids)
                    else {tid for tid in rec.ids if tid in early})
            for tid in hits:
                self._joined(st, tid, early.pop(tid), tally)

    def _joined(self, st: _Partition, tid: str, label: int, tally: dict[str, int]) -> None:
        hits, _ = st.scores.take(tid)
        if hits:
            st.count(label, hits)
            tally["joined"] = tally.get("joined", 0) + 1
        else:   # pragma: no cover - an early label's id was not pending (it only waits while unknown)
            tally["duplicate"] = tally.get("duplicate", 0) + 1

    def _add_labels(self, st: _Partition, m: Message, tally: dict[str, int], out: JoinOutcome) -> None:
        scores, early = st.scores, st.early
        for item, parsed in enumerate(parse_labels(m.value)):
            if isinstance(parsed, _Bad):
                tally["malformed"] = tally.get("malformed", 0) + 1
                out.dead_letters.append((m.key, dlq_record(parsed.reason, str(parsed), m.value, m.topic, m.partition,
                                                           m.offset, item=item if item else None)))
                out.dead_letter_partitions.append(m.partition)
                out.reasons.append(parsed.reason)
                continue
            tid, y, t = parsed
            hits, joined_before = scores.take(tid)
            if hits:
                st.count(y, hits)
                why = "joined"
            elif joined_before or tid in early:
                why = "duplicate"
            else:
                why = scores.classify(t)
                if why is None:
                    early.add(tid, y, m.timestamp or time.time())
                    continue
            tally[why] = tally.get(why, 0) + 1

    # -- timers and the lifecycle ----------------------------------------------------------------
    def expire(self, now: float | None = None) -> dict[str, int]:
        """Count as ``unknown`` the labels that waited ``label_wait_s`` for a score in vain."""
        now = time.time() if now is None else now
        gone = sum(st.early.expire(now) for st in self.partitions.values())
        if gone:
            self.metrics.labels_joined.labels("unknown").inc(gone)
        return {"unknown": gone} if gone else {}

    def take_partials(self, now: float | None = None) -> list[LabelPartial | PairedLabels]:
        """The joined counts of every partition since the last call, as label partials and, for a challenger
        in shadow, paired-label records (then reset)."""
        now = time.time() if now is None else now
        out = []
        for p, st in sorted(self.partitions.items()):
            for version, counts in sorted(st.counts.items()):
                out.append(LabelPartial(self.labels_topic, p, counts, now, model_version=version))
            for (champion, challenger), (a, b) in sorted(st.paired.items()):
                out.append(PairedLabels(self.labels_topic, p, champion, challenger, a, b, now))
            st.counts, st.paired = {}, {}
        return out

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the state of revoked partitions (their new owner rebuilds it from the topics)."""
        for p in partitions:
            self.partitions.pop(p, None)
