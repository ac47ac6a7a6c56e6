"""Incident types as rule objects: one class per type, one file per class, and the registry :data:`RULES`.

Each rule reads named fields of a ``drift.stats`` payload (:attr:`~incident.rules.base.Rule.signals`),
evaluates them against its bands (:meth:`~incident.rules.base.Rule.evaluate` -> :class:`Breach` list),
explains an incident of its type in plain words for RCA (:meth:`~incident.rules.base.Rule.explain`) and
names its playbook section (:attr:`~incident.rules.base.Rule.anchor`). :class:`incident.policy.Policy`
builds the enabled ones from ``policy.toml`` and composes them.

A new incident type is one :class:`Rule` subclass added to :data:`RULES`, its ``[types.<name>]`` table in
``policy.toml`` and its section in ``incident/playbook.md``.

>>> list(RULES)[:3], RULES["stale_data"].anchor
(['feature_drift', 'missing_data', 'schema_mismatch'], 'stale-data')
"""
from incident.rules.base import ReferenceLearning, Rule, ScalarRule
from incident.rules.concept_drift import ConceptDrift
from incident.rules.core import SEVERITIES, Bands, Breach, get_path, most_severe, number, severity_rank
from incident.rules.corrupted_balances import CorruptedBalances
from incident.rules.dead_letter_spike import DeadLetterSpike
from incident.rules.feature_drift import FeatureDrift
from incident.rules.missing_data import MissingData
from incident.rules.schema_mismatch import SchemaMismatch
from incident.rules.score_drift import ScoreDrift
from incident.rules.stale_data import StaleData

__all__ = ["RULES", "Bands", "Breach", "ConceptDrift", "CorruptedBalances", "DeadLetterSpike", "FeatureDrift",
           "MissingData", "ReferenceLearning", "Rule", "SEVERITIES", "ScalarRule", "SchemaMismatch", "ScoreDrift",
           "StaleData", "get_path", "most_severe", "number", "severity_rank"]

#: Every incident type, by name, in evaluation order (the order of breaches and of ``INCIDENT_TYPES``).
RULES: dict[str, type[Rule]] = {r.name: r for r in (FeatureDrift, MissingData, SchemaMismatch, CorruptedBalances,
                                                    StaleData, DeadLetterSpike, ScoreDrift, ConceptDrift)}
