"""Errors of the incident package: each one a :class:`breeboost.errors.BreeBoostError` a user can act on."""
from __future__ import annotations

from breeboost.errors import BreeBoostError

__all__ = ["IncidentError", "PolicyError", "EventSchemaError", "UnknownIncidentError"]


class IncidentError(BreeBoostError):
    """Base class of the incident package's errors."""


class PolicyError(IncidentError):
    """The incident policy (TOML) is invalid: the message names the key and the allowed values."""


class EventSchemaError(IncidentError):
    """An incident event does not match ``incident/schema/incident-event.schema.json``."""


class UnknownIncidentError(IncidentError):
    """No event on the incidents topic carries the given incident id."""
