"""Errors of the simulator, with messages a user can act on."""
from __future__ import annotations

from breeboost.errors import BreeBoostError

__all__ = ["SimulatorError", "ScenarioError"]


class SimulatorError(BreeBoostError):
    """The simulator cannot do what was asked (bad output path, unreachable broker, ...)."""


class ScenarioError(SimulatorError, ValueError):
    """A scenario name or parameter is invalid (the message names it and the allowed values)."""
