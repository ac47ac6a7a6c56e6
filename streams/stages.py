"""The scoring worker's stages, built once and wired together (each agent talks to one of them).

    transactions -> ScoringStage (decode, dedup, validate, score, records) -> WindowStage -> drift.partials
                                 \-> ScoreRoute (the scores by transaction_id) -> scores.by_id
    labels + scores.by_id (co-partitioned) -> LabelJoiner -> label partials on drift.partials, labels.dlq
    drift.partials -> DriftAggregator -> drift.stats
    LabelJoin: the in-process join of one worker's own scores (RecentTransactions), for tools and tests
    ModelHolder: the model every stage serves; a reload reaches all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from breeboost.settings import Settings
from streams.aggregation import DriftAggregator
from streams.label_join import LabelJoiner
from streams.label_route import ScoreRoute
from streams.labels import LabelJoin
from streams.metrics import WorkerMetrics
from streams.model import ModelHolder
from streams.recent import RecentTransactions
from streams.scoring import ScoringStage
from streams.windowing import WindowStage

__all__ = ["WorkerStages"]


@dataclass
class WorkerStages:
    model: ModelHolder
    scoring: ScoringStage
    windows: WindowStage
    labels: LabelJoin
    aggregator: DriftAggregator
    recent: RecentTransactions
    metrics: WorkerMetrics
    route: ScoreRoute
    label_join: LabelJoiner

    @classmethod
    def build(cls, scorer: Any, settings: Settings, metrics: WorkerMetrics | None = None, horizon: int = 500_000,
              sketch_buffer: int = 4096) -> "WorkerStages":
        """The stages of one worker serving ``scorer``. ``horizon``: recent transaction ids kept for
        de-duplication and the label join (at least this many); ``metrics`` default to a private registry."""
        metrics = metrics if metrics is not None else WorkerMetrics(CollectorRegistry())
        model = ModelHolder(scorer, metrics)
        recent = RecentTransactions(horizon)
        labels = LabelJoin(recent, metrics)
        windows = WindowStage(model, settings, labels, metrics, sketch_buffer)
        route = ScoreRoute(settings.partitions)   # routes once the label agents activate it
        scoring = ScoringStage(model, settings, windows, recent, metrics, route)
        return cls(model, scoring, windows, labels, DriftAggregator(model, settings, metrics), recent, metrics,
                   route, LabelJoiner(settings, metrics))
