"""The window stage: each scored micro-batch into its partitions' offset-aligned drift windows.

Events go into the window their offset belongs to (:mod:`streams.windows`), in offset order, so a window
boundary inside a batch is crossed exactly once; a window that closes ships its partial (with the labels
its partition joined meanwhile, and the contribution sums of its attribution sample: the
``ceil(attribution_sample / partitions)`` events of smallest position hash, explained with exact TreeSHAP
when the partial ships) to ``drift.partials``. The timer closes windows that went quiet and sends
progress heartbeats; a model reload ships the open windows first; a revoked partition's window is dropped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from breeboost.rejections import Rejection
from breeboost.settings import Settings
from detectors.freshness import lag_clock
from detectors.records import DriftPartial, encode_partial
from models.explain import Explainer, explain_samples
from streams.buffered import BufferedSketch
from streams.labels import LabelJoin
from streams.model import ModelHolder
from streams.records import PARTIALS_KEY, Outcome, Record
from streams.windows import PartitionWindows, window_messages

__all__ = ["ScoredEvents", "WindowStage", "balance_mismatch"]


@dataclass
class ScoredEvents:
    """What the window stage reads of a micro-batch: each scored transaction's message index
    (``origins``), features, probability and event time; the rejections; each message's partition and
    offset; the processing time; each scored transaction's envelope item (``None``: a message of its own;
    the attribution sample's key)."""
    origins: np.ndarray
    features: Any
    probability: np.ndarray | None
    event_times: np.ndarray | None
    rejections: list[Rejection]
    partitions: np.ndarray
    offsets: np.ndarray
    now: float
    items: list = field(default_factory=list)


