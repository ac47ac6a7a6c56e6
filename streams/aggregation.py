"""The drift aggregator: window partials of every partition merged into one ``drift.stats`` record.

:class:`streams.gate.WindowGate` decides when a window is whole; :class:`DriftAggregator` merges its
partials' sketches (exact: the merged sketch is the sketch of the union) and their attribution sums (added)
with the reference profile of the model that scored them, computes the statistics
(:func:`detectors.stats.window_statistics`, with the ``attribution`` section) and encodes the record. One key per input stream: every window lands in one partition of ``drift.stats``, so consumers (the
incident agent) read windows in index order.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from breeboost.logs import log
from breeboost.settings import Settings
from detectors.health import shadow_comparison
from detectors.records import (DriftPartial, LabelCounts, LabelPartial, PairedLabels, RecordError, decode_partial,
                               encode_stats)
from streams.gate import ClosedWindow, WindowGate
from streams.model import ModelHolder
from streams.records import Record

__all__ = ["DriftAggregator", "AttributionGauges"]

_log = logging.getLogger("breeboost.pipeline")


class AttributionGauges:
    """The attribution of the last closed window as gauges (next to ``breeboost_feature_psi``): each
    feature's mean |contribution| and its change against the training slice, and the score's change, all in
    log-odds. One set per registry (:meth:`of`), registered at the first window with attribution (a worker
    without the sample exports none)."""

    _by_registry: "weakref.WeakKeyDictionary[CollectorRegistry, AttributionGauges]" = weakref.WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.mean_abs = Gauge("breeboost_feature_attribution",
                              "Mean |exact TreeSHAP contribution| of each feature to the score (log-odds) on the "
                              "sample of the last closed window", ["feature"], registry=registry)
        self.change = Gauge("breeboost_feature_attribution_change",
                            "Change of each feature's mean contribution to the score against the training slice "
                            "(log-odds) in the last closed window", ["feature"], registry=registry)
        self.score_change = Gauge("breeboost_score_attribution_change",
                                  "Change of the mean score margin against the training slice (log-odds; the sum "
                                  "of the features' changes) in the last closed window", registry=registry)

    @classmethod
    def of(cls, registry: CollectorRegistry) -> "AttributionGauges":
        gauges = cls._by_registry.get(registry)
        if gauges is None:
            gauges = cls._by_registry[registry] = cls(registry)
        return gauges

    def observe(self, stats: dict) -> None:
        a = stats["attribution"]
        for name, f in a["features"].items():
            self.mean_abs.labels(name).set(f["mean_abs"])
            if f.get("change") is not None:
                self.change.labels(name).set(f["change"])
        if a.get("score_change") is not None:
            self.score_change.set(a["score_change"])


class DriftAggregator:
    """Merge and publish windows (see the module docstring); ``metrics`` a :class:`streams.metrics.WorkerMetrics`."""

    def __init__(self, model: ModelHolder, settings: Settings, metrics: Any) -> None:
        from detectors.calibration import DetectorConfig
        from detectors.window import WindowSketch

        self.config = DetectorConfig.from_settings(settings)
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self._sketch_cls = WindowSketch
        from detectors.binned_window import score_bins_of
        from detectors.health import ModelHealth

        self._score_bins_of = score_bins_of

        # model health per version (rolling performance, river's detectors, the label-free estimate): #16
        self.health = ModelHealth(min_labels=self.config.min_labels, min_positives=self.config.min_positives)
        # label partials by the window they go to: the furthest any partition has reached when they come (the
        # labels joined while the stream was there), so a backlog of windows published at once shares them;
        # each with the model version that scored its transactions
        self.labels: dict[int, list[tuple[str, LabelCounts]]] = {}
        # the paired labels of a challenger in shadow, by the window they go to (the same rule)
        self.pairs: dict[int, list[PairedLabels]] = {}
        # a partition is given up on only after it was silent longer than a rebalance takes (the group's joins
        # are held up to the session timeout): scale events measured windows published short by one
        # partition with 3 s of grace (tests/test_scale_events.py)
        self.gate = WindowGate(settings.partitions,
                               grace_s=max(3.0 * settings.window_idle_s, 3.0, 2.0 * settings.session_timeout_s))
        self._warm_up()

    @staticmethod
    def _warm_up() -> None:
        """Import what the first window close needs (scipy is ~0.5 s) at start-up, not mid-stream."""
        import detectors.stats  # noqa: F401
        import scipy.stats  # noqa: F401

    def aggregate(self, values: list[bytes], now: float | None = None) -> list[Record]:
        """Take a micro-batch of ``drift.partials`` values; returns the drift.stats records now whole."""
        now = time.time() if now is None else now
        closed: list[ClosedWindow] = []
        for v in values:
            try:
                partial = decode_partial(v)
            except RecordError as e:
                log(_log, "bad partial skipped", level=logging.WARNING, error=str(e))
                continue
            if isinstance(partial, (LabelPartial, PairedLabels)):   # the label join's, folded into a window
                self._add_labels(partial)
                continue
            late_before = self.gate.late
            closed += self.gate.add(partial, now)
            if self.gate.late > late_before:
                self.metrics.late_partials.inc()
        return self._publish(closed)

    def _add_labels(self, partial: LabelPartial | PairedLabels) -> None:
        gate = self.gate
        target = max(max(gate.progress.values(), default=-1), gate.published_upto + 1)
        if isinstance(partial, PairedLabels):
            self.pairs.setdefault(target, []).append(partial)
        else:
            self.labels.setdefault(target, []).append((partial.model_version, partial.counts))

    def tick(self, now: float | None = None) -> list[Record]:
        """The windows whose missing partitions went silent (the timer)."""
        return self._publish(self.gate.ready(time.time() if now is None else now))

    def restore(self, values: list[bytes], published_upto: int, now: float | None = None) -> dict:
        """Rebuild the pending windows of a restarted aggregator from re-read partials, publishing nothing:
        partials of windows ``<= published_upto`` (on drift.stats already) are ignored, later ones are
        pending again, heartbeats update each partition's progress in order. Returns a report."""
        gate = self.gate
        gate.published_upto = max(gate.published_upto, published_upto)
        late, now = gate.late, time.time() if now is None else now
        pending_partials = 0
        self.labels, self.pairs = {}, {}
        for v in values:
            try:
                partial = decode_partial(v)
            except RecordError:
                continue
            if isinstance(partial, (LabelPartial, PairedLabels)):
                self._add_labels(partial)
                continue
            if isinstance(partial, DriftPartial) and partial.window_index <= gate.published_upto:
                # label partials before a published window's partial: folded into it (or earlier)
                self.labels, self.pairs = {}, {}
            gate.add(partial, now, publish=False)
            pending_partials += isinstance(partial, DriftPartial) and partial.window_index > gate.published_upto
        gate.late = late           # not late arrivals: this is a re-read
        return {"published_upto": gate.published_upto, "messages": len(values), "partials": int(pending_partials),
                "windows_pending": sorted(gate.pending)}

    def merge(self, window: ClosedWindow) -> dict:
        """The drift.stats payload of a whole window."""
        from detectors.stats import window_statistics

        partials = window.partials
        # A window that spans a model reload has partials of two models, whose sketches cannot be merged
        # (other reference bins): keep the newest model's that this worker knows, count the others.
        versions = [p.model_version for p in partials]
        known = [v for v in dict.fromkeys(reversed(versions)) if self.model.knows(v)]
        current = self.model.version
        version = current if current in versions else (known[0] if known else None)
        if version is None:
            raise ValueError(f"window {window.index}: no partial of a model this worker knows "
                             f"({sorted(set(map(str, versions)))})")
        kept = [p for p in partials if p.model_version == version]
        # a re-baselined reference (same version, new profile): merge the partials of one profile
        profile, compiled = self.model.profile_for(version, [p.sketch.get("profile") for p in kept])
        kept = [p for p in kept if p.sketch.get("profile") == compiled.fingerprint] or kept
        sketch = self._sketch_cls.from_dict(compiled, kept[0].sketch)
        for p in kept[1:]:
            sketch.merge(self._sketch_cls.from_dict(compiled, p.sketch))
        labels = [p.labels for p in kept if p.labels is not None]
        other_models = 0
        for k in [k for k in self.labels if k <= window.index]:
            for scored_by, counts in self.labels.pop(k):
                # a window judges its own model: after a switch, the old model's scores are still being
                # labelled for a while, and would count against the new one
                if scored_by in ("", version):
                    labels.append(counts)
                else:
                    other_models += counts.n
        stats = window_statistics(sketch, profile, self.config, index=window.index,
                                  stream=self.settings.topic_transactions, model_version=version, labels=labels,
                                  reference=self.model.reference_performance(version),
                                  attribution=[p.attribution for p in kept if p.attribution is not None])
        w = stats["window"]
        w["offsets"] = {str(p.partition): [p.first_offset, p.last_offset] for p in kept}
        w["partials_of_other_models"] = len(partials) - len(kept)
        w["labels_of_other_models"] = other_models
        w["partitions_missing"] = window.partitions_missing
        w["complete"] = window.complete
        pairs = [p for k in [k for k in self.pairs if k <= window.index] for p in self.pairs.pop(k)]
        shadow = shadow_comparison(version, pairs, self.config.min_labels, self.config.min_positives)
        if shadow is not None:
            stats["shadow"] = shadow
        stats["concept"].update(self.health.window(
            version, window.index, labels, [self._score_bins_of(p.sketch) for p in kept], profile,
            self.model.reference_performance(version), sketch.threshold, now=w["closed_at"]))
        return stats

    def _publish(self, closed: list[ClosedWindow]) -> list[Record]:
        out = []
        key = self.settings.topic_transactions.encode()
        for window in closed:
            s = self.merge(window)
            self.metrics.observe_window(s)
            if "attribution" in s:
                AttributionGauges.of(self.metrics.registry).observe(s)
            log(_log, "window closed", window_id=s["window_id"], events=s.get("window", {}).get("events"),
                drifted=s.get("drifted_features"))
            out.append((key, encode_stats(s)))
        return out
