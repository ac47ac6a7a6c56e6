"""The operator dashboard served by ``breeboost dashboard`` (Streamlit; ``pip install 'breeboost[dashboard]'``).

Plain data access (no Streamlit): :mod:`~breeboost.dashboard.feeds` (what is read from the topics, and how
much), :mod:`~breeboost.dashboard.metrics` (the workers' Prometheus endpoints), :mod:`~breeboost.dashboard.data`
(one :class:`Snapshot` per refresh, the :class:`LiveSource` and the :class:`StaticSource`),
:mod:`~breeboost.dashboard.views` (the rows each page shows), :mod:`~breeboost.dashboard.simulation`
(``breeboost simulate`` runs). The Streamlit side: :mod:`~breeboost.dashboard.app` (the script) and
:mod:`breeboost.dashboard.ui` (one module per page). docs/dashboard.md tells what each page shows.

It is a front end beside the CLI, so it sits above :mod:`breeboost.commands`: acknowledge and close call
:func:`breeboost.commands.incidents.annotate_incident`, the function behind ``breeboost incidents ack|close``.
"""
from __future__ import annotations

from breeboost.dashboard.data import LiveSource, Snapshot, Source, StaticSource
from breeboost.dashboard.feeds import TailReader, TopicFollower
from breeboost.dashboard.metrics import MetricsHistory, MetricsPoint, MetricsSample, MetricsScraper
from breeboost.dashboard.simulation import SimulationRunner, SimulationSpec

__all__ = ["LiveSource", "Snapshot", "Source", "StaticSource", "TailReader", "TopicFollower", "MetricsHistory",
           "MetricsPoint", "MetricsSample", "MetricsScraper", "SimulationRunner", "SimulationSpec"]