class WindowStage:
    """The open window of every partition this worker holds (see the module docstring)."""

    def __init__(self, model: ModelHolder, settings: Settings, labels: LabelJoin, metrics: Any,
                 sketch_buffer: int = 4096) -> None:
        from detectors.binned_window import BinnedWindowSketch

        if sketch_buffer < 1:
            raise ValueError(f"sketch_buffer must be >= 1, got {sketch_buffer}")
        self.model = model
        self.settings = settings
        self.labels = labels
        self.metrics = metrics
        self.sketch_buffer = sketch_buffer
        # the window sketch plus its binned scores (the label-free estimate's input, #16)
        self._sketch_cls = BinnedWindowSketch
        self.clock = lag_clock(settings.freshness_clock)     # what event-time lags are measured against
        self.windows = self._new_windows()
        model.subscribe(self._on_reload)

    def _new_windows(self) -> PartitionWindows:
        compiled, threshold = self.model.compiled, self.model.scorer.threshold
        size = window_messages(self.settings.window_size, self.settings.partitions)
        sample = window_messages(self.settings.attribution_sample, self.settings.partitions) \
            if self.settings.attribution_sample else 0
        explainer = Explainer.of(self.model.scorer) if sample else None
        self.sampling = bool(sample)
        return PartitionWindows(
            lambda: BufferedSketch(self._sketch_cls(compiled, threshold=threshold), self.sketch_buffer, sample,
                                   explainer),
            size, self.settings.topic_transactions, self.model.version)

    def _on_reload(self) -> list[Record]:
        flushed = [(PARTIALS_KEY, encode_partial(p)) for p in _with_attribution(self.windows.flush())]
        self.windows = self._new_windows()
        return flushed

    @property
    def size(self) -> int:
        return self.windows.size

    @property
    def open(self) -> dict:
        """partition -> its open :class:`streams.windows.PartitionWindow`."""
        return self.windows.open

    def add(self, events: ScoredEvents, out: Outcome) -> None:
        """Add the batch's scored and dead-lettered events to their windows; closed windows go to ``out``."""
        rejections = events.rejections
        rej_origin = np.fromiter((r.message for r in rejections), dtype=np.int64, count=len(rejections))
        origin = np.concatenate([events.origins, rej_origin])
        if origin.size == 0:
            return
        n_acc = events.origins.size
        is_rej = np.concatenate([np.zeros(n_acc, bool), np.ones(rej_origin.size, bool)])
        parts, offs = events.partitions[origin], events.offsets[origin]
        order = np.lexsort((offs, parts))
        key_p, key_w = parts[order], offs[order] // self.windows.size
        brk = np.flatnonzero((np.diff(key_p) != 0) | (np.diff(key_w) != 0)) + 1
        lags = None if events.event_times is None else \
            self.clock.lags(events.partitions[events.origins], events.event_times, events.now)
        mismatch = balance_mismatch(events.features) if n_acc else None
        items = _item_array(events.items) if n_acc and self.sampling else None
        shipped: list[DriftPartial] = []
        for chunk in np.split(order, brk):
            partition = int(parts[chunk[0]])
            w = self.windows.window(partition, int(offs[chunk].min()), events.now, shipped)
            w.last_offset = max(w.last_offset, int(offs[chunk].max()))
            acc = chunk[~is_rej[chunk]]
            if acc.size:
                self._add_scored(w.sketch, events, acc, lags, mismatch, partition)
                if items is not None:
                    w.sketch.offer(offs[acc], items[acc], events.features.matrix(), acc, partition)
            rej = chunk[is_rej[chunk]] - n_acc
            if rej.size:
                self._add_rejected(w.sketch, [rejections[i] for i in rej.tolist()], partition)
        self._ship(shipped, out)

    @staticmethod
    def _add_scored(sketch: Any, events: ScoredEvents, acc: np.ndarray, lags: np.ndarray | None,
                    mismatch: np.ndarray | None, partition: int) -> None:
        feats, times = events.features, events.event_times
        sketch.update_batch({k: v[acc] for k, v in feats.numeric.items()},
                            {k: v[acc] for k, v in feats.categorical.items()},
                            events.probability[acc], None if lags is None else lags[acc],
                            event_times=None if times is None else times[acc],
                            balance_mismatch=None if mismatch is None else mismatch[acc], partition=partition)

    @staticmethod
    def _add_rejected(sketch: Any, rejections: list[Rejection], partition: int) -> None:
        reasons: dict[str, int] = {}
        missing: dict[str, int] = {}
        for r in rejections:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
            if r.reason == "missing_field" and r.field:
                missing[r.field] = missing.get(r.field, 0) + 1
        sketch.add_rejects(reasons, missing, len(rejections), partition=partition)

    def _ship(self, shipped: list[DriftPartial], out: Outcome) -> None:
        for partial in _with_attribution(shipped):
            partial.labels = self.labels.take(partial.partition)
            out.partials.append((PARTIALS_KEY, encode_partial(partial)))
        if shipped:
            self.metrics.partials_sent.inc(len(shipped))

    def tick(self, now: float | None = None, caught_up: Callable[[int, int], bool] | None = None,
             assigned: Iterable[int] = (), has_backlog: Callable[[int], bool] | None = None) -> Outcome:
        """Ship the windows of partitions that went quiet (Faust's window close needs a later event), and
        progress heartbeats. ``caught_up(partition, last_offset) -> bool``: see
        :meth:`PartitionWindows.idle`; ``assigned``/``has_backlog``: see :meth:`PartitionWindows.heartbeats`."""
        out = Outcome()
        now = time.time() if now is None else now
        self._ship(self.windows.idle(now, self.settings.window_idle_s, caught_up), out)
        out.partials += [(PARTIALS_KEY, encode_partial(h)) for h in self.windows.heartbeats(now, assigned, has_backlog)]
        return out

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the open windows of revoked partitions (their new owner rebuilds them from the commit)."""
        self.windows.drop(set(partitions))
        self.clock.forget(partitions)


def _with_attribution(partials: list[DriftPartial]) -> list[DriftPartial]:
    """The partials with their samples' contribution sums in their own field, the samples explained in one
    call per model (:func:`models.explain.explain_samples`)."""
    sketches = [(p, p.sketch.pop("attribution", None)) for p in partials]
    by_model: dict[int, list] = {}
    for _, sk in sketches:
        if sk is not None:
            by_model.setdefault(id(sk.explainer), []).append(sk)
    for group in by_model.values():
        explain_samples(group[0].explainer, [sk.sample for sk in group])
    for p, sk in sketches:
        p.attribution = None if sk is None else sk.attribution()
    return partials


def _item_array(items: list) -> np.ndarray:
    """Envelope items as int64, -1 for a message of its own (None -> NaN -> -1, in C)."""
    singles = items.count(None)
    if singles == len(items):
        return np.full(len(items), -1, dtype=np.int64)
    if not singles:                     # envelopes only: ints straight
        return np.array(items, dtype=np.int64)
    return np.nan_to_num(np.array(items, dtype=np.float64), nan=-1.0).astype(np.int64)


def balance_mismatch(features: Any) -> np.ndarray | None:
    """Events whose origin balance does not add up although the account had funds: PaySim's own quirks
    keep this rare on genuine traffic, so a jump means corrupted bookkeeping upstream."""
    num = features.numeric
    if "errorBalanceOrig" not in num or "oldbalanceOrg" not in num:
        return None
    return (np.abs(num["errorBalanceOrig"]) > 0.01) & (num["oldbalanceOrg"] > 0)
