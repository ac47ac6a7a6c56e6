"""What the incident agent calls for each batch of ``drift.stats`` records: plain Python, no Faust.

Decode the window statistics, run them through the :class:`IncidentManager` (policy, lifecycle,
de-duplication, inhibition), persist its state atomically, count, hand events to the webhook sinks
(non-blocking) and the incident log, and return the encoded events for the agent to publish on
``incidents`` (keyed by fingerprint).

State survives a restart: the state file (``STATE_DIR/incident-state.json``) is saved after every batch,
once the batch's events are on the broker; without it, the state is rebuilt from the incidents topic.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson

from breeboost.logs import log
from breeboost.settings import Settings
from incident.events import encode_event, event_key
from incident.lifecycle import IncidentManager
from incident.log import IncidentLog
from incident.metrics import IncidentMetrics
from incident.policy import Policy
from incident.state import StateFile

__all__ = ["IncidentService"]

_log = logging.getLogger("breeboost.incident")
Record = tuple[bytes | None, bytes]


class IncidentService:
    def __init__(self, manager: IncidentManager, state: StateFile | None = None, metrics: IncidentMetrics | None = None,
                 sinks: Iterable[Any] = (), incident_log: IncidentLog | None = None) -> None:
        self.manager = manager
        self.state = state
        self.metrics = metrics
        self.sinks = list(sinks)
        self.incident_log = incident_log

    @classmethod
    def create(cls, settings: Settings, registry: Any = None, policy_path: str | None = None,
               state_dir: str = "state", webhooks: Iterable[str] = (), incident_log: str | None = None,
               restore_from_topic: bool = True) -> "IncidentService":
        from incident.sinks import WebhookSink

        policy = Policy.load(policy_path)
        # drift.stats records name their stream (the scoring worker's input topic); older ones do not, and
        # belong to the same stream: the topic this deployment scores.
        stream = settings.topic_transactions
        state = StateFile(Path(state_dir) / "incident-state.json")
        saved = state.load()
        if saved is not None:
            manager = IncidentManager.from_state(policy, saved, default_stream=stream)
            log(_log, "incident state loaded", path=str(state.path), open=len(manager.open_incidents()))
        elif restore_from_topic:
            from incident.topic import read_events

            events = read_events(settings)
            manager = IncidentManager.restore(policy, events, default_stream=stream)
            log(_log, "incident state rebuilt from topic", events=len(events), open=len(manager.open_incidents()))
        else:
            manager = IncidentManager(policy, default_stream=stream)
        metrics = IncidentMetrics(registry) if registry is not None else None
        sinks = []
        for spec in webhooks:
            url, _, fmt = spec.partition("#")
            sinks.append(WebhookSink(url, format=fmt or "alertmanager", registry=registry,
                                     name=f"webhook{len(sinks)}"))
        return cls(manager, state, metrics, sinks, IncidentLog(incident_log) if incident_log else None)

    def process(self, values: list[bytes], now: float | None = None) -> list[Record]:
        events: list[dict] = []
        for raw in values:
            try:
                stats = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log(_log, "unreadable drift.stats record skipped", level=logging.WARNING)
                continue
            if not isinstance(stats, Mapping):
                continue
            events += self.manager.process(stats, time.time() if now is None else now)
            if self.metrics is not None:
                self.metrics.stats_processed.inc()
        if self.metrics is not None:
            self.metrics.observe_events(events)
            self.metrics.set_open(self.manager.open_counts())
        for e in events:
            log(_log, f"incident {e.get('event', e.get('status'))}", incident_id=e.get("incident_id"),
                type=e.get("type"), severity=e.get("severity"), status=e.get("status"), summary=e.get("summary"))
            for sink in self.sinks:
                sink.submit(e)
        if self.incident_log is not None and events:
            self.incident_log.append(events)
        return [(event_key(e), encode_event(e)) for e in events]

    def save_state(self) -> None:
        """Persist the manager's state. Call it after the batch's events are on the broker: a crash in
        between replays the batch, and its events come again with the same ``event_id`` (consumers and the
        incident log drop duplicates), whereas saving first would lose them."""
        if self.state is not None:
            self.state.save(self.manager.state_dict())

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
