"""Incident response: policy, lifecycle, the incidents topic, sinks, log, RCA and the playbook.

- :mod:`incident.policy`: window statistics -> breaches with a type and P1..P4 (``policy.toml``), composed of
  one rule object per incident type (:mod:`incident.rules`: evaluate, explain, signals, runbook anchor).
- :mod:`incident.lifecycle`: :class:`IncidentManager`, pending -> firing -> resolved, de-dup, inhibition.
- :mod:`incident.events`: the event JSON Schema (``schema/incident-event.schema.json``), fingerprints.
- :mod:`incident.state`, :mod:`incident.log`: the agent's state file, ``incident_log.jsonl``.
- :mod:`incident.sinks`: Alertmanager/Slack webhooks; :mod:`incident.metrics`: Prometheus series.
- :mod:`incident.topic`: publish/read the ``incidents`` topic; :mod:`incident.rca`: root-cause analysis.
- :mod:`incident.service`: what the incident agent calls; :mod:`incident.agent` installs that agent on a Faust
  app. The commands (``breeboost incidents``, ``breeboost rca``) live in ``breeboost.commands``.

See docs/incidents.md and ``incident/playbook.md``.
"""
from incident.errors import EventSchemaError, IncidentError, PolicyError, UnknownIncidentError
from incident.events import fingerprint, validate_event
from incident.lifecycle import IncidentManager
from incident.log import IncidentLog
from incident.policy import Breach, Policy
from incident.state import StateFile

__all__ = ["Breach", "EventSchemaError", "IncidentError", "IncidentLog", "IncidentManager", "Policy", "PolicyError",
           "StateFile", "UnknownIncidentError", "fingerprint", "validate_event"]
