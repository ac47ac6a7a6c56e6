"""The worker's wiring: one Faust app per role, its stages built once, the agents installed.

``scoring`` role: :class:`streams.stages.WorkerStages` (model, scoring, windows, labels, aggregator), the
rebalance lifecycle and :func:`streams.agents.install_scoring_agents`; ``incident`` role:
:class:`incident.service.IncidentService` and :func:`incident.agent.install_incident_agent`; ``all``: both
in one process.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from breeboost.logs import log
from breeboost.settings import Settings

__all__ = ["ROLES", "Worker", "build_worker", "create_app", "ensure_label_topics"]

ROLES = ("scoring", "incident", "all")
_log = logging.getLogger("breeboost.worker")


@dataclass
class Worker:
    """A wired worker: the Faust ``app``, and what runs in it (``None`` for a role it does not play)."""
    app: Any
    stages: Any = None
    lifecycle: Any = None
    shipper: Any = None
    incident_service: Any = None


def create_app(settings: Settings, role: str, faust_options: dict[str, Any] | None = None) -> Any:
    """The Faust app of ``role``; ``faust_options`` override :func:`streams.faust_config.faust_app_kwargs`
    (the benchmark compares them)."""
    import faust

    from streams.faust_config import faust_app_kwargs

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return faust.App(f"{settings.group_id}-{role}", **{**faust_app_kwargs(settings), **(faust_options or {})})


def build_worker(settings: Settings, role: str, *, stages: Any = None, incident_service: Any = None,
                 model_watcher: Any = None, faust_options: dict[str, Any] | None = None,
                 lifecycle_options: dict[str, Any] | None = None) -> Worker:
    """Wire a worker for ``role`` around already built ``stages`` (scoring) and ``incident_service``."""
    from streams.frameworks import check_versions

    for problem in check_versions():
        log(_log, "framework version not tested", level=logging.WARNING, problem=problem)
    app = create_app(settings, role, faust_options)
    worker = Worker(app, stages=stages, incident_service=incident_service)
    if role in ("scoring", "all"):
        from streams.agents import install_scoring_agents
        from streams.lifecycle import RebalanceLifecycle

        ensure_label_topics(settings)
        worker.lifecycle = RebalanceLifecycle(stages, settings, app.conf.id, **(lifecycle_options or {}))
        worker.shipper = install_scoring_agents(app, stages, worker.lifecycle, settings, model_watcher,
                                                fetch_batches=settings.input_path == "batches")
    if role in ("incident", "all"):
        from incident.agent import install_incident_agent

        install_incident_agent(app, incident_service, settings)

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **_: Any) -> None:  # pragma: no cover - logging only
        log(_log, "partitions assigned", assignment=sorted(f"{tp.topic}:{tp.partition}"
                                                          for tp in app.consumer.assignment()))

    return worker


def ensure_label_topics(settings: Settings) -> list[str]:
    """Create the label join's topics (scores.by_id, labels.dlq) if missing, with the partitions of every
    project topic: scores.by_id must be partitioned as ``labels`` is (the label agent reads them
    co-partitioned). Returns the names created; a broker that does not answer is logged and left to Faust."""
    from breeboost.kafka_io import ensure_topics

    topics = [settings.scores_by_id, settings.labels_dlq]
    try:
        return ensure_topics(settings, topics)
    except Exception as e:  # noqa: BLE001 - the worker starts anyway; Faust reports a missing broker
        log(_log, "label join topics not created", level=logging.WARNING, topics=topics, error=repr(e))
        return []
