"""Automatic responses to incidents, configured in the policy's ``[actions.*]`` tables.

:mod:`incident.actions.promotion` decides whether a challenger may replace the champion (the guard of
``[actions.promote]``); :mod:`incident.actions.ledger` runs each action at most once across restarts (an
atomic state file keyed by a deterministic action id). :mod:`incident.actions.engine` maps incident events
to actions and runs them as child processes (``breeboost model retrain`` / ``promote``) without blocking.
"""
from incident.actions.engine import ActionsEngine, Launcher
from incident.actions.ledger import ActionLedger, ActionRecord, action_id
from incident.actions.promotion import PromotionDecision, PromotionGuard

__all__ = ["ActionLedger", "ActionRecord", "action_id", "PromotionDecision", "PromotionGuard", "ActionsEngine",
           "Launcher"]
