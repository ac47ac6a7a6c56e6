"""The incident agent: ``drift.stats`` -> :class:`incident.service.IncidentService` -> ``incidents``.

:func:`install_incident_agent` defines it on a Faust app; the worker wiring calls it for the ``incident``
(and ``all``) role. The agent takes micro-batches, hands their values to the service (policy, lifecycle,
sinks, log: plain Python), publishes the events keyed by fingerprint, waits until the producer flushed
them, and only then saves the state: a crash in between replays the batch, whose events come again with
the same ``event_id`` (consumers and the incident log drop duplicates); saving first could lose them.

Tested with a stand-in app in ``tests/test_incident_lifecycle.py`` (the real one in the e2e tests).
"""
from __future__ import annotations

from typing import Any

import orjson

from breeboost.settings import Settings

__all__ = ["install_incident_agent", "actions_engine", "BATCH", "BATCH_WAIT_S"]

#: drift.stats records per micro-batch, and the longest wait for one (a record a window: a few a minute).
BATCH = 100
BATCH_WAIT_S = 0.2


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=None)


def install_incident_agent(app: Any, service: Any, settings: Settings) -> None:
    """Define the ``incidents`` agent on the Faust ``app``: ``settings.topic_drift_stats`` in,
    ``settings.topic_incidents`` out, ``service`` an :class:`incident.service.IncidentService`."""
    stats_in = _raw_topic(app, settings.topic_drift_stats)
    incidents_out = _raw_topic(app, settings.topic_incidents)
    actions = actions_engine(service, settings)

    @app.agent(stats_in, name="incidents")
    async def incidents(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=BATCH_WAIT_S):
            records = service.process([e.message.value for e in events])
            for key, value in records:
                await incidents_out.send(key=key, value=value)
            if actions is not None:   # the policy's [actions]: started here, never waited for
                await _send_events(incidents_out, actions.observe([orjson.loads(v) for _, v in records]))
                # every window: the per-version labelled figures the rollback watch compares
                await _send_events(incidents_out, actions.observe_windows([e.message.value for e in events]))
            await app.producer.flush()   # the events are on the broker before the state says they were sent
            service.save_state()

    if actions is not None:
        @app.timer(1.0)
        async def run_actions() -> None:
            await _send_events(incidents_out, actions.poll())


async def _send_events(topic: Any, events: list[dict]) -> None:
    from incident.events import encode_event, event_key

    for ev in events:
        await topic.send(key=event_key(ev), value=encode_event(ev))


def actions_engine(service: Any, settings: Settings) -> Any:
    """The :class:`incident.actions.ActionsEngine` of the service's policy, or ``None`` when the policy has
    no ``[actions]`` table (the shipped one: no automatic action). Its ledger and the actions' logs live
    beside the incident state file."""
    from pathlib import Path

    manager = getattr(service, "manager", None)   # a stand-in service (tests) has none
    config = getattr(getattr(manager, "policy", None), "config", None) or {}
    if not config.get("actions"):
        return None
    from incident.actions import ActionLedger, ActionsEngine
    from incident.actions.launch import SubprocessLauncher

    state_dir = service.state.path.parent if service.state is not None else Path("state")
    return ActionsEngine(config, ActionLedger(state_dir / "actions.json"),
                         SubprocessLauncher(settings, state_dir / "actions"), settings.model_dir)
