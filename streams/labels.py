"""The in-process label join: delayed ``labels`` matched to the scores this process made.

The worker joins labels at any worker count with :class:`streams.label_join.LabelJoiner` (labels and the
routed ``scores.by_id``, co-partitioned); this class serves a single process that scored everything itself
(tools, tests, the differential oracle): outcomes ``joined``, ``unknown`` (no recent score for the id) and
``malformed`` (not a label), in the same ``breeboost_labels_total{outcome}`` counter.

A label ``{"transaction_id", "isFraud", ...}`` is looked up in :class:`streams.recent.RecentTransactions`
(what the scoring stage scored); its confusion counts, Brier and absolute error are kept per input
partition and travel with that partition's next window partial (:meth:`LabelJoin.take`), so the merged
window's ``concept`` section counts the labels that arrived while it was open.
"""
from __future__ import annotations

from typing import Any

import orjson

from detectors.records import LabelCounts
from streams.recent import RecentTransactions
from streams.records import Message

__all__ = ["LabelJoin"]


class LabelJoin:
    """Join labels to recent scores; ``metrics`` a :class:`streams.metrics.WorkerMetrics`.

    >>> import numpy as np
    >>> from prometheus_client import CollectorRegistry
    >>> from streams.metrics import WorkerMetrics
    >>> from streams.records import Msg
    >>> recent = RecentTransactions(10)
    >>> recent.set_scores(recent.add_batch(["t1"], [2], [7], [0]), np.array([0.9]), np.array([1]))
    >>> join = LabelJoin(recent, WorkerMetrics(CollectorRegistry()))
    >>> join.join([Msg("labels", 0, 0, b'{"transaction_id": "t1", "isFraud": 1}'), Msg("labels", 0, 1, b'{}')])
    (1, 1)
    >>> join.take(2).tp, join.take(2)
    (1, None)
    """

    def __init__(self, recent: RecentTransactions, metrics: Any) -> None:
        self.recent = recent
        self.metrics = metrics
        self._counts: dict[int, LabelCounts] = {}   # input partition -> counts since its last partial

    def join(self, messages: list[Message]) -> tuple[int, int]:
        """Join a micro-batch of label messages; returns ``(joined, not joined)``."""
        recent = self.recent
        joined = missed = malformed = 0
        for m in messages:
            try:
                doc = orjson.loads(m.value)
                tid, y = doc["transaction_id"], int(doc["isFraud"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                malformed += 1
                continue
            hit = recent.score(tid)
            if hit is None:
                missed += 1
                continue
            prob, pred, partition = hit
            c = self._counts.get(partition)
            if c is None:
                c = self._counts[partition] = LabelCounts()
            c.add(y, prob, pred)
            joined += 1
        self.metrics.labels_joined.labels("joined").inc(joined)
        self.metrics.labels_joined.labels("unknown").inc(missed)
        if malformed:
            self.metrics.labels_joined.labels("malformed").inc(malformed)
        return joined, missed + malformed

    def take(self, partition: int) -> LabelCounts | None:
        """The counts of ``partition`` since the last call (``None``: no label), for its next partial."""
        return self._counts.pop(partition, None)

    @property
    def pending(self) -> dict[int, LabelCounts]:
        """The counts not yet shipped, by partition (read-only view for tests and the oracle)."""
        return dict(self._counts)
